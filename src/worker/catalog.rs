//! The catalog's tables for durable jobs and the audit chain.
//!
//! Kept beside the worker so that the shared catalog file only names this
//! module; the SQL still runs through the catalog's one connection. Times
//! that are compared (leases, backoff) are Unix milliseconds, because text
//! times sort differently under some database collations.

use rusqlite::{params, OptionalExtension};

use super::{Catalog, CatalogError};

/// Tables of this module, created with the rest of the catalog.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    job_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    rerun        INTEGER NOT NULL DEFAULT 0,
    not_before   INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (kind, subject)
);
CREATE TABLE IF NOT EXISTS audit_events (
    seq         INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT NOT NULL,
    detail_json TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
"#;

/// One durable job as stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct JobRow {
    pub job_id: i64,
    pub kind: String,
    pub subject: String,
    pub payload_json: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub not_before_ms: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    /// The last failure as JSON text (`{"zh": …, "en": …}`).
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One audit event as stored; `hash` covers every other field but `seq`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AuditEventRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub detail_json: String,
    pub prev_hash: String,
    pub hash: String,
}

const JOB_COLUMNS: &str =
    "job_id, kind, subject, payload_json, status, attempts, not_before, lease_owner,
                           lease_until, last_error, created_at, updated_at";

fn row_to_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        job_id: row.get(0)?,
        kind: row.get(1)?,
        subject: row.get(2)?,
        payload_json: row.get(3)?,
        status: row.get(4)?,
        attempts: row.get(5)?,
        not_before_ms: row.get(6)?,
        lease_owner: row.get(7)?,
        lease_until_ms: row.get(8)?,
        last_error: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
    })
}

/// Durable jobs: enqueue once per (kind, subject), claim under a lease.
impl Catalog {
    /// Adds a job unless one of the same kind and subject exists, so that
    /// an upload seen twice is queued once. Returns whether it was added.
    pub fn enqueue_job(
        &self,
        kind: &str,
        subject: &str,
        payload_json: &str,
        now: &str,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        self.with(|c| {
            let added = c.execute(
                "INSERT INTO jobs (kind, subject, payload_json, status, not_before, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?5)
                 ON CONFLICT (kind, subject) DO NOTHING",
                params![kind, subject, payload_json, now_ms, now],
            )?;
            Ok(added == 1)
        })
    }

    /// Queues a job to run (again) over the latest state of its subject:
    /// a finished or failed one goes back to the queue, and a running one
    /// is marked to run once more when it ends. One row per subject, so
    /// two workers never work on the same subject at once.
    pub fn requeue_job(
        &self,
        kind: &str,
        subject: &str,
        payload_json: &str,
        now: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO jobs (kind, subject, payload_json, status, not_before, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?5)
                 ON CONFLICT (kind, subject) DO UPDATE SET payload_json = excluded.payload_json,
                     rerun = CASE WHEN jobs.status = 'running' THEN 1 ELSE 0 END,
                     attempts = CASE WHEN jobs.status = 'running' THEN jobs.attempts ELSE 0 END,
                     status = CASE WHEN jobs.status = 'running' THEN 'running' ELSE 'queued' END,
                     not_before = excluded.not_before, updated_at = excluded.updated_at",
                params![kind, subject, payload_json, now_ms, now],
            )
            .map(|_| ())
        })
    }

    /// Claims the oldest job that is due, or whose lease has run out, for
    /// `owner` until `lease_until_ms`. One statement, so that two workers
    /// never claim the same job.
    pub fn claim_job(
        &self,
        owner: &str,
        now: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<JobRow>, CatalogError> {
        let sql = format!(
            "UPDATE jobs SET status = 'running', lease_owner = ?1, lease_until = ?2, attempts = attempts + 1,
                             rerun = 0, updated_at = ?3
             WHERE job_id = (SELECT job_id FROM jobs
                             WHERE (status = 'queued' AND not_before <= ?4)
                                OR (status = 'running' AND lease_until < ?4)
                             ORDER BY job_id LIMIT 1 /*skip locked*/)
             RETURNING {JOB_COLUMNS}"
        );
        self.with(|c| {
            c.query_row(
                &sql,
                params![owner, lease_until_ms, now, now_ms],
                row_to_job,
            )
            .optional()
        })
    }

    /// Extends a lease while its owner still holds it; false when another
    /// worker has taken the job over.
    pub fn renew_lease(
        &self,
        job_id: i64,
        owner: &str,
        lease_until_ms: i64,
    ) -> Result<bool, CatalogError> {
        self.with(|c| {
            let changed = c.execute(
                "UPDATE jobs SET lease_until = ?3 WHERE job_id = ?1 AND lease_owner = ?2 AND status = 'running'",
                params![job_id, owner, lease_until_ms],
            )?;
            Ok(changed == 1)
        })
    }

    /// Ends a job as `done`, `failed`, or back to `queued` after
    /// `not_before_ms`. A job requeued meanwhile goes back to the queue
    /// instead of `done`.
    #[allow(clippy::too_many_arguments)]
    pub fn settle_job(
        &self,
        job_id: i64,
        owner: &str,
        status: &str,
        not_before_ms: i64,
        error_json: Option<&str>,
        now: &str,
    ) -> Result<bool, CatalogError> {
        self.with(|c| {
            let changed = c.execute(
                "UPDATE jobs SET status = CASE WHEN rerun = 1 AND ?3 = 'done' THEN 'queued' ELSE ?3 END,
                                 attempts = CASE WHEN rerun = 1 AND ?3 = 'done' THEN 0 ELSE attempts END,
                                 rerun = 0, not_before = ?4, last_error = COALESCE(?5, last_error),
                                 lease_owner = NULL, lease_until = NULL, updated_at = ?6
                 WHERE job_id = ?1 AND lease_owner = ?2 AND status = 'running'",
                params![job_id, owner, status, not_before_ms, error_json, now],
            )?;
            Ok(changed == 1)
        })
    }

    /// Frees the leases of owners known to be dead (a worker on this
    /// machine whose process is gone), so their jobs need not wait for expiry.
    pub fn release_leases_of(&self, owner: &str, now: &str) -> Result<usize, CatalogError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET status = 'queued', rerun = 0, lease_owner = NULL, lease_until = NULL, updated_at = ?2
                 WHERE lease_owner = ?1 AND status = 'running'",
                params![owner, now],
            )
        })
    }

    pub fn jobs(&self) -> Result<Vec<JobRow>, CatalogError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY job_id");
        self.with(|c| {
            let mut statement = c.prepare(&sql)?;
            let rows = statement.query_map([], row_to_job)?;
            rows.collect()
        })
    }
}

