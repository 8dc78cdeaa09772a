//! The catalog: what has been ingested, where it lies, and what was found.
//!
//! SQLite on disk on one machine. Every write is keyed by a recording's
//! SHA-256 (or a case id), so a rerun updates rows instead of adding them.
//! The object store holds the bytes; the catalog holds the facts about them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

#[path = "worker/backend.rs"]
mod backend;
#[path = "worker/catalog.rs"]
mod work;
pub use work::{AuditEventRow, FixityRow, GapRow, JobRow, PromotionRow};

/// How long a writer waits for another process's lock before failing:
/// a worker and an operator's command may share one catalog.
const BUSY_TIMEOUT_MS: u64 = 10_000;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS recordings (
    sha256        TEXT PRIMARY KEY,
    sm3           TEXT NOT NULL,
    bytes         INTEGER NOT NULL,
    tier          TEXT NOT NULL,
    key           TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    ingested_at   TEXT NOT NULL,
    actor         TEXT NOT NULL,
    readable      INTEGER NOT NULL DEFAULT 1,
    reason        TEXT,
    device        TEXT,
    officer       TEXT,
    start         TEXT,
    start_source  TEXT,
    probe_json    TEXT
);
CREATE TABLE IF NOT EXISTS sightings (
    sha256   TEXT NOT NULL REFERENCES recordings(sha256),
    path     TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    PRIMARY KEY (sha256, path)
);
CREATE TABLE IF NOT EXISTS findings (
    sha256      TEXT NOT NULL REFERENCES recordings(sha256),
    stage       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    track       INTEGER,
    at_seconds  REAL,
    detail_json TEXT NOT NULL,
    PRIMARY KEY (sha256, stage, kind, track, at_seconds)
);
CREATE TABLE IF NOT EXISTS cases (
    case_id     TEXT PRIMARY KEY,
    record_json TEXT NOT NULL,
    loaded_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    case_id     TEXT NOT NULL,
    unit_id     TEXT NOT NULL,
    device      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    tier        TEXT NOT NULL,
    key         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    sm3         TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    method      TEXT NOT NULL,
    plan_sha256 TEXT NOT NULL,
    report_json TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    PRIMARY KEY (case_id, unit_id, device, version)
);
CREATE TABLE IF NOT EXISTS multipart_uploads (
    upload_id     TEXT PRIMARY KEY,
    target        TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    part_size     INTEGER NOT NULL,
    started_at    TEXT NOT NULL,
    completed_at  TEXT,
    resumed_parts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS multipart_parts (
    upload_id   TEXT NOT NULL REFERENCES multipart_uploads(upload_id),
    part_number INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    part_sha256 TEXT NOT NULL,
    etag        TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE IF NOT EXISTS fixity_checks (
    tier            TEXT NOT NULL,
    copy            TEXT NOT NULL,
    key             TEXT NOT NULL,
    checked_at      TEXT NOT NULL,
    status          TEXT NOT NULL,
    expected_sha256 TEXT,
    actual_sha256   TEXT,
    PRIMARY KEY (tier, copy, key, checked_at)
);
CREATE TABLE IF NOT EXISTS deletions (
    tier        TEXT NOT NULL,
    key         TEXT NOT NULL,
    copy        TEXT NOT NULL,
    sha256      TEXT,
    deleted_at  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    PRIMARY KEY (tier, key, copy)
);
CREATE TABLE IF NOT EXISTS promotions (
    sha256      TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    note        TEXT,
    from_tier   TEXT NOT NULL,
    key         TEXT NOT NULL,
    actor       TEXT NOT NULL,
    promoted_at TEXT NOT NULL,
    PRIMARY KEY (sha256, trigger)
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id   TEXT PRIMARY KEY,
    device       TEXT NOT NULL,
    start        TEXT NOT NULL,
    end          TEXT NOT NULL,
    session_json TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    gap_id      TEXT PRIMARY KEY,
    device      TEXT NOT NULL,
    start       TEXT NOT NULL,
    end         TEXT NOT NULL,
    seconds     REAL NOT NULL,
    kind        TEXT NOT NULL,
    sha256      TEXT,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS justifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    gap_id      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    basis       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS delay_filings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    filed_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS disclosure_requests (
    request_id  TEXT PRIMARY KEY,
    requester   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    note        TEXT,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS disclosure_items (
    request_id  TEXT NOT NULL REFERENCES disclosure_requests(request_id),
    position    INTEGER NOT NULL,
    item        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    tier        TEXT NOT NULL,
    key         TEXT NOT NULL,
    PRIMARY KEY (request_id, position)
);
CREATE TABLE IF NOT EXISTS disclosure_decisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL REFERENCES disclosure_requests(request_id),
    decision    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    decided_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS redactions (
    request_id   TEXT NOT NULL,
    position     INTEGER NOT NULL,
    case_id      TEXT NOT NULL,
    unit_id      TEXT NOT NULL,
    device       TEXT NOT NULL,
    clip_version INTEGER NOT NULL,
    clip_key     TEXT NOT NULL,
    clip_sha256  TEXT NOT NULL,
    tier         TEXT NOT NULL,
    key          TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    method       TEXT NOT NULL,
    replaces_key TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    actor        TEXT NOT NULL,
    PRIMARY KEY (request_id, position, clip_version)
);
CREATE TABLE IF NOT EXISTS disclosure_exports (
    request_id  TEXT NOT NULL REFERENCES disclosure_requests(request_id),
    position    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    key         TEXT NOT NULL,
    actor       TEXT NOT NULL,
    exported_at TEXT NOT NULL,
    detail_json TEXT NOT NULL,
    PRIMARY KEY (request_id, position)
);
"#;

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("catalog {path} failed: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl CatalogError {
    /// Reports whether a retry can help: a locked database can free up, anything else needs a person.
    pub fn is_retryable(&self) -> bool {
        let CatalogError::Sqlite { source, .. } = self;
        matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// One recording as the catalog stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingRow {
    pub sha256: String,
    pub sm3: String,
    pub bytes: u64,
    pub tier: String,
    pub key: String,
    pub file_name: String,
    pub ingested_at: String,
    pub actor: String,
    pub readable: bool,
    pub reason: Option<String>,
    pub device: Option<String>,
    pub officer: Option<String>,
    pub start: Option<String>,
    pub start_source: Option<String>,
    pub probe_json: Option<String>,
}

/// One finding as stored: `detail_json` contains the whole finding.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingRow {
    pub stage: String,
    pub kind: String,
    pub track: Option<i64>,
    pub at_seconds: Option<f64>,
    pub detail_json: String,
}

/// Columns renamed since catalogs were first made, as (table, old, new):
/// a catalog that still has the old name is renamed in place on opening,
/// rows kept. `multipart_parts.crc32c` held each part's SHA-256 once
/// parts went up with SHA-256 checksums.
const RENAMED_COLUMNS: [(&str, &str, &str); 1] = [("multipart_parts", "crc32c", "part_sha256")];

/// Renames the columns of `RENAMED_COLUMNS` that still have their old
/// name, on SQLite and on PostgreSQL alike.
pub(crate) fn rename_old_columns(connection: &backend::Conn) -> rusqlite::Result<()> {
    for (table, old, new) in RENAMED_COLUMNS {
        let lookup = match connection {
            backend::Conn::Sqlite(_) => {
                format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{old}'")
            }
            backend::Conn::Postgres(_) => format!(
                "SELECT COUNT(*) FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = '{old}'"
            ),
        };
        let has_old = |c: &backend::Conn| c.query_row(&lookup, [], |row| row.get::<_, i64>(0)).map(|n| n > 0);
        if !has_old(connection)? {
            continue;
        }
        // The CREATE TABLE above added nothing to a table that existed, so
        // the new column is absent; another process may rename first.
        if let Err(error) = connection.execute_batch(&format!("ALTER TABLE {table} RENAME COLUMN {old} TO {new}")) {
            if has_old(connection)? {
                return Err(error);
            }
        }
        tracing::info!(table, old, new, "catalog column renamed");
    }
    Ok(())
}

pub struct Catalog {
    path: PathBuf,
    connection: Mutex<backend::Conn>,
}

impl Catalog {
    /// Opens (and creates) the catalog file.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let wrap = |source| CatalogError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let connection = Connection::open(path).map_err(wrap)?;
        connection
            .busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(wrap)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        connection.execute_batch(SCHEMA).map_err(wrap)?;
        connection.execute_batch(work::SCHEMA).map_err(wrap)?;
        let connection = backend::Conn::Sqlite(connection);
        rename_old_columns(&connection).map_err(wrap)?;
        Ok(Catalog {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&backend::Conn) -> rusqlite::Result<T>) -> Result<T, CatalogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        f(&connection).map_err(|source| CatalogError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    pub fn recording(&self, sha256: &str) -> Result<Option<RecordingRow>, CatalogError> {
        self.with(|c| {
            c.query_row(
                "SELECT sha256, sm3, bytes, tier, key, file_name, ingested_at, actor, readable,
                        reason, device, officer, start, start_source, probe_json
                 FROM recordings WHERE sha256 = ?1",
                [sha256],
                row_to_recording,
            )
            .optional()
        })
    }

    pub fn recordings(&self) -> Result<Vec<RecordingRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT sha256, sm3, bytes, tier, key, file_name, ingested_at, actor, readable,
                        reason, device, officer, start, start_source, probe_json
                 FROM recordings ORDER BY start, file_name",
            )?;
            let rows = statement.query_map([], row_to_recording)?;
            rows.collect()
        })
    }

    /// Registers a newly stored original. A row already there is kept: the
    /// first ingest is the one of record.
    pub fn insert_recording(&self, row: &RecordingRow) -> Result<bool, CatalogError> {
        self.with(|c| {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO recordings
                   (sha256, sm3, bytes, tier, key, file_name, ingested_at, actor, readable)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)",
                params![
                    row.sha256,
                    row.sm3,
                    row.bytes as i64,
                    row.tier,
                    row.key,
                    row.file_name,
                    row.ingested_at,
                    row.actor
                ],
            )?;
            Ok(inserted == 1)
        })
    }

    /// Records a file path at which a recording was uploaded.
    pub fn record_sighting(&self, sha256: &str, path: &str, seen_at: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO sightings (sha256, path, seen_at) VALUES (?1, ?2, ?3)",
                params![sha256, path, seen_at],
            )
            .map(|_| ())
        })
    }

    /// Stores what the probe learned; a rerun replaces it with the same facts.
    #[allow(clippy::too_many_arguments)]
    pub fn update_probe(
        &self,
        sha256: &str,
        readable: bool,
        reason: Option<&str>,
        device: Option<&str>,
        officer: Option<&str>,
        start: Option<&str>,
        start_source: Option<&str>,
        probe_json: &str,
    ) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "UPDATE recordings SET readable = ?2, reason = ?3, device = ?4, officer = ?5,
                        start = ?6, start_source = ?7, probe_json = ?8
                 WHERE sha256 = ?1",
                params![sha256, readable, reason, device, officer, start, start_source, probe_json],
            )
            .map(|_| ())
        })
    }

    /// Replaces one stage's findings for a recording, so that a rerun of
    /// the stage never leaves stale or doubled rows.
    pub fn replace_findings(&self, sha256: &str, stage: &str, findings: &[FindingRow]) -> Result<(), CatalogError> {
        self.with(|c| {
            let transaction = c.unchecked_transaction()?;
            transaction.execute(
                "DELETE FROM findings WHERE sha256 = ?1 AND stage = ?2",
                params![sha256, stage],
            )?;
            for finding in findings {
                transaction.execute(
                    "INSERT OR REPLACE INTO findings (sha256, stage, kind, track, at_seconds, detail_json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        sha256,
                        stage,
                        finding.kind,
                        finding.track,
                        finding.at_seconds,
                        finding.detail_json
                    ],
                )?;
            }
            transaction.commit()
        })
    }

    pub fn findings(&self, sha256: &str) -> Result<Vec<FindingRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT stage, kind, track, at_seconds, detail_json FROM findings
                 WHERE sha256 = ?1 ORDER BY stage, at_seconds",
            )?;
            let rows = statement.query_map([sha256], |row| {
                Ok(FindingRow {
                    stage: row.get(0)?,
                    kind: row.get(1)?,
                    track: row.get(2)?,
                    at_seconds: row.get(3)?,
                    detail_json: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Stores a case record; a changed record replaces the old one.
    pub fn upsert_case(&self, case_id: &str, record_json: &str, loaded_at: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO cases (case_id, record_json, loaded_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(case_id) DO UPDATE SET record_json = excluded.record_json,
                                                    loaded_at = excluded.loaded_at",
                params![case_id, record_json, loaded_at],
            )
            .map(|_| ())
        })
    }
}

/// A justification of a gap as stored; rows are only ever added.
#[derive(Clone, Debug, PartialEq)]
pub struct JustificationRow {
    pub gap_id: String,
    pub reason: String,
    pub basis: String,
    pub actor: String,
    pub recorded_at: String,
}

/// A filing that explains a late upload; rows are only ever added.
#[derive(Clone, Debug, PartialEq)]
pub struct DelayFilingRow {
    pub sha256: String,
    pub reason: String,
    pub actor: String,
    pub filed_at: String,
}

/// Sessions, gaps, justifications and delay filings of the continuity stage.
impl Catalog {
    /// Stores a session; a rerun replaces it with the same facts.
    pub fn upsert_session(&self, session_id: &str, device: &str, start: &str, end: &str, json: &str, now: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sessions (session_id, device, start, end, session_json, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(session_id) DO UPDATE SET device = excluded.device, start = excluded.start,
                     end = excluded.end, session_json = excluded.session_json, updated_at = excluded.updated_at",
                params![session_id, device, start, end, json, now],
            )
            .map(|_| ())
        })
    }

    /// Stores a gap so that it can be justified by its id.
    #[allow(clippy::too_many_arguments)]
    pub fn upsert_gap(&self, gap_id: &str, device: &str, start: &str, end: &str, seconds: f64, kind: &str, sha256: Option<&str>, now: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO gaps (gap_id, device, start, end, seconds, kind, sha256, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(gap_id) DO UPDATE SET device = excluded.device, start = excluded.start,
                     end = excluded.end, seconds = excluded.seconds, kind = excluded.kind,
                     sha256 = excluded.sha256, updated_at = excluded.updated_at",
                params![gap_id, device, start, end, seconds, kind, sha256, now],
            )
            .map(|_| ())
        })
    }

    pub fn has_gap(&self, gap_id: &str) -> Result<bool, CatalogError> {
        self.with(|c| {
            c.query_row("SELECT 1 FROM gaps WHERE gap_id = ?1", [gap_id], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
    }

    pub fn gap_ids_of_device(&self, device: &str) -> Result<Vec<String>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT gap_id FROM gaps WHERE device = ?1 ORDER BY start")?;
            let rows = statement.query_map([device], |row| row.get(0))?;
            rows.collect()
        })
    }

    pub fn add_justification(&self, gap_id: &str, reason: &str, basis: &str, actor: &str, recorded_at: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO justifications (gap_id, reason, basis, actor, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![gap_id, reason, basis, actor, recorded_at],
            )
            .map(|_| ())
        })
    }

    /// Every justification, oldest first.
    pub fn justifications(&self) -> Result<Vec<JustificationRow>, CatalogError> {
        self.with(|c| {
            let mut statement =
                c.prepare("SELECT gap_id, reason, basis, actor, recorded_at FROM justifications ORDER BY id")?;
            let rows = statement.query_map([], |row| {
                Ok(JustificationRow {
                    gap_id: row.get(0)?,
                    reason: row.get(1)?,
                    basis: row.get(2)?,
                    actor: row.get(3)?,
                    recorded_at: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn add_delay_filing(&self, sha256: &str, reason: &str, actor: &str, filed_at: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO delay_filings (sha256, reason, actor, filed_at) VALUES (?1, ?2, ?3, ?4)",
                params![sha256, reason, actor, filed_at],
            )
            .map(|_| ())
        })
    }

    /// Every delay filing, oldest first.
    pub fn delay_filings(&self) -> Result<Vec<DelayFilingRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT sha256, reason, actor, filed_at FROM delay_filings ORDER BY id")?;
            let rows = statement.query_map([], |row| {
                Ok(DelayFilingRow {
                    sha256: row.get(0)?,
                    reason: row.get(1)?,
                    actor: row.get(2)?,
                    filed_at: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// A multipart upload the object store started, for resuming it.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadRow {
    pub upload_id: String,
    pub target: String,
    pub sha256: String,
    pub part_size: u64,
    pub completed_at: Option<String>,
    pub resumed_parts: u64,
}

/// A part the server acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub struct PartRow {
    pub part_number: i32,
    pub bytes: u64,
    /// The part's SHA-256, base64, as sent in `x-amz-checksum-sha256`.
    pub sha256: String,
    pub etag: String,
}

impl Catalog {
    /// The unfinished upload of these bytes to this target, if any.
    pub fn open_upload(&self, target: &str, sha256: &str) -> Result<Option<UploadRow>, CatalogError> {
        self.with(|c| {
            c.query_row(
                "SELECT upload_id, target, sha256, part_size, completed_at, resumed_parts
                 FROM multipart_uploads WHERE target = ?1 AND sha256 = ?2 AND completed_at IS NULL
                 ORDER BY started_at DESC LIMIT 1",
                params![target, sha256],
                row_to_upload,
            )
            .optional()
        })
    }

    /// Every upload ever started to a target, newest first.
    pub fn uploads(&self, target: &str) -> Result<Vec<UploadRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT upload_id, target, sha256, part_size, completed_at, resumed_parts
                 FROM multipart_uploads WHERE target = ?1 ORDER BY started_at DESC",
            )?;
            let rows = statement.query_map([target], row_to_upload)?;
            rows.collect()
        })
    }

    pub fn start_upload(&self, upload_id: &str, target: &str, sha256: &str, part_size: u64, started_at: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO multipart_uploads (upload_id, target, sha256, part_size, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![upload_id, target, sha256, part_size as i64, started_at],
            )
            .map(|_| ())
        })
    }

    pub fn record_part(&self, upload_id: &str, part: &PartRow) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO multipart_parts (upload_id, part_number, bytes, part_sha256, etag)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![upload_id, part.part_number, part.bytes as i64, part.sha256, part.etag],
            )
            .map(|_| ())
        })
    }

    pub fn parts(&self, upload_id: &str) -> Result<Vec<PartRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT part_number, bytes, part_sha256, etag FROM multipart_parts
                 WHERE upload_id = ?1 ORDER BY part_number",
            )?;
            let rows = statement.query_map([upload_id], |row| {
                Ok(PartRow {
                    part_number: row.get(0)?,
                    bytes: row.get::<_, i64>(1)? as u64,
                    sha256: row.get(2)?,
                    etag: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Marks an upload complete, with how many parts an earlier run had sent.
    pub fn finish_upload(&self, upload_id: &str, resumed_parts: u64, completed_at: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "UPDATE multipart_uploads SET completed_at = ?2, resumed_parts = ?3 WHERE upload_id = ?1",
                params![upload_id, completed_at, resumed_parts as i64],
            )
            .map(|_| ())
        })
    }

    /// Forgets an upload the server no longer knows (aborted or expired).
    pub fn forget_upload(&self, upload_id: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute("DELETE FROM multipart_parts WHERE upload_id = ?1", [upload_id])?;
            c.execute("DELETE FROM multipart_uploads WHERE upload_id = ?1", [upload_id])
                .map(|_| ())
        })
    }

    /// Records a copy (`primary` or `backup`) deleted after its retention
    /// ended, so that fixity checks and reports stop expecting it.
    pub fn record_deletion(
        &self,
        tier: &str,
        key: &str,
        copy: &str,
        sha256: Option<&str>,
        deleted_at: &str,
        actor: &str,
    ) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO deletions (tier, key, copy, sha256, deleted_at, actor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![tier, key, copy, sha256, deleted_at, actor],
            )
            .map(|_| ())
        })
    }

    /// Keys of one tier whose primary copy was deleted after retention.
    pub fn deleted_keys(&self, tier: &str) -> Result<std::collections::BTreeSet<String>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT key FROM deletions WHERE tier = ?1 AND copy = 'primary'")?;
            let rows = statement.query_map([tier], |row| row.get::<_, String>(0))?;
            rows.collect()
        })
    }

    /// Records one fixity check of one stored copy.
    #[allow(clippy::too_many_arguments)]
    pub fn record_fixity(
        &self,
        tier: &str,
        copy: &str,
        key: &str,
        checked_at: &str,
        status: &str,
        expected_sha256: Option<&str>,
        actual_sha256: Option<&str>,
    ) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO fixity_checks
                   (tier, copy, key, checked_at, status, expected_sha256, actual_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tier, copy, key, checked_at, status, expected_sha256, actual_sha256],
            )
            .map(|_| ())
        })
    }

    /// Records an Article 13 promotion; the same trigger twice is one row.
    #[allow(clippy::too_many_arguments)]
    pub fn record_promotion(
        &self,
        sha256: &str,
        trigger: &str,
        note: Option<&str>,
        from_tier: &str,
        key: &str,
        actor: &str,
        promoted_at: &str,
    ) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO promotions (sha256, trigger, note, from_tier, key, actor, promoted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![sha256, trigger, note, from_tier, key, actor, promoted_at],
            )
            .map(|_| ())
        })
    }

    /// Points a recording at the tier that now holds its copy of record.
    pub fn set_recording_tier(&self, sha256: &str, tier: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute("UPDATE recordings SET tier = ?2 WHERE sha256 = ?1", params![sha256, tier])
                .map(|_| ())
        })
    }
}

