//! What each kind of job does, and what it queues next.
//!
//! ```text
//! upload ─▶ ingest ─▶ analyze (probe, continuity) ─┬─▶ sessions (per device)
//!                                                  └─▶ case (per case: units, split)
//! case record (*.json) ─▶ case_record ─────────────────▶ case
//! ```
//!
//! `sessions` and `case` jobs are one per device and one per case, queued
//! again whenever new footage arrives. So two workers never rebuild the
//! same sessions or cut the same clips at once, and the last run reads
//! every recording.
//!
//! Every kind is idempotent by content hash: ingest recognizes a stored
//! recording by its SHA-256, findings and sessions replace their rows,
//! and a split with an unchanged plan writes nothing. So a job run again
//! after a crash finishes the work without doubling any artefact.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::case::CaseRecord;
use crate::catalog::{JobRow, RecordingRow};
use crate::i18n::Text;
use crate::ingest::{self, Ingested};
use crate::report::ProcessReport;
use crate::runner::{record_probe, RecordingJob, Runner, Services, StageError};
use crate::store::Tier;
use crate::{naming, probe};

/// Recordings that started this long before a case's first unit may
/// still cover it: a camera chapter runs 30 minutes at most, and a day
/// leaves room for chapters that a station cut longer.
const CASE_LOOKBACK_HOURS: i64 = 24;

/// Purpose of the audit `read` event when a stored original is probed
/// again (by a worker job, reprocessing or a compliance report).
const READ_PURPOSE: &str = "probe";