/// The audit chain: events are only appended, each linked to the last.
impl Catalog {
    /// Appends an event whose hash `hash_of(prev_hash)` computes. The read
    /// of the last hash and the insert are one write transaction, so two
    /// processes never link to the same predecessor.
    #[allow(clippy::too_many_arguments)]
    pub fn append_audit_event(
        &self,
        at: &str,
        actor: &str,
        action: &str,
        object: &str,
        detail_json: &str,
        genesis: &str,
        hash_of: &dyn Fn(&str) -> String,
    ) -> Result<AuditEventRow, CatalogError> {
        self.with(|c| {
            c.execute_batch("BEGIN IMMEDIATE")?;
            let result = (|| {
                let last: Option<(i64, String)> = c
                    .query_row("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", [], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                let (seq, prev_hash) = match last {
                    Some((seq, hash)) => (seq + 1, hash),
                    None => (1, genesis.to_string()),
                };
                let hash = hash_of(&prev_hash);
                c.execute(
                    "INSERT INTO audit_events (seq, at, actor, action, object, detail_json, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![seq, at, actor, action, object, detail_json, prev_hash, hash],
                )?;
                Ok(AuditEventRow {
                    seq,
                    at: at.to_string(),
                    actor: actor.to_string(),
                    action: action.to_string(),
                    object: object.to_string(),
                    detail_json: detail_json.to_string(),
                    prev_hash,
                    hash,
                })
            })();
            match result {
                Ok(row) => {
                    c.execute_batch("COMMIT")?;
                    Ok(row)
                }
                Err(error) => {
                    let _ = c.execute_batch("ROLLBACK");
                    Err(error)
                }
            }
        })
    }

    /// Reads every event in the order of its sequence number.
    pub fn audit_events(&self) -> Result<Vec<AuditEventRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT seq, at, actor, action, object, detail_json, prev_hash, hash FROM audit_events ORDER BY seq",
            )?;
            let rows = statement.query_map([], |row| {
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
            })?;
            rows.collect()
        })
    }

    /// Checks whether an event of this action on this object was recorded,
    /// so that a stage run again after a crash logs its event once.
    pub fn has_audit_event(&self, action: &str, object: &str) -> Result<bool, CatalogError> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM audit_events WHERE action = ?1 AND object = ?2 LIMIT 1",
                params![action, object],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
        })
    }
}