fn row_to_upload(row: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        upload_id: row.get(0)?,
        target: row.get(1)?,
        sha256: row.get(2)?,
        part_size: row.get::<_, i64>(3)? as u64,
        completed_at: row.get(4)?,
        resumed_parts: row.get::<_, i64>(5)? as u64,
    })
}

/// One version of a unit's clip from one device. Versions are never
/// replaced: a changed case record adds the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipRow {
    pub case_id: String,
    pub unit_id: String,
    pub device: String,
    pub version: u32,
    pub tier: String,
    pub key: String,
    pub sha256: String,
    pub sm3: String,
    pub bytes: u64,
    pub method: String,
    /// SHA-256 of the plan the clip was cut from, to recognize a rerun.
    pub plan_sha256: String,
    pub report_json: String,
    pub created_at: String,
    pub actor: String,
}

impl Catalog {
    /// Registers a new clip version; an existing version is an error,
    /// because a version once made is never replaced.
    pub fn insert_clip(&self, row: &ClipRow) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO clips (case_id, unit_id, device, version, tier, key, sha256, sm3, bytes,
                                    method, plan_sha256, report_json, created_at, actor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    row.case_id,
                    row.unit_id,
                    row.device,
                    row.version,
                    row.tier,
                    row.key,
                    row.sha256,
                    row.sm3,
                    row.bytes as i64,
                    row.method,
                    row.plan_sha256,
                    row.report_json,
                    row.created_at,
                    row.actor
                ],
            )
            .map(|_| ())
        })
    }

    /// Returns every version of the clips of a case, oldest first.
    pub fn clips(&self, case_id: &str) -> Result<Vec<ClipRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT case_id, unit_id, device, version, tier, key, sha256, sm3, bytes, method,
                        plan_sha256, report_json, created_at, actor
                 FROM clips WHERE case_id = ?1 ORDER BY unit_id, device, version",
            )?;
            let rows = statement.query_map([case_id], |row| {
                Ok(ClipRow {
                    case_id: row.get(0)?,
                    unit_id: row.get(1)?,
                    device: row.get(2)?,
                    version: row.get(3)?,
                    tier: row.get(4)?,
                    key: row.get(5)?,
                    sha256: row.get(6)?,
                    sm3: row.get(7)?,
                    bytes: row.get::<_, i64>(8)? as u64,
                    method: row.get(9)?,
                    plan_sha256: row.get(10)?,
                    report_json: row.get(11)?,
                    created_at: row.get(12)?,
                    actor: row.get(13)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// A disclosure request as stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DisclosureRow {
    pub request_id: String,
    pub requester: String,
    pub purpose: String,
    pub spec_json: String,
    pub note: Option<String>,
    pub status: String,
    pub created_at: String,
}

/// One item of a disclosure request: the stored object it names.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DisclosureItemRow {
    pub position: i64,
    pub item: String,
    pub sha256: String,
    pub tier: String,
    pub key: String,
}

/// An approval or rejection.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DisclosureDecisionRow {
    pub decision: String,
    pub actor: String,
    pub reason: Option<String>,
    pub decided_at: String,
}

/// One exported, redacted copy.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DisclosureExportRow {
    pub position: i64,
    pub sha256: String,
    pub key: String,
    pub actor: String,
    pub exported_at: String,
    pub detail_json: String,
}

