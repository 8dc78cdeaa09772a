//! `evidence status`: what the catalog holds and what the workers do.
//!
//! One view for the station's operator: every recording with its SHA-256,
//! its findings and its upload deadline (Article 11), every job with its
//! state and, for a failed one, the reason, and the case-file deadline of
//! every case (Article 10).

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::case::CaseRecord;
use crate::catalog::{CatalogError, RecordingRow};
use crate::continuity::deadlines::{self, Upload, UploadDeadline};
use crate::i18n::{Lang, Text};
use crate::runner::Services;

#[derive(Clone, Debug, Serialize)]
pub struct RecordingStatus {
    pub sha256: String,
    pub file_name: String,
    pub device: Option<String>,
    pub officer: Option<String>,
    pub start: Option<String>,
    pub ingested_at: String,
    pub tier: String,
    pub key: String,
    pub bytes: u64,
    pub readable: bool,
    pub findings: Vec<serde_json::Value>,
    pub upload_deadline: Option<NaiveDate>,
    pub late: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub job_id: i64,
    pub kind: String,
    pub subject: String,
    pub status: String,
    pub attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub next_attempt: Option<DateTime<Utc>>,
    pub error: Option<Text>,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseDeadline {
    pub case_id: String,
    pub action_ended_on: NaiveDate,
    pub case_file_deadline: NaiveDate,
}

#[derive(Clone, Debug, Serialize)]
pub struct Deadlines {
    pub recordings: Vec<UploadDeadline>,
    pub cases: Vec<CaseDeadline>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct JobCounts {
    pub queued: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub recordings: Vec<RecordingStatus>,
    pub jobs: Vec<JobStatus>,
    pub job_counts: JobCounts,
    pub findings: usize,
    pub deadlines: Deadlines,
}

/// Builds the status from the catalog.
pub fn status(services: &Services) -> Result<StatusReport, CatalogError> {
    let rows = services.catalog.recordings()?;
    let upload_deadlines = upload_deadlines(services, &rows)?;

    let mut recordings = Vec::new();
    for row in &rows {
        let findings: Vec<serde_json::Value> = services
            .catalog
            .findings(&row.sha256)?
            .iter()
            .map(|f| serde_json::from_str(&f.detail_json).unwrap_or(serde_json::Value::Null))
            .collect();
        let deadline = upload_deadlines
            .iter()
            .find(|d| d.sha256.as_deref() == Some(row.sha256.as_str()));
        recordings.push(RecordingStatus {
            sha256: row.sha256.clone(),
            file_name: row.file_name.clone(),
            device: row.device.clone(),
            officer: row.officer.clone(),
            start: row.start.clone(),
            ingested_at: row.ingested_at.clone(),
            tier: row.tier.clone(),
            key: row.key.clone(),
            bytes: row.bytes,
            readable: row.readable,
            findings,
            upload_deadline: deadline.map(|d| d.upload_deadline),
            late: deadline.is_some_and(|d| d.late),
        });
    }

    let mut counts = JobCounts::default();
    let jobs: Vec<JobStatus> = services
        .catalog
        .jobs()?
        .into_iter()
        .map(|job| {
            match job.status.as_str() {
                "queued" => counts.queued += 1,
                "running" => counts.running += 1,
                "done" => counts.done += 1,
                _ => counts.failed += 1,
            }
            JobStatus {
                next_attempt: (job.status == "queued")
                    .then(|| from_ms(job.not_before_ms))
                    .flatten(),
                error: job.last_error.as_deref().map(text_of_error),
                lease_until: job.lease_until_ms.and_then(from_ms),
                job_id: job.job_id,
                kind: job.kind,
                subject: job.subject,
                status: job.status,
                attempts: job.attempts,
                lease_owner: job.lease_owner,
                updated_at: job.updated_at,
            }
        })
        .collect();

    let cases = services
        .catalog
        .case_records()?
        .iter()
        .filter_map(|json| serde_json::from_str::<CaseRecord>(json).ok())
        .map(|case| {
            let computed = deadlines::compute(&services.config, &[], Some(&case), &[]);
            let deadline = computed
                .case_file
                .expect("a case gives a case-file deadline");
            CaseDeadline {
                case_id: deadline.case_id,
                action_ended_on: deadline.action_ended_on,
                case_file_deadline: deadline.case_file_deadline,
            }
        })
        .collect();

    Ok(StatusReport {
        findings: recordings.iter().map(|r| r.findings.len()).sum(),
        recordings,
        jobs,
        job_counts: counts,
        deadlines: Deadlines {
            recordings: upload_deadlines,
            cases,
        },
    })
}

/// Upload deadlines of catalog recordings on the configured calendar.
pub fn upload_deadlines(
    services: &Services,
    rows: &[RecordingRow],
) -> Result<Vec<UploadDeadline>, CatalogError> {
    let filings = services.catalog.delay_filings()?;
    let parsed: Vec<(DateTime<Utc>, bool, DateTime<Utc>)> = rows
        .iter()
        .map(|row| {
            let uploaded: DateTime<Utc> = row.ingested_at.parse().unwrap_or_else(|_| Utc::now());
            let start = row
                .start
                .as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc));
            let is_known = start.is_some() && row.start_source.as_deref() != Some("upload_time");
            (start.unwrap_or(uploaded), is_known, uploaded)
        })
        .collect();
    let uploads: Vec<Upload<'_>> = rows
        .iter()
        .zip(&parsed)
        .map(|(row, (recorded_at, is_start_known, uploaded_at))| Upload {
            path: &row.key,
            file_name: &row.file_name,
            sha256: Some(&row.sha256),
            recorded_at: *recorded_at,
            is_start_known: *is_start_known,
            uploaded_at: *uploaded_at,
        })
        .collect();
    Ok(deadlines::compute(&services.config, &uploads, None, &filings).recordings)
}