/// Case records as stored, for reprocessing and reports.
impl Catalog {
    /// Reads the stored record of a case, as JSON text.
    pub fn case_record(&self, case_id: &str) -> Result<Option<String>, CatalogError> {
        self.with(|c| {
            c.query_row(
                "SELECT record_json FROM cases WHERE case_id = ?1",
                [case_id],
                |row| row.get(0),
            )
            .optional()
        })
    }

    /// Reads every stored case record as JSON text, by case id.
    pub fn case_records(&self) -> Result<Vec<String>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT record_json FROM cases ORDER BY case_id")?;
            let rows = statement.query_map([], |row| row.get(0))?;
            rows.collect()
        })
    }

    /// Paths at which a recording was uploaded.
    pub fn sightings(&self, sha256: &str) -> Result<Vec<String>, CatalogError> {
        self.with(|c| {
            let mut statement =
                c.prepare("SELECT path FROM sightings WHERE sha256 = ?1 ORDER BY seen_at")?;
            let rows = statement.query_map([sha256], |row| row.get(0))?;
            rows.collect()
        })
    }
}

/// A gap as the continuity stage stored it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GapRow {
    pub gap_id: String,
    pub device: String,
    pub start: String,
    pub end: String,
    pub seconds: f64,
    pub kind: String,
    pub sha256: Option<String>,
}

/// One fixity check result.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FixityRow {
    pub tier: String,
    pub copy: String,
    pub key: String,
    pub checked_at: String,
    pub status: String,
    pub expected_sha256: Option<String>,
    pub actual_sha256: Option<String>,
}

/// One Article 13 promotion.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PromotionRow {
    pub sha256: String,
    pub trigger: String,
    pub from_tier: String,
    pub key: String,
    pub actor: String,
    pub promoted_at: String,
}

/// Reads for the compliance report.
impl Catalog {
    pub fn gaps(&self) -> Result<Vec<GapRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT gap_id, device, start, end, seconds, kind, sha256 FROM gaps ORDER BY start",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(GapRow {
                    gap_id: row.get(0)?,
                    device: row.get(1)?,
                    start: row.get(2)?,
                    end: row.get(3)?,
                    seconds: row.get(4)?,
                    kind: row.get(5)?,
                    sha256: row.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn fixity_checks(&self) -> Result<Vec<FixityRow>, CatalogError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT tier, copy, key, checked_at, status, expected_sha256, actual_sha256 FROM fixity_checks ORDER BY checked_at",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(FixityRow {
                    tier: row.get(0)?,
                    copy: row.get(1)?,
                    key: row.get(2)?,
                    checked_at: row.get(3)?,
                    status: row.get(4)?,
                    expected_sha256: row.get(5)?,
                    actual_sha256: row.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn promotions(&self) -> Result<Vec<PromotionRow>, CatalogError> {
        self.with(|c| {
            let mut statement =
                c.prepare("SELECT sha256, trigger, from_tier, key, actor, promoted_at FROM promotions ORDER BY promoted_at")?;
            let rows = statement.query_map([], |row| {
                Ok(PromotionRow {
                    sha256: row.get(0)?,
                    trigger: row.get(1)?,
                    from_tier: row.get(2)?,
                    key: row.get(3)?,
                    actor: row.get(4)?,
                    promoted_at: row.get(5)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// Opening the catalog where the configuration puts it.
impl Catalog {
    /// Opens the PostgreSQL catalog at `url` and creates its tables.
    pub fn open_postgres(url: &str) -> Result<Catalog, CatalogError> {
        let shown = redact_password(url);
        let schema = format!("{}\n{}", super::SCHEMA, SCHEMA);
        let connection =
            super::backend::Conn::connect_postgres(url, &schema).map_err(|source| {
                CatalogError::Sqlite {
                    path: std::path::PathBuf::from(&shown),
                    source,
                }
            })?;
        super::rename_old_columns(&connection).map_err(|source| CatalogError::Sqlite {
            path: std::path::PathBuf::from(&shown),
            source,
        })?;
        Ok(Catalog {
            path: std::path::PathBuf::from(shown),
            connection: std::sync::Mutex::new(connection),
        })
    }

    /// PostgreSQL when a URL is configured, else the SQLite file.
    pub fn open_configured(
        data_dir: &std::path::Path,
        config: &crate::config::CatalogConfig,
    ) -> Result<Catalog, CatalogError> {
        match config.url() {
            Some(url) => Catalog::open_postgres(&url),
            None => Catalog::open(&config.sqlite_path(data_dir)),
        }
    }

    /// Checks whether several machines may share this catalog (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_postgres()
    }
}

/// Replaces the password in a URL, for messages.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
