//! The recordings a split reads: originals from the catalog and the store,
//! with their container index, grouped by device and ordered by start.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};

use super::plan::{recording_span, Recording};
use crate::case::CaseRecord;
use crate::catalog::RecordingRow;
use crate::i18n::Text;
use crate::media::index::read_index;
use crate::runner::Services;
use crate::store::{key_segment, Tier};

/// Maximum length of one recording file. A recording that starts this long
/// before the case cannot reach into it, so its index is not read.
const MAX_RECORDING_HOURS: i64 = 24;

/// Device name for recordings whose file name and container name none,
/// the same segment the ingest stage files them under.
pub const UNKNOWN_DEVICE: &str = "unknown-device";

/// Folder under the data directory for originals copied out of a store
/// that has no local path.
const WORK_DIR: &str = "split-work";

/// Purpose of the audit `read` event of each original a split opens.
const READ_PURPOSE: &str = "split";

pub struct Loaded {
    pub recordings: Vec<Recording>,
    /// Recordings that could have been part of the case but were skipped.
    pub notes: Vec<Text>,
}

/// Loads the readable recordings that overlap the case's time window and
/// belong to its officers (or name none).
pub fn load_recordings(
    services: &Services,
    case: &CaseRecord,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Loaded {
    let mut loaded = Loaded {
        recordings: Vec::new(),
        notes: Vec::new(),
    };
    let rows = match services.catalog.recordings() {
        Ok(rows) => rows,
        Err(error) => {
            loaded.notes.push(Text::new(
                format!("无法读取目录数据库：{error}"),
                format!("cannot read the catalog: {error}"),
            ));
            return loaded;
        }
    };
    let earliest = window.0 - Duration::hours(MAX_RECORDING_HOURS);

    for row in rows {
        let Some(start) = row
            .start
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        else {
            continue;
        };
        let start = start.with_timezone(&Utc);
        if !row.readable || start < earliest || start >= window.1 {
            continue;
        }
        let is_other_officer = match (&row.officer, case.officers.is_empty()) {
            (Some(officer), false) => !case.officers.contains(officer),
            _ => false,
        };
        if is_other_officer {
            tracing::debug!(file = %row.file_name, "recording of an officer not in the case; skipped");
            continue;
        }
        match open_recording(services, &row, start) {
            Ok(recording) => {
                let end = start + Duration::nanoseconds((recording.span * 1e9) as i64);
                if end > window.0 {
                    loaded.recordings.push(recording);
                }
            }
            Err(reason) => {
                tracing::warn!(file = %row.file_name, reason = %reason, "recording skipped");
                loaded.notes.push(Text::new(
                    format!("录像 {} 未能用于分割：{}", row.file_name, reason.zh),
                    format!(
                        "recording {} was not used for splitting: {}",
                        row.file_name, reason.en
                    ),
                ));
            }
        }
    }
    loaded
}

/// Groups recordings by device, each group ordered by start and name.
pub fn by_device(recordings: Vec<Recording>) -> BTreeMap<String, Vec<Recording>> {
    let mut devices: BTreeMap<String, Vec<Recording>> = BTreeMap::new();
    for recording in recordings {
        devices
            .entry(recording.device.clone())
            .or_default()
            .push(recording);
    }
    for list in devices.values_mut() {
        list.sort_by(|a, b| a.start.cmp(&b.start).then(a.file_name.cmp(&b.file_name)));
    }
    devices
}

fn open_recording(
    services: &Services,
    row: &RecordingRow,
    start: DateTime<Utc>,
) -> Result<Recording, Text> {
    let tier = Tier::parse(&row.tier).unwrap_or(Tier::Routine);
    let path = local_path(services, tier, &row.key, &row.sha256)?;
    let index = read_index(&path).map_err(|e| {
        let reason = e.text();
        Text::new(
            format!("无法读取索引：{}", reason.zh),
            format!("cannot read its index: {}", reason.en),
        )
    })?;
    let span = recording_span(&index);
    if span <= 0.0 {
        return Err(Text::new(
            "没有可播放的音视频帧",
            "it holds no playable frames",
        ));
    }
    Ok(Recording {
        sha256: row.sha256.clone(),
        file_name: row.file_name.clone(),
        key: row.key.clone(),
        device: row
            .device
            .as_deref()
            .map(key_segment)
            .unwrap_or_else(|| UNKNOWN_DEVICE.to_string()),
        start,
        path,
        index,
        span,
    })
}

/// Returns a local file holding the original: the store's own file when it
/// has one, else a copy read through the store into the work folder. The
/// read is logged in the audit chain first, whichever of the two it is.
fn local_path(services: &Services, tier: Tier, key: &str, sha256: &str) -> Result<PathBuf, Text> {
    let not_found = |e: &dyn std::fmt::Display| {
        Text::new(
            format!("存储中找不到原始文件：{e}"),
            format!("the original is not in the store: {e}"),
        )
    };
    let read = crate::audit::StoredRead {
        tier,
        key,
        sha256: Some(sha256),
        purpose: READ_PURPOSE,
        extra: None,
    };
    let logged = crate::audit::read_stored(services, &read).map_err(|e| e.text())?;
    if let Some(path) = logged.local_file(services.store.as_ref()).map_err(|e| not_found(&e))? {
        return Ok(path);
    }

    // NOTE: a store without local files is copied out whole before cutting,
    // which doubles the disk space a split needs for the moment.
    let dir = services.data_dir.join(WORK_DIR);
    let path = dir.join(format!("{sha256}.original"));
    if path.is_file() {
        return Ok(path);
    }
    let copy_failed = |e: &dyn std::fmt::Display| {
        Text::new(
            format!("无法从存储读出原始文件：{e}"),
            format!("cannot read the original out of the store: {e}"),
        )
    };
    std::fs::create_dir_all(&dir).map_err(|e| copy_failed(&e))?;
    let mut reader = logged
        .open(services.store.as_ref())
        .map_err(|e| copy_failed(&e))?;
    let partial = dir.join(format!("{sha256}.part"));
    let mut file = std::fs::File::create(&partial).map_err(|e| copy_failed(&e))?;
    std::io::copy(&mut reader, &mut file).map_err(|e| copy_failed(&e))?;
    file.flush().map_err(|e| copy_failed(&e))?;
    std::fs::rename(&partial, &path).map_err(|e| copy_failed(&e))?;
    Ok(path)
}