impl Catalog {
    /// Creates a request numbered `PREFIX-NNN` (the next free number under
    /// the prefix) with its items, in one transaction; returns the number.
    pub fn create_disclosure_request(
        &self,
        prefix: &str,
        request: &DisclosureRow,
        items: &[DisclosureItemRow],
    ) -> Result<String, CatalogError> {
        self.with(|c| {
            let transaction = c.unchecked_transaction()?;
            let taken: i64 = transaction.query_row(
                "SELECT COUNT(*) FROM disclosure_requests WHERE request_id LIKE ?1 || '-%'",
                [prefix],
                |row| row.get(0),
            )?;
            let request_id = format!("{prefix}-{:03}", taken + 1);
            transaction.execute(
                "INSERT INTO disclosure_requests (request_id, requester, purpose, spec_json, note, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    request_id,
                    request.requester,
                    request.purpose,
                    request.spec_json,
                    request.note,
                    request.status,
                    request.created_at
                ],
            )?;
            for item in items {
                transaction.execute(
                    "INSERT INTO disclosure_items (request_id, position, item, sha256, tier, key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![request_id, item.position, item.item, item.sha256, item.tier, item.key],
                )?;
            }
            transaction.commit()?;
            Ok(request_id)
        })
    }

    pub fn disclosure_request(&self, request_id: &str) -> Result<Option<DisclosureRow>, CatalogError> {
        self.with(|c| {
            c.query_row(
                "SELECT request_id, requester, purpose, spec_json, note, status, created_at
                 FROM disclosure_requests WHERE request_id = ?1",
                [request_id],
                row_to_disclosure,
            )
            .optional()
        })
    }

    pub fn disclosure_requests(&self) -> Result<Vec<DisclosureRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT request_id, requester, purpose, spec_json, note, status, created_at
                 FROM disclosure_requests ORDER BY created_at, request_id",
            )?;
            let rows = statement.query_map([], row_to_disclosure)?;
            rows.collect()
        })
    }

    pub fn disclosure_items(&self, request_id: &str) -> Result<Vec<DisclosureItemRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT position, item, sha256, tier, key FROM disclosure_items
                 WHERE request_id = ?1 ORDER BY position",
            )?;
            let rows = statement.query_map([request_id], |row| {
                Ok(DisclosureItemRow {
                    position: row.get(0)?,
                    item: row.get(1)?,
                    sha256: row.get(2)?,
                    tier: row.get(3)?,
                    key: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Records a decision and moves the request from `from_status` to
    /// `to_status`; returns false, recording nothing, when the request is
    /// not in `from_status` (decided meanwhile).
    pub fn decide_disclosure(
        &self,
        request_id: &str,
        from_status: &str,
        to_status: &str,
        decision: &DisclosureDecisionRow,
    ) -> Result<bool, CatalogError> {
        self.with(|c| {
            let transaction = c.unchecked_transaction()?;
            let changed = transaction.execute(
                "UPDATE disclosure_requests SET status = ?3 WHERE request_id = ?1 AND status = ?2",
                params![request_id, from_status, to_status],
            )?;
            if changed == 1 {
                transaction.execute(
                    "INSERT INTO disclosure_decisions (request_id, decision, actor, reason, decided_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![request_id, decision.decision, decision.actor, decision.reason, decision.decided_at],
                )?;
            }
            transaction.commit()?;
            Ok(changed == 1)
        })
    }

    pub fn disclosure_decisions(&self, request_id: &str) -> Result<Vec<DisclosureDecisionRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT decision, actor, reason, decided_at FROM disclosure_decisions
                 WHERE request_id = ?1 ORDER BY id",
            )?;
            let rows = statement.query_map([request_id], |row| {
                Ok(DisclosureDecisionRow {
                    decision: row.get(0)?,
                    actor: row.get(1)?,
                    reason: row.get(2)?,
                    decided_at: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Records one exported copy; a rerun of the same export keeps the first row.
    pub fn record_disclosure_export(&self, request_id: &str, export: &DisclosureExportRow) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO disclosure_exports (request_id, position, sha256, key, actor, exported_at, detail_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    request_id,
                    export.position,
                    export.sha256,
                    export.key,
                    export.actor,
                    export.exported_at,
                    export.detail_json
                ],
            )
            .map(|_| ())
        })
    }

    pub fn disclosure_exports(&self, request_id: &str) -> Result<Vec<DisclosureExportRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT position, sha256, key, actor, exported_at, detail_json FROM disclosure_exports
                 WHERE request_id = ?1 ORDER BY position",
            )?;
            let rows = statement.query_map([request_id], |row| {
                Ok(DisclosureExportRow {
                    position: row.get(0)?,
                    sha256: row.get(1)?,
                    key: row.get(2)?,
                    actor: row.get(3)?,
                    exported_at: row.get(4)?,
                    detail_json: row.get(5)?,
                })
            })?;
            rows.collect()
        })
    }
}

