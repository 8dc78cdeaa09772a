//! The local directory backend: `ROOT/TIER/KEY`, the embedded default.
//!
//! A write goes to `ROOT/.staging/PID-NANOS.part`, is flushed to disk, read
//! back and hashed, and only then renamed under its key, so a killed
//! process leaves at most a staging file and never a partial object.
//! Committed objects are made read-only. Staging files of processes that
//! no longer run are removed when the store is opened.
//!
//! The evidence tier can name a second directory (`[store.local]
//! backup_dir`, ideally on another disk) that receives a separate copy
//! (Article 12): once an evidence object is committed, it is copied there
//! through the same staged, read-back-verified write, before the commit
//! returns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::retention::{read_manifest, Capabilities, RetentionPolicy};
use super::{check_key, ObjectInfo, ObjectStore, StagedObject, StoreError, Tier, MANIFEST_SUFFIX};
use crate::i18n::Text;

const STAGING_DIR: &str = ".staging";

/// Read buffer for verification: large enough that a disk streams at full
/// speed, small enough to stay out of the memory budget's way.
const VERIFY_BUFFER_BYTES: usize = 1 << 20;

pub struct LocalStore {
    root: PathBuf,
    retention: RetentionPolicy,
    /// The separate copy of the evidence tier.
    backup: Option<Arc<LocalStore>>,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The retention given for an object without a manifest, which says when
/// it was stored: it cannot be deleted, and messages name the reason.
pub(crate) const UNTIL_NO_MANIFEST: &str = "unknown (no manifest)";

/// Resolves a path that may not exist yet: its nearest existing ancestor
/// with links resolved, and the missing rest appended as written.
fn resolve_existing(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(found) = existing.canonicalize() {
            return rest.iter().rev().fold(found, |path, name| path.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl LocalStore {
    /// Opens (and creates) a store under `root`, clearing staging files
    /// left by processes that were killed.
    pub fn open(root: &Path) -> Result<LocalStore, StoreError> {
        let staging = root.join(STAGING_DIR);
        fs::create_dir_all(&staging).map_err(io_error(&staging))?;
        for tier in Tier::ALL {
            let dir = root.join(tier.as_str());
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        let store = LocalStore {
            root: root.to_path_buf(),
            retention: RetentionPolicy::default(),
            backup: None,
        };
        store.remove_orphaned_staging();
        Ok(store)
    }

    /// Sets the retention rule that deletion is checked against.
    pub fn with_retention(mut self, retention: RetentionPolicy) -> LocalStore {
        self.retention = retention;
        self
    }

    /// Keeps a separate copy of the evidence tier under `dir` (relative to
    /// `data_dir` when relative), under the retention rule set so far. The
    /// backup must be another directory than the store itself, or it
    /// would be no copy at all.
    pub fn with_backup(mut self, dir: Option<&Path>, data_dir: &Path) -> Result<LocalStore, StoreError> {
        let Some(dir) = dir else { return Ok(self) };
        let dir = data_dir.join(dir);
        let overlapping = || StoreError::Setting {
            message: Text::new(
                format!(
                    "[store.local] backup_dir {} 位于存储目录 {} 之内（或包含它）；备份必须是另一个目录，最好在另一块磁盘上",
                    dir.display(),
                    self.root.display()
                ),
                format!(
                    "[store.local] backup_dir {} lies inside the store {} (or holds it); a backup must be another directory, ideally on another disk",
                    dir.display(),
                    self.root.display()
                ),
            ),
        };
        let same = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        // Checked before the backup's folders are made, so a refused
        // setting leaves nothing in the store; checked again once they
        // exist, since a link made on the way can only be resolved then.
        if let Ok(root) = self.root.canonicalize() {
            if same(&resolve_existing(&dir), &root) {
                return Err(overlapping());
            }
        }
        let backup = LocalStore::open(&dir)?.with_retention(self.retention);
        if let (Ok(a), Ok(b)) = (backup.root.canonicalize(), self.root.canonicalize()) {
            if same(&a, &b) {
                return Err(overlapping());
            }
        }
        self.backup = Some(Arc::new(backup));
        Ok(self)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the file path of an object, for reports and local readers.
    pub fn path_of(&self, tier: Tier, key: &str) -> PathBuf {
        self.root.join(tier.as_str()).join(key)
    }

    fn remove_orphaned_staging(&self) {
        let Ok(entries) = fs::read_dir(self.root.join(STAGING_DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !alive {
                tracing::info!(file = %entry.path().display(), "removing staging file of an interrupted write");
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Hashes a file with SHA-256, for verification after a write.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut reader = BufReader::with_capacity(VERIFY_BUFFER_BYTES, File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; VERIFY_BUFFER_BYTES];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hashes a staging file with SHA-256 through a read-only mapping, which
/// spares copying every page into a buffer. Only this process writes a
/// staging file and it has stopped writing, so the mapping cannot shrink.
fn sha256_staged(path: &Path) -> io::Result<String> {
    let file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(hex::encode(Sha256::digest([])));
    }
    // SAFETY: the file is this process's own staging file, written to the
    // end and no longer changed or truncated while the mapping lives.
    match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => {
            let _ = map.advise(memmap2::Advice::Sequential);
            Ok(hex::encode(Sha256::digest(&map[..])))
        }
        // A file system that cannot map files is read through a buffer.
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "staging file not mapped; reading it instead");
            sha256_file(path)
        }
    }
}

struct LocalStaged {
    path: PathBuf,
    file: Option<File>,
    store_root: PathBuf,
}

impl Write for LocalStaged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("open until commit").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl Drop for LocalStaged {
    fn drop(&mut self) {
        if self.file.is_some() || self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl StagedObject for LocalStaged {
    fn commit(mut self: Box<Self>, tier: Tier, key: &str, sha256: &str) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let file = self.file.take().expect("committed once");
        // The read-back hashes the file's pages while fsync writes the same
        // pages to disk. Side by side this is the guarantee of running them
        // one after the other (what is durable is what was hashed, and both
        // see the pages the kernel holds), in the time of the longer one.
        let (synced, actual) = std::thread::scope(|scope| {
            let sync = scope.spawn(|| file.sync_all());
            let actual = sha256_staged(&self.path);
            (sync.join().unwrap_or_else(|_| Err(io::Error::other("fsync thread panicked"))), actual)
        });
        synced.map_err(io_error(&self.path))?;
        drop(file);
        let actual = actual.map_err(io_error(&self.path))?;
        if actual != sha256 {
            return Err(StoreError::Mismatch {
                tier: tier.as_str(),
                key: key.to_string(),
                expected: sha256.to_string(),
                actual,
            });
        }

        let target = self.store_root.join(tier.as_str()).join(key);
        if target.exists() {
            let existing = sha256_file(&target).map_err(io_error(&target))?;
            fs::remove_file(&self.path).map_err(io_error(&self.path))?;
            if existing != sha256 {
                return Err(StoreError::Mismatch {
                    tier: tier.as_str(),
                    key: key.to_string(),
                    expected: sha256.to_string(),
                    actual: existing,
                });
            }
        } else {
            let parent = target.parent().expect("a key has a parent under the tier");
            fs::create_dir_all(parent).map_err(io_error(parent))?;
            let mut permissions = fs::metadata(&self.path).map_err(io_error(&self.path))?.permissions();
            permissions.set_readonly(true);
            fs::set_permissions(&self.path, permissions).map_err(io_error(&self.path))?;
            fs::rename(&self.path, &target).map_err(io_error(&target))?;
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(io_error(parent))?;
        }

        let bytes = fs::metadata(&target).map_err(io_error(&target))?.len();
        Ok(ObjectInfo {
            tier,
            key: key.to_string(),
            bytes,
            location: target.display().to_string(),
        })
    }
}

impl ObjectStore for LocalStore {
    fn stage(&self) -> Result<Box<dyn StagedObject>, StoreError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = self
            .root
            .join(STAGING_DIR)
            .join(format!("{}-{nanos}.part", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let staged = Box::new(LocalStaged {
            path,
            file: Some(file),
            store_root: self.root.clone(),
        });
        Ok(match &self.backup {
            None => staged,
            Some(backup) => Box::new(BackedUp {
                primary: staged,
                primary_root: self.root.clone(),
                backup: backup.clone(),
            }),
        })
    }

    fn head(&self, tier: Tier, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        check_key(key)?;
        let path = self.path_of(tier, key);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(ObjectInfo {
                tier,
                key: key.to_string(),
                bytes: meta.len(),
                location: path.display().to_string(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn open(&self, tier: Tier, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        check_key(key)?;
        let path = self.path_of(tier, key);
        match File::open(&path) {
            Ok(file) => Ok(Box::new(BufReader::with_capacity(VERIFY_BUFFER_BYTES, file))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound {
                tier: tier.as_str(),
                key: key.to_string(),
            }),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn list(&self, tier: Tier, prefix: &str) -> Result<Vec<String>, StoreError> {
        let base = self.root.join(tier.as_str());
        let mut keys = Vec::new();
        let mut pending = vec![base.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::Io { path: dir, source }),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                let key = path
                    .strip_prefix(&base)
                    .expect("listed under the tier")
                    .to_string_lossy()
                    .replace('\\', "/");
                if key.starts_with(prefix) && !key.ends_with(MANIFEST_SUFFIX) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Deletes only once the manifest's tier and time say retention has
    /// ended; an object without a readable manifest is never deleted.
    fn delete(&self, tier: Tier, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let manifest = read_manifest(self, tier, key).map_err(|e| match e {
            StoreError::NotFound { .. } => StoreError::Retained {
                tier: tier.as_str(),
                key: key.to_string(),
                until: UNTIL_NO_MANIFEST.to_string(),
            },
            other => other,
        })?;
        let retention = self.retention.retention_for(tier, manifest.created_at);
        if !retention.has_ended(chrono::Utc::now()) {
            return Err(StoreError::Retained {
                tier: tier.as_str(),
                key: key.to_string(),
                until: retention.label(),
            });
        }
        for path in [self.path_of(tier, key), self.path_of(tier, &format!("{key}{MANIFEST_SUFFIX}"))] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        tracing::info!(tier = tier.as_str(), key, "deleted after retention ended");
        Ok(())
    }

    fn capabilities(&self, tier: Tier) -> Result<Capabilities, StoreError> {
        Ok(Capabilities {
            tier,
            backend: "local",
            location: self.root.join(tier.as_str()).display().to_string(),
            object_lock: false,
            versioning: false,
            lifecycle: false,
            server_side_copy: false,
            backup: match (tier, &self.backup) {
                (Tier::Evidence, Some(backup)) => Some(backup.root.join(tier.as_str()).display().to_string()),
                _ => None,
            },
        })
    }

    fn backup(&self) -> Option<&dyn ObjectStore> {
        self.backup.as_deref().map(|b| b as &dyn ObjectStore)
    }
}

/// A write to a store with a backup: the primary commit, then for the
/// evidence tier the same object copied into the backup by a staged write
/// of its own, read back and checked against the same SHA-256.
struct BackedUp {
    primary: Box<LocalStaged>,
    primary_root: PathBuf,
    backup: Arc<LocalStore>,
}

impl Write for BackedUp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.primary.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.primary.flush()
    }
}

impl StagedObject for BackedUp {
    fn commit(self: Box<Self>, tier: Tier, key: &str, sha256: &str) -> Result<ObjectInfo, StoreError> {
        let info = self.primary.commit(tier, key, sha256)?;
        if tier == Tier::Evidence {
            let stored = self.primary_root.join(tier.as_str()).join(key);
            let mut reader = BufReader::with_capacity(VERIFY_BUFFER_BYTES, File::open(&stored).map_err(io_error(&stored))?);
            let mut staged = self.backup.stage()?;
            io::copy(&mut reader, &mut staged).map_err(io_error(&stored))?;
            let copy = staged.commit(tier, key, sha256)?;
            tracing::info!(key, backup = %copy.location, "separate backup copy stored and verified");
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn committed_object_is_read_only_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let info = store.put_small(Tier::Evidence, "a/b.bin", b"footage").unwrap();
        assert_eq!(info.bytes, 7);
        let mode = fs::metadata(store.path_of(Tier::Evidence, "a/b.bin")).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "no write bit on a stored object");
        assert_eq!(store.list(Tier::Evidence, "a/").unwrap(), vec!["a/b.bin".to_string()]);
    }

    #[test]
    fn commit_with_wrong_hash_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut staged = store.stage().unwrap();
        staged.write_all(b"footage").unwrap();
        let error = staged.commit(Tier::Routine, "x.bin", &sha(b"other")).unwrap_err();
        assert!(matches!(error, StoreError::Mismatch { .. }));
        assert!(store.head(Tier::Routine, "x.bin").unwrap().is_none());
        assert_eq!(fs::read_dir(dir.path().join(STAGING_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn different_bytes_never_overwrite_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.put_small(Tier::Routine, "x.bin", b"first").unwrap();
        assert!(store.put_small(Tier::Routine, "x.bin", b"second").is_err());
        store.put_small(Tier::Routine, "x.bin", b"first").unwrap();
        let mut text = String::new();
        store.open(Tier::Routine, "x.bin").unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "first");
    }

    #[test]
    fn deletion_is_refused_before_retention_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let manifest = crate::store::Manifest {
            artefact: "original".into(),
            tier: Tier::Routine,
            key: "a.bin".into(),
            sha256: sha(b"footage"),
            sm3: String::new(),
            bytes: 7,
            source: crate::store::Source {
                path: "a.bin".into(),
                file_name: "a.bin".into(),
                modified: None,
                recordings: Vec::new(),
            },
            tools: crate::store::ToolVersions {
                evidence: "test".into(),
                gstreamer: "test".into(),
            },
            created_at: chrono::Utc::now(),
            actor: "op".into(),
        };
        store.put_small(Tier::Routine, "a.bin", b"footage").unwrap();
        manifest.store(&store).unwrap();
        let error = store.delete(Tier::Routine, "a.bin").unwrap_err();
        assert!(matches!(error, StoreError::Retained { .. }), "{error}");
        assert!(store.head(Tier::Routine, "a.bin").unwrap().is_some());

        store.put_small(Tier::Routine, "no-manifest.bin", b"x").unwrap();
        assert!(matches!(
            store.delete(Tier::Routine, "no-manifest.bin").unwrap_err(),
            StoreError::Retained { .. }
        ));
    }

    #[test]
    fn deletion_after_retention_removes_object_and_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let old = chrono::Utc::now() - chrono::Duration::days(400);
        let manifest = serde_json::json!({
            "artefact": "original", "tier": "routine", "key": "old.bin",
            "sha256": sha(b"old"), "sm3": "", "bytes": 3,
            "source": {"path": "old.bin", "file_name": "old.bin", "modified": null},
            "tools": {"evidence": "t", "gstreamer": "t"},
            "created_at": old, "actor": "op"
        });
        store.put_small(Tier::Routine, "old.bin", b"old").unwrap();
        store
            .put_small(Tier::Routine, "old.bin.manifest.json", manifest.to_string().as_bytes())
            .unwrap();
        store.delete(Tier::Routine, "old.bin").unwrap();
        assert!(store.head(Tier::Routine, "old.bin").unwrap().is_none());
        assert!(store.head(Tier::Routine, "old.bin.manifest.json").unwrap().is_none());
    }

    #[test]
    fn copy_into_another_tier_keeps_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.put_small(Tier::Routine, "c.bin", b"clip").unwrap();
        store
            .copy(Tier::Routine, "c.bin", Tier::Longterm, &sha(b"clip"), &Default::default())
            .unwrap();
        assert!(store.head(Tier::Routine, "c.bin").unwrap().is_some());
        assert_eq!(store.head(Tier::Longterm, "c.bin").unwrap().unwrap().bytes, 4);
    }

    #[test]
    fn orphaned_staging_file_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(STAGING_DIR)).unwrap();
        let orphan = dir.path().join(STAGING_DIR).join("4294967-1.part");
        fs::write(&orphan, b"partial").unwrap();
        LocalStore::open(dir.path()).unwrap();
        assert!(!orphan.exists());
    }
}