/// A stored job error (`{"zh": …, "en": …}`) back as a text.
fn text_of_error(json: &str) -> Text {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let part = |lang: &str| value[lang].as_str().unwrap_or(json).to_string();
    Text::new(part("zh"), part("en"))
}

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

impl StatusReport {
    pub fn render_text(&self, lang: Lang) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} ({})",
            lang.pick("录像", "recordings"),
            self.recordings.len()
        );
        for r in &self.recordings {
            let late = if r.late {
                lang.pick("  逾期上传", "  late upload")
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {}  {}  {}  {} {}  {} {}{late}",
                r.sha256,
                r.file_name,
                r.device.as_deref().unwrap_or("-"),
                lang.pick("发现", "findings"),
                r.findings.len(),
                lang.pick("上传期限", "upload by"),
                r.upload_deadline
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
        }
        let c = &self.job_counts;
        let _ = writeln!(
            out,
            "{} ({}): {} {}, {} {}, {} {}, {} {}",
            lang.pick("任务", "jobs"),
            self.jobs.len(),
            lang.pick("排队", "queued"),
            c.queued,
            lang.pick("运行中", "running"),
            c.running,
            lang.pick("完成", "done"),
            c.done,
            lang.pick("失败", "failed"),
            c.failed
        );
        for job in self.jobs.iter().filter(|j| j.status != "done") {
            let _ = writeln!(
                out,
                "  #{} {} {} [{}] {}: {}",
                job.job_id,
                job.kind,
                job.subject,
                job.status,
                lang.pick("尝试次数", "attempts"),
                job.attempts
            );
            if let Some(error) = &job.error {
                let _ = writeln!(out, "    {}", error.get(lang));
            }
        }
        if !self.deadlines.cases.is_empty() {
            let _ = writeln!(out, "{}", lang.pick("案卷期限", "case-file deadlines"));
            for case in &self.deadlines.cases {
                let _ = writeln!(out, "  {}  {}", case.case_id, case.case_file_deadline);
            }
        }
        out
    }
}