fn row_to_disclosure(row: &rusqlite::Row<'_>) -> rusqlite::Result<DisclosureRow> {
    Ok(DisclosureRow {
        request_id: row.get(0)?,
        requester: row.get(1)?,
        purpose: row.get(2)?,
        spec_json: row.get(3)?,
        note: row.get(4)?,
        status: row.get(5)?,
        created_at: row.get(6)?,
    })
}

fn row_to_recording(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordingRow> {
    Ok(RecordingRow {
        sha256: row.get(0)?,
        sm3: row.get(1)?,
        bytes: row.get::<_, i64>(2)? as u64,
        tier: row.get(3)?,
        key: row.get(4)?,
        file_name: row.get(5)?,
        ingested_at: row.get(6)?,
        actor: row.get(7)?,
        readable: row.get(8)?,
        reason: row.get(9)?,
        device: row.get(10)?,
        officer: row.get(11)?,
        start: row.get(12)?,
        start_source: row.get(13)?,
        probe_json: row.get(14)?,
    })
}

/// A redacted copy made again from a newer clip version, with the spec of
/// the disclosure item whose copy it follows.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RedactionRow {
    pub request_id: String,
    pub position: i64,
    pub case_id: String,
    pub unit_id: String,
    pub device: String,
    pub clip_version: u32,
    pub clip_key: String,
    pub clip_sha256: String,
    pub tier: String,
    pub key: String,
    pub sha256: String,
    pub bytes: u64,
    /// `smart` or `full`, as the redaction log records it.
    pub method: String,
    /// `TIER/KEY` of the redacted copy this one follows: the exported copy
    /// or the copy remade from the clip version before.
    pub replaces_key: String,
    pub created_at: String,
    pub actor: String,
}