/// The kinds of job, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ingest,
    Analyze,
    Sessions,
    CaseRecord,
    Case,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ingest => "ingest",
            Kind::Analyze => "analyze",
            Kind::Sessions => "sessions",
            Kind::CaseRecord => "case_record",
            Kind::Case => "case",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        [
            Kind::Ingest,
            Kind::Analyze,
            Kind::Sessions,
            Kind::CaseRecord,
            Kind::Case,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Job arguments besides the subject.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Payload {
    /// The upload (ingest), or the case record file (case).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The recording (analyze, sessions).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The device whose sessions are rebuilt.
    #[serde(default)]
    pub device: Option<String>,
    /// The case whose units are covered and split.
    #[serde(default)]
    pub case_id: Option<String>,
    /// An upload in the incoming bucket (ingest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_key: Option<String>,
}

/// A job to queue once the current one has succeeded.
pub struct FollowUp {
    pub kind: Kind,
    pub subject: String,
    pub payload: Payload,
    /// Run it again even if it ran before: its subject has new footage.
    pub again: bool,
}

/// Runs one job; returns the jobs it leads to.
pub fn run_job(
    services: &Services,
    runner: &Runner,
    job: &JobRow,
) -> Result<Vec<FollowUp>, StageError> {
    let kind = Kind::parse(&job.kind).ok_or_else(|| {
        StageError::permanent(Text::new(
            format!("未知的任务类型 {}", job.kind),
            format!("unknown job kind {}", job.kind),
        ))
    })?;
    let payload: Payload = serde_json::from_str(&job.payload_json).map_err(|e| {
        StageError::permanent(Text::new(
            format!("任务内容无效：{e}"),
            format!("invalid job payload: {e}"),
        ))
    })?;
    match kind {
        Kind::Ingest => run_ingest(services, &payload),
        Kind::Analyze => run_analyze(services, runner, &payload),
        Kind::Sessions => run_sessions(services, runner, &payload),
        Kind::CaseRecord => run_case_record(services, &payload),
        Kind::Case => run_case_job(services, runner, &payload),
    }
}

fn run_ingest(services: &Services, payload: &Payload) -> Result<Vec<FollowUp>, StageError> {
    if let Some(key) = &payload.s3_key {
        return run_incoming_ingest(services, payload, key);
    }
    let path = payload.path.as_deref().ok_or_else(|| missing("path"))?;
    let name = naming::parse_file_name(
        &ingest::file_name_of(path),
        &services.config.name_patterns,
        services.config.timezone(),
    );
    let ingested = ingest::ingest(services, path, name.as_ref(), None).map_err(|e| StageError {
        is_retryable: e.is_retryable(),
        message: Text::new(format!("导入失败：{e}"), format!("ingest failed: {e}")),
    })?;
    tracing::info!(sha256 = %ingested.sha256, new = ingested.is_new, "ingested");
    Ok(vec![FollowUp {
        kind: Kind::Analyze,
        subject: ingested.sha256.clone(),
        payload: Payload {
            path: Some(path.to_path_buf()),
            sha256: Some(ingested.sha256),
            ..Payload::default()
        },
        again: false,
    }])
}

/// Ingests an upload of the incoming bucket from a spooled copy, which is
/// removed afterwards whatever the outcome.
fn run_incoming_ingest(
    services: &Services,
    payload: &Payload,
    key: &str,
) -> Result<Vec<FollowUp>, StageError> {
    let mut config = services.config.store.clone();
    if let Some(bucket) = &payload.s3_bucket {
        config.bucket = Some(bucket.clone());
    }
    let incoming = super::incoming::Incoming::open(&config, "").map_err(StageError::permanent)?;
    let spool = services.data_dir.join("spool");
    std::fs::create_dir_all(&spool).map_err(|e| spool_error(&spool, e))?;
    let dir = tempfile::Builder::new()
        .prefix("incoming-")
        .tempdir_in(&spool)
        .map_err(|e| spool_error(&spool, e))?;
    let path = incoming
        .fetch(key, dir.path())
        .map_err(|message| StageError {
            message,
            is_retryable: true,
        })?;

    let spooled = Payload {
        path: Some(path),
        ..Payload::default()
    };
    let follow_ups = run_ingest(services, &spooled)?;
    if let Some(sha256) = follow_ups.first().and_then(|f| f.payload.sha256.as_deref()) {
        let upload = format!("s3://{}/{key}", incoming.bucket);
        services
            .catalog
            .record_sighting(sha256, &upload, &Utc::now().to_rfc3339())
            .map_err(catalog_error)?;
    }
    Ok(follow_ups)
}

fn spool_error(spool: &Path, error: std::io::Error) -> StageError {
    StageError {
        is_retryable: true,
        message: Text::new(
            format!("无法写入暂存目录 {}：{error}", spool.display()),
            format!("cannot write the spool folder {}: {error}", spool.display()),
        ),
    }
}

fn run_analyze(
    services: &Services,
    runner: &Runner,
    payload: &Payload,
) -> Result<Vec<FollowUp>, StageError> {
    let sha256 = payload.sha256.as_deref().ok_or_else(|| missing("sha256"))?;
    let row = recording(services, sha256)?;
    let mut job = load_job(services, &row, payload.path.as_deref())?;
    if let Some(probe) = &job.probe {
        record_probe(services, sha256, probe);
    }
    for stage in &runner.recording_stages {
        let span = tracing::info_span!("stage", stage = stage.name());
        let _entered = span.enter();
        stage.run(services, &mut job)?;
    }
    let mut follow_ups = Vec::new();
    if let Some(device) = job.probe.as_ref().and_then(|p| p.device.clone()) {
        follow_ups.push(FollowUp {
            kind: Kind::Sessions,
            subject: device.clone(),
            payload: Payload {
                device: Some(device),
                ..Payload::default()
            },
            again: true,
        });
    }
    if let Some(start) = job.probe.as_ref().filter(|p| p.readable).map(|p| p.start) {
        for case in stored_cases(services)? {
            let (from, to) = case_window(&case);
            if start >= from - Duration::hours(CASE_LOOKBACK_HOURS) && start <= to {
                follow_ups.push(case_follow_up(&case.case_id));
            }
        }
    }
    Ok(follow_ups)
}

fn case_follow_up(case_id: &str) -> FollowUp {
    FollowUp {
        kind: Kind::Case,
        subject: case_id.to_string(),
        payload: Payload {
            case_id: Some(case_id.to_string()),
            ..Payload::default()
        },
        again: true,
    }
}

/// Rebuilds the sessions of the device from all its recordings.
fn run_sessions(
    services: &Services,
    runner: &Runner,
    payload: &Payload,
) -> Result<Vec<FollowUp>, StageError> {
    let device = payload.device.as_deref().ok_or_else(|| missing("device"))?;
    let rows: Vec<RecordingRow> = services
        .catalog
        .recordings()
        .map_err(catalog_error)?
        .into_iter()
        .filter(|r| r.readable && r.device.as_deref() == Some(device))
        .collect();
    let mut jobs = Vec::new();
    for row in &rows {
        jobs.push(load_job(services, row, None)?);
    }
    run_batch(services, runner, None, &mut jobs)?;
    Ok(Vec::new())
}

/// Checks and stores a case record dropped into the upload folder.
fn run_case_record(services: &Services, payload: &Payload) -> Result<Vec<FollowUp>, StageError> {
    let path = payload.path.as_deref().ok_or_else(|| missing("path"))?;
    let case = CaseRecord::load(path).map_err(|e| {
        StageError::permanent(Text::new(
            e.message(crate::i18n::Lang::Zh),
            e.message(crate::i18n::Lang::En),
        ))
    })?;
    let json = serde_json::to_string(&case).expect("a case record serializes");
    services
        .catalog
        .upsert_case(&case.case_id, &json, &Utc::now().to_rfc3339())
        .map_err(catalog_error)?;
    Ok(vec![case_follow_up(&case.case_id)])
}

fn run_case_job(
    services: &Services,
    runner: &Runner,
    payload: &Payload,
) -> Result<Vec<FollowUp>, StageError> {
    let case_id = payload
        .case_id
        .as_deref()
        .ok_or_else(|| missing("case_id"))?;
    let case = stored_case(services, case_id)?;
    let mut report = process_case(services, runner, &case)?;
    // A changed case record may have cut new clip versions, and the
    // redacted copies of disclosed clips follow them as in `reprocess`.
    let remade = crate::redact::rerun::remake_for_case(services, case_id).map_err(|e| StageError {
        is_retryable: true,
        message: e.text(),
    })?;
    report.errors.extend(remade.failed.iter().map(|f| f.reason.clone()));
    if !report.errors.is_empty() {
        let zh: Vec<&str> = report.errors.iter().map(|t| t.zh.as_str()).collect();
        let en: Vec<&str> = report.errors.iter().map(|t| t.en.as_str()).collect();
        return Err(StageError::permanent(Text::new(
            zh.join("；"),
            en.join("; "),
        )));
    }
    Ok(Vec::new())
}

/// Covers a case's units and splits its clips from the recordings in the
/// catalog; used by case jobs and by `evidence reprocess`.
pub fn process_case(
    services: &Services,
    runner: &Runner,
    case: &CaseRecord,
) -> Result<ProcessReport, StageError> {
    let mut jobs = case_jobs(services, case)?;
    let report = run_batch(services, runner, Some(case), &mut jobs)?;
    Ok(report)
}

/// Loads and probes the recordings that may cover a case's units.
pub fn case_jobs(services: &Services, case: &CaseRecord) -> Result<Vec<RecordingJob>, StageError> {
    let (from, to) = case_window(case);
    let lookback = from - Duration::hours(CASE_LOOKBACK_HOURS);
    let mut jobs = Vec::new();
    for row in services.catalog.recordings().map_err(catalog_error)? {
        let start = row
            .start
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        if row.readable && start.is_some_and(|s| s >= lookback && s <= to) {
            jobs.push(load_job(services, &row, None)?);
        }
    }
    Ok(jobs)
}

/// Reads the stored record of a case.
pub fn stored_case(services: &Services, case_id: &str) -> Result<CaseRecord, StageError> {
    let json = services
        .catalog
        .case_record(case_id)
        .map_err(catalog_error)?
        .ok_or_else(|| {
            StageError::permanent(Text::new(
                format!("目录库中没有案件 {case_id}：请先用 --case 处理其案件记录"),
                format!("case {case_id} is not in the catalog: process its case record with --case first"),
            ))
        })?;
    let case: CaseRecord = serde_json::from_str(&json).map_err(|e| {
        StageError::permanent(Text::new(
            format!("案件 {case_id} 的记录无效：{e}"),
            format!("the record of case {case_id} is not valid: {e}"),
        ))
    })?;
    Ok(case)
}

fn stored_cases(services: &Services) -> Result<Vec<CaseRecord>, StageError> {
    let records = services.catalog.case_records().map_err(catalog_error)?;
    Ok(records
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect())
}

fn run_batch(
    services: &Services,
    runner: &Runner,
    case: Option<&CaseRecord>,
    jobs: &mut [RecordingJob],
) -> Result<ProcessReport, StageError> {
    let mut report = ProcessReport::new(services);
    for stage in &runner.batch_stages {
        let span = tracing::info_span!("stage", stage = stage.name());
        let _entered = span.enter();
        stage.run(services, case, jobs, &mut report)?;
    }
    Ok(report)
}

pub fn case_window(case: &CaseRecord) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = case.units.iter().map(|u| u.from).min();
    let to = case.units.iter().map(|u| u.to).max();
    match (from, to) {
        (Some(from), Some(to)) => (from.with_timezone(&Utc), to.with_timezone(&Utc)),
        _ => {
            let ended = case.ended_at.with_timezone(&Utc);
            (ended, ended)
        }
    }
}

