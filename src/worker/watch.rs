//! The upload folder watcher: finds files that are complete.
//!
//! A collection station copies footage into the folder while the worker
//! runs, so a file is taken only when its size and modification time
//! have not changed for the settle time. The folder is scanned rather than
//! followed through inotify, because a scan also finds what arrived while
//! no worker ran and works on network file systems, where inotify is blind.
//!
//! NOTE: a writer that pauses longer than the settle time and then goes on
//! writing makes the first part a recording of its own; both are kept, and
//! the second, complete file is ingested when it settles again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::runner::{collect_inputs_outside, Input};

/// What a file looked like when last seen, and since when.
struct Seen {
    bytes: u64,
    modified_ns: u128,
    since: Instant,
}

/// A complete upload, named by what makes it distinct: path, size, time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    pub path: PathBuf,
    pub bytes: u64,
    pub modified_ns: u128,
}

impl Settled {
    /// The job subject: a file replaced under the same name is a new upload.
    pub fn subject(&self) -> String {
        format!(
            "{}|{}|{}",
            self.path.display(),
            self.bytes,
            self.modified_ns
        )
    }

    /// Whether it is a case record rather than footage.
    pub fn is_case_record(&self) -> bool {
        self.path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    }
}

pub struct Watcher {
    root: PathBuf,
    settle: Duration,
    seen: HashMap<PathBuf, Seen>,
    /// The data directory, never scanned: its catalog changes while the
    /// worker runs, so a watched folder that contains it would never settle.
    data_dir: Option<PathBuf>,
}

impl Watcher {
    pub fn new(root: &Path, settle: Duration) -> Watcher {
        Watcher {
            root: root.to_path_buf(),
            settle,
            seen: HashMap::new(),
            data_dir: None,
        }
    }

    /// Leaves the data directory out of every scan.
    pub fn skipping(mut self, data_dir: &Path) -> Watcher {
        self.data_dir = Some(data_dir.to_path_buf());
        self
    }

    /// Scans the folder; returns files that have just settled and how many
    /// are still growing.
    pub fn scan(&mut self) -> (Vec<Settled>, usize) {
        let now = Instant::now();
        let mut settled = Vec::new();
        let mut growing = 0;
        let mut present = Vec::new();
        let root = std::slice::from_ref(&self.root);
        for input in collect_inputs_outside(root, self.data_dir.as_deref()) {
            let Input::File(path) = input else {
                continue;
            };
            if is_hidden_or_partial(&path) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let modified_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            present.push(path.clone());
            let entry = self.seen.entry(path.clone()).or_insert(Seen {
                bytes: u64::MAX,
                modified_ns: 0,
                since: now,
            });
            if entry.bytes != meta.len() || entry.modified_ns != modified_ns {
                *entry = Seen {
                    bytes: meta.len(),
                    modified_ns,
                    since: now,
                };
            }
            let quiet_for = now.duration_since(entry.since);
            let modified_ago = SystemTime::now()
                .duration_since(meta.modified().unwrap_or(UNIX_EPOCH))
                .unwrap_or_default();
            // A file untouched for the settle time before the worker started
            // is complete at once; anything else waits the settle time.
            if quiet_for >= self.settle || modified_ago >= self.settle {
                settled.push(Settled {
                    path,
                    bytes: meta.len(),
                    modified_ns,
                });
            } else {
                growing += 1;
            }
        }
        self.seen.retain(|path, _| present.contains(path));
        (settled, growing)
    }
}

/// Hidden files and the temporary names copy tools write to first.
fn is_hidden_or_partial(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.starts_with('.')
        || [".part", ".tmp", ".crdownload", ".partial"]
            .iter()
            .any(|suffix| name.to_ascii_lowercase().ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_file_waits_and_quiet_file_settles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp4");
        std::fs::write(&path, b"one").unwrap();
        let mut watcher = Watcher::new(dir.path(), Duration::from_secs(3600));
        let (settled, growing) = watcher.scan();
        assert!(settled.is_empty());
        assert_eq!(growing, 1);

        let mut quick = Watcher::new(dir.path(), Duration::ZERO);
        let (settled, _) = quick.scan();
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].bytes, 3);
    }

    #[test]
    fn partial_and_hidden_names_are_ignored() {
        assert!(is_hidden_or_partial(Path::new("/in/.a.mp4")));
        assert!(is_hidden_or_partial(Path::new("/in/a.mp4.part")));
        assert!(!is_hidden_or_partial(Path::new("/in/a.mp4")));
    }

    #[test]
    fn data_dir_in_watched_folder_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.mp4"), b"one").unwrap();
        let data_dir = dir.path().join("evidence-data");
        std::fs::create_dir(&data_dir).unwrap();
        std::fs::write(data_dir.join("catalog.sqlite"), b"rows").unwrap();

        let mut watcher = Watcher::new(dir.path(), Duration::ZERO).skipping(&data_dir);
        let (settled, growing) = watcher.scan();
        let names: Vec<_> = settled.iter().map(|s| s.path.clone()).collect();
        assert_eq!(names, vec![dir.path().join("a.mp4")]);
        assert_eq!(growing, 0);
    }
}