impl Catalog {
    /// Registers a remade redacted copy; returns `false` when the copy of
    /// this item from this clip version is already registered.
    pub fn insert_redaction(&self, row: &RedactionRow) -> Result<bool, CatalogError> {
        self.with(|c| {
            let added = c.execute(
                "INSERT INTO redactions (request_id, position, case_id, unit_id, device, clip_version,
                                         clip_key, clip_sha256, tier, key, sha256, bytes, method,
                                         replaces_key, created_at, actor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (request_id, position, clip_version) DO NOTHING",
                params![
                    row.request_id,
                    row.position,
                    row.case_id,
                    row.unit_id,
                    row.device,
                    row.clip_version,
                    row.clip_key,
                    row.clip_sha256,
                    row.tier,
                    row.key,
                    row.sha256,
                    row.bytes as i64,
                    row.method,
                    row.replaces_key,
                    row.created_at,
                    row.actor
                ],
            )?;
            Ok(added == 1)
        })
    }

    /// Returns the remade redacted copies of a case, oldest clip version first.
    pub fn redactions(&self, case_id: &str) -> Result<Vec<RedactionRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT request_id, position, case_id, unit_id, device, clip_version, clip_key,
                        clip_sha256, tier, key, sha256, bytes, method, replaces_key, created_at, actor
                 FROM redactions WHERE case_id = ?1 ORDER BY request_id, position, clip_version",
            )?;
            let rows = statement.query_map([case_id], |row| {
                Ok(RedactionRow {
                    request_id: row.get(0)?,
                    position: row.get(1)?,
                    case_id: row.get(2)?,
                    unit_id: row.get(3)?,
                    device: row.get(4)?,
                    clip_version: row.get(5)?,
                    clip_key: row.get(6)?,
                    clip_sha256: row.get(7)?,
                    tier: row.get(8)?,
                    key: row.get(9)?,
                    sha256: row.get(10)?,
                    bytes: row.get::<_, i64>(11)? as u64,
                    method: row.get(12)?,
                    replaces_key: row.get(13)?,
                    created_at: row.get(14)?,
                    actor: row.get(15)?,
                })
            })?;
            rows.collect()
        })
    }
}