fn recording(services: &Services, sha256: &str) -> Result<RecordingRow, StageError> {
    services
        .catalog
        .recording(sha256)
        .map_err(catalog_error)?
        .ok_or_else(|| {
            StageError::permanent(Text::new(
                format!("目录库中没有录像 {sha256}"),
                format!("recording {sha256} is not in the catalog"),
            ))
        })
}

/// Probes a stored recording into a job as `process` would have built it.
/// The probe reads the stored original when it is a local file, else the
/// upload if it still has the same number of bytes, else a copy taken
/// from the store and removed afterwards.
pub fn load_job(
    services: &Services,
    row: &RecordingRow,
    upload: Option<&Path>,
) -> Result<RecordingJob, StageError> {
    let tier = Tier::parse(&row.tier).unwrap_or(Tier::Routine);
    let store_error = |e: crate::store::StoreError| StageError {
        is_retryable: e.is_retryable(),
        message: Text::new(
            format!("存储读取失败：{}", e.text().zh),
            format!("store read failed: {e}"),
        ),
    };
    let location = services
        .store
        .head(tier, &row.key)
        .map_err(store_error)?
        .map(|info| info.location);
    let sighted = services
        .catalog
        .sightings(&row.sha256)
        .map_err(catalog_error)?;
    let upload_path = upload
        .map(Path::to_path_buf)
        .or_else(|| sighted.last().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(&row.file_name));

    let local_original = location
        .as_deref()
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let same_upload = Some(upload_path.clone())
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == row.bytes));
    let logged_read = || {
        let read = crate::audit::StoredRead {
            tier,
            key: &row.key,
            sha256: Some(&row.sha256),
            purpose: READ_PURPOSE,
            extra: None,
        };
        crate::audit::read_stored(services, &read).map_err(|e| StageError {
            is_retryable: e.is_retryable(),
            message: e.text(),
        })
    };
    // The upload itself, still there with its size, is not stored footage:
    // only reading the store's copy is logged.
    let (read_from, temporary) = match (local_original, same_upload) {
        (Some(path), _) => {
            logged_read()?;
            (path, None)
        }
        (None, Some(path)) => (path, None),
        (None, None) => {
            let logged = logged_read()?;
            let copy = fetch(services, &logged).map_err(|e| StageError {
                is_retryable: true,
                message: Text::new(
                    format!("无法从存储取回录像 {}：{e}", row.sha256),
                    format!("cannot fetch recording {} from the store: {e}", row.sha256),
                ),
            })?;
            (copy.path().to_path_buf(), Some(copy))
        }
    };

    let name = naming::parse_file_name(
        &row.file_name,
        &services.config.name_patterns,
        services.config.timezone(),
    );
    let ingested_at: DateTime<Utc> = row.ingested_at.parse().unwrap_or_else(|_| Utc::now());
    let probe = probe::probe(&read_from, name.as_ref(), ingested_at);
    drop(temporary);
    Ok(RecordingJob {
        path: upload_path,
        name,
        ingested: Some(Ingested {
            sha256: row.sha256.clone(),
            sm3: row.sm3.clone(),
            bytes: row.bytes,
            tier,
            key: row.key.clone(),
            location: location.unwrap_or_else(|| row.key.clone()),
            is_new: false,
            ingested_at,
        }),
        probe: Some(probe),
        findings: Vec::new(),
    })
}

/// Copies a stored original into the spool folder, for a backend whose
/// objects are not local files.
fn fetch(
    services: &Services,
    logged: &crate::audit::LoggedRead,
) -> std::io::Result<tempfile::NamedTempFile> {
    let spool = services.data_dir.join("spool");
    std::fs::create_dir_all(&spool)?;
    let mut copy = tempfile::Builder::new()
        .prefix("worker-")
        .tempfile_in(&spool)?;
    let mut reader = logged
        .open(services.store.as_ref())
        .map_err(std::io::Error::other)?;
    std::io::copy(&mut reader, copy.as_file_mut())?;
    Ok(copy)
}

fn missing(field: &str) -> StageError {
    StageError::permanent(Text::new(
        format!("任务缺少字段 {field}"),
        format!("the job lacks the field {field}"),
    ))
}

fn catalog_error(e: crate::catalog::CatalogError) -> StageError {
    StageError {
        is_retryable: e.is_retryable(),
        message: Text::new(format!("目录库错误：{e}"), format!("catalog error: {e}")),
    }
}
