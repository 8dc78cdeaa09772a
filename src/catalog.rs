//! The catalog: what has been ingested, where it lies, and what was found.
//!
//! SQLite on disk on one machine. Every write is keyed by a recording's
//! SHA-256 (or a case id), so a rerun updates rows instead of adding them.
//! The object store holds the bytes; the catalog holds the facts about them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

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
    /// A locked database can free up; anything else needs a person.
    pub fn is_retryable(&self) -> bool {
        let CatalogError::Sqlite { source, .. } = self;
        matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// One recording as the catalog holds it.
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

/// One finding as stored: `detail_json` holds the whole finding.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingRow {
    pub stage: String,
    pub kind: String,
    pub track: Option<i64>,
    pub at_seconds: Option<f64>,
    pub detail_json: String,
}

pub struct Catalog {
    path: PathBuf,
    connection: Mutex<Connection>,
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
        Ok(Catalog {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, CatalogError> {
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