impl Catalog {
    /// Reads the last event of the audit chain, to anchor it.
    pub fn last_audit_event(&self) -> Result<Option<AuditEventRow>, CatalogError> {
        self.with(|c| {
            c.query_row(
                "SELECT seq, at, actor, action, object, detail_json, prev_hash, hash
                 FROM audit_events ORDER BY seq DESC LIMIT 1",
                [],
                |row| {
                    Ok(AuditEventRow {
                        seq: row.get(0)?,
                        at: row.get(1)?,
                        actor: row.get(2)?,
                        action: row.get(3)?,
                        object: row.get(4)?,
                        detail_json: row.get(5)?,
                        prev_hash: row.get(6)?,
                        hash: row.get(7)?,
                    })
                },
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sha: &str) -> RecordingRow {
        RecordingRow {
            sha256: sha.into(),
            sm3: "s".into(),
            bytes: 3,
            tier: "routine".into(),
            key: format!("originals/{sha}.mp4"),
            file_name: "a.mp4".into(),
            ingested_at: "2024-05-01T00:00:00Z".into(),
            actor: "op".into(),
            readable: true,
            reason: None,
            device: None,
            officer: None,
            start: None,
            start_source: None,
            probe_json: None,
        }
    }

    #[test]
    fn second_insert_of_same_hash_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        assert!(catalog.insert_recording(&row("aa")).unwrap());
        assert!(!catalog.insert_recording(&row("aa")).unwrap());
        assert_eq!(catalog.recordings().unwrap().len(), 1);
    }

    #[test]
    fn replaced_findings_do_not_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        catalog.insert_recording(&row("aa")).unwrap();
        let finding = FindingRow {
            stage: "continuity".into(),
            kind: "gap".into(),
            track: Some(0),
            at_seconds: Some(5.0),
            detail_json: "{}".into(),
        };
        catalog.replace_findings("aa", "continuity", &[finding.clone()]).unwrap();
        catalog.replace_findings("aa", "continuity", &[finding]).unwrap();
        assert_eq!(catalog.findings("aa").unwrap().len(), 1);
    }
}
