//! Continuity: does the footage cover the action without a break?
//!
//! ```text
//! probe.index ─▶ file (per recording: gaps, jumps, drops, A/V offsets)
//!                  │
//!                  ▼
//!              session (chapters per device on the wall clock, boundaries)
//!                  │
//!                  ├─▶ units (coverage of each unit of the case record)
//!                  ├─▶ deadlines (upload and case-file deadlines, delay filings)
//!                  └─▶ timeline (the coverage picture)
//! ```
//!
//! Contract: the input is a probed recording whose `index` holds the
//! container's own timing tables, plus, for the batch, the case record; the
//! output is findings per recording and the `sessions`, `units`,
//! `deadlines`, `justified_gaps` and `unexplained_gaps` sections of the
//! report. `evidence check` runs the same analysis on files without
//! storing anything; `evidence process` runs it as two stages
//! ([`ContinuityStage`] per file, [`SessionStage`] per batch) and stores
//! findings, sessions and gaps in the catalog. Gaps carry an id
//! (`DEVICE@LOCAL-START`) by which `evidence justify` attaches an Article 6
//! justification.

pub mod cli;
pub mod deadlines;
pub mod decode;
pub mod file;
pub mod justify;
pub mod render;
pub mod session;
pub mod units;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::case::CaseRecord;
use crate::catalog::DelayFilingRow;
use crate::config::Config;
use crate::finding::Finding;
use crate::i18n::Text;
use crate::probe::{Probe, StartSource};
use crate::report::ProcessReport;
use crate::runner::{BatchStage, RecordingJob, RecordingStage, Services, StageError};
use crate::store::Tier;

use deadlines::Deadlines;
use file::{FileTiming, TrackTiming};
use justify::Justification;
use session::{Chapter, Session, WallGap};
use units::UnitCoverage;

/// Catalog stage name of the per-recording findings.
pub const STAGE: &str = "continuity";

/// Catalog stage name of late-upload findings, which need the whole batch.
pub const DEADLINE_STAGE: &str = "deadlines";

#[derive(Debug, thiserror::Error)]
pub enum ContinuityError {
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("timeline of {subject}: {message}")]
    Timeline { subject: String, message: String },
}

/// What a recording contributes to the batch analysis.
#[derive(Clone, Debug)]
pub struct RecordingFacts {
    pub path: String,
    pub file_name: String,
    pub sha256: Option<String>,
    pub device: Option<String>,
    pub sequence: Option<u32>,
    pub start: DateTime<Utc>,
    pub start_source: StartSource,
    pub uploaded_at: DateTime<Utc>,
    pub timing: FileTiming,
}

/// The batch-wide results: the report sections of this stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ContinuityReport {
    pub sessions: Vec<Session>,
    /// Files that could not be placed on the wall clock: their start is
    /// only the upload time, or they hold no footage.
    pub unplaced: Vec<String>,
    pub units: Vec<UnitCoverage>,
    pub deadlines: Deadlines,
    /// Every stretch without footage (inside files and between chapters),
    /// kept apart by whether an Article 6 justification was recorded.
    pub justified_gaps: Vec<WallGap>,
    pub unexplained_gaps: Vec<WallGap>,
}

/// Analyzes a probed recording's timing and places the probe's own
/// findings (truncation, unfinished recording) on the timeline.
pub fn analyze_recording(probe: &mut Probe) -> FileTiming {
    let Some(index) = &probe.index else {
        return FileTiming::default();
    };
    let mut timing = file::analyze(index);
    let is_placed = probe.start_source != StartSource::UploadTime;

    for finding in &mut probe.findings {
        if finding.at.is_some() {
            continue;
        }
        let end = match (finding.kind.as_str(), finding.track) {
            ("truncated", Some(track)) => timing
                .tracks
                .iter()
                .find(|t| t.index == track)
                .and_then(|t| t.end),
            ("not_finalized", _) => timing.media_end,
            _ => None,
        };
        if let Some(end) = end {
            finding.at = Some(end);
            if let serde_json::Value::Object(detail) = &mut finding.detail {
                detail.insert("real_end".into(), end.into());
            } else {
                finding.detail = serde_json::json!({ "real_end": end });
            }
        }
    }

    for finding in probe.findings.iter_mut().chain(timing.findings.iter_mut()) {
        if let (Some(at), true) = (finding.at, is_placed) {
            finding.wall_clock = Some(probe.start + session::seconds(at));
        }
    }
    timing
}

/// Builds sessions, unit coverage and deadlines for a batch of recordings.
pub fn analyze_batch(
    config: &Config,
    case: Option<&CaseRecord>,
    recordings: &[RecordingFacts],
    justifications: &HashMap<String, Justification>,
    filings: &[DelayFilingRow],
) -> ContinuityReport {
    let timezone = config.timezone();
    let mut chapters = Vec::new();
    let mut unplaced = Vec::new();
    for recording in recordings {
        let chapter = Chapter::place(
            &recording.path,
            &recording.file_name,
            recording.sha256.clone(),
            recording.device.as_deref(),
            recording.sequence,
            recording.start,
            recording.start_source,
            (recording.timing.media_start, recording.timing.media_end),
            &recording.timing.holes,
            recording.uploaded_at,
            timezone,
        );
        match chapter {
            Some(chapter) => chapters.push(chapter),
            None => unplaced.push(recording.path.clone()),
        }
    }

    let mut sessions = session::build_sessions(chapters, timezone);
    for session in &mut sessions {
        for boundary in &mut session.boundaries {
            boundary.justification = boundary
                .gap_id
                .as_ref()
                .and_then(|id| justifications.get(id))
                .cloned();
        }
        for chapter in &mut session.chapters {
            for hole in &mut chapter.holes {
                hole.justification = justifications.get(&hole.gap_id).cloned();
            }
        }
    }

    let units = case
        .map(|case| units::cover_units(case, &sessions, justifications, timezone))
        .unwrap_or_default();

    let uploads: Vec<deadlines::Upload<'_>> = recordings
        .iter()
        .map(|r| deadlines::Upload {
            path: &r.path,
            file_name: &r.file_name,
            sha256: r.sha256.as_deref(),
            recorded_at: r.start,
            is_start_known: r.start_source != StartSource::UploadTime,
            uploaded_at: r.uploaded_at,
        })
        .collect();
    let deadlines = deadlines::compute(config, &uploads, case, filings);

    let (justified_gaps, unexplained_gaps) = sessions
        .iter()
        .flat_map(Session::gaps)
        .partition(|g| g.justification.is_some());
    ContinuityReport {
        sessions,
        unplaced,
        units,
        deadlines,
        justified_gaps,
        unexplained_gaps,
    }
}

/// One file of `evidence check`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckedFile {
    pub path: String,
    pub container: Option<String>,
    pub readable: bool,
    pub reason: Option<Text>,
    pub start: DateTime<Utc>,
    pub start_source: StartSource,
    pub device: Option<String>,
    pub officer: Option<String>,
    pub tracks: Vec<TrackTiming>,
    pub findings: Vec<Finding>,
}

/// The result of `evidence check`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub files: Vec<CheckedFile>,
    #[serde(flatten)]
    pub continuity: ContinuityReport,
    /// Where the timeline picture was written.
    pub timeline: Option<String>,
    pub errors: Vec<Text>,
}

/// Options of `evidence check`.
pub struct CheckOptions<'a> {
    pub config: &'a Config,
    pub case: Option<&'a CaseRecord>,
    pub decode: bool,
    pub timeline: Option<&'a Path>,
    /// The catalog's justifications and delay filings, when a catalog exists.
    pub justifications: HashMap<String, Justification>,
    pub filings: Vec<DelayFilingRow>,
}

/// Checks files without storing anything: probe, timing, sessions, units,
/// deadlines (as if uploaded now), optionally a full decode and a picture.
pub fn check(paths: &[PathBuf], options: &CheckOptions<'_>) -> CheckReport {
    let now = Utc::now();
    let timezone = options.config.timezone();
    let mut files = Vec::new();
    let mut facts = Vec::new();
    let mut errors = Vec::new();

    for input in crate::runner::collect_inputs(paths) {
        let path = match input {
            crate::runner::Input::File(path) if crate::runner::is_case_record(&path) => continue,
            crate::runner::Input::File(path) => path,
            crate::runner::Input::Skipped { path, reason } | crate::runner::Input::Unreadable { path, reason } => {
                errors.push(Text::new(
                    format!("{}：{}", path.display(), reason.zh),
                    format!("{}: {}", path.display(), reason.en),
                ));
                continue;
            }
        };
        let file_name = crate::ingest::file_name_of(&path);
        let name =
            crate::naming::parse_file_name(&file_name, &options.config.name_patterns, timezone);
        let mut probe = crate::probe::probe(&path, name.as_ref(), now);
        let timing = analyze_recording(&mut probe);
        debug!(file = %path.display(), findings = timing.findings.len(), "checked");

        let mut findings: Vec<Finding> = probe
            .findings
            .iter()
            .filter(|f| f.kind != "unreadable")
            .cloned()
            .collect();
        findings.extend(timing.findings.iter().cloned());
        if options.decode && probe.readable {
            findings.extend(decode::check_decode(&path));
        }
        let tracks = if timing.tracks.is_empty() {
            probe.tracks.iter().map(track_from_summary).collect()
        } else {
            timing.tracks.clone()
        };
        files.push(CheckedFile {
            path: path.display().to_string(),
            container: probe.container.clone(),
            readable: probe.readable,
            reason: probe.reason.clone(),
            start: probe.start,
            start_source: probe.start_source,
            device: probe.device.clone(),
            officer: probe.officer.clone(),
            tracks,
            findings,
        });
        if probe.readable {
            facts.push(RecordingFacts {
                path: path.display().to_string(),
                file_name,
                sha256: None,
                device: probe.device.clone(),
                sequence: name.as_ref().and_then(|n| n.sequence.or(n.chapter)),
                start: probe.start,
                start_source: probe.start_source,
                uploaded_at: now,
                timing,
            });
        }
    }

    let continuity = analyze_batch(
        options.config,
        options.case,
        &facts,
        &options.justifications,
        &options.filings,
    );
    let mut timeline = None;
    if let Some(out) = options.timeline {
        let picture = crate::timeline::render(&continuity, options.case, timezone);
        let written = picture
            .map_err(WriteNewError::Other)
            .and_then(|png| write_new_file(out, &png));
        match written {
            Ok(()) => timeline = Some(out.display().to_string()),
            Err(WriteNewError::Exists) => errors.push(Text::new(
                format!(
                    "时间轴图 {} 已存在，请换一个文件名（不会覆盖任何文件）",
                    out.display()
                ),
                format!(
                    "the timeline picture {} already exists; choose another name (nothing is overwritten)",
                    out.display()
                ),
            )),
            Err(WriteNewError::Other(message)) => errors.push(Text::new(
                format!("无法写入时间轴图 {}：{message}", out.display()),
                format!(
                    "cannot write the timeline picture {}: {message}",
                    out.display()
                ),
            )),
        }
    }
    CheckReport {
        files,
        continuity,
        timeline,
        errors,
    }
}

/// A track of a container without an index reader, from the probe.
fn track_from_summary(summary: &crate::probe::TrackSummary) -> TrackTiming {
    TrackTiming {
        index: summary.index,
        kind: summary.kind.clone(),
        codec: summary.codec.clone(),
        start: summary.start,
        end: summary.end,
        frames: summary.frames.unwrap_or(0),
        nominal_step: None,
        checked: false,
        missing: 0.0,
    }
}

/// The per-recording stage of `evidence process`: timing findings,
/// stored in the catalog.
pub struct ContinuityStage;

impl RecordingStage for ContinuityStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn run(&self, services: &Services, job: &mut RecordingJob) -> Result<(), StageError> {
        let Some(probe) = job.probe.as_mut() else {
            return Ok(());
        };
        let timing = analyze_recording(probe);
        job.findings.retain(|f| !is_continuity_kind(&f.kind));
        job.findings.extend(timing.findings.iter().cloned());
        info!(findings = timing.findings.len(), "timing checked");

        if let Some(ingested) = &job.ingested {
            let rows: Vec<_> = timing.findings.iter().map(|f| f.to_row(STAGE)).collect();
            services
                .catalog
                .replace_findings(&ingested.sha256, STAGE, &rows)
                .map_err(|e| StageError {
                    is_retryable: e.is_retryable(),
                    message: Text::new(
                        format!("连续性检查结果未能存入目录库：{e}"),
                        format!("continuity findings not stored in the catalog: {e}"),
                    ),
                })?;
        }
        Ok(())
    }
}

fn is_continuity_kind(kind: &str) -> bool {
    matches!(
        kind,
        "gap" | "backward_jump" | "timestamp_reset" | "dropped_frames" | "av_mismatch"
    )
}

/// The batch stage of `evidence process`: sessions, unit coverage,
/// deadlines and the timeline picture, stored and added to the report.
pub struct SessionStage;

impl BatchStage for SessionStage {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn run(
        &self,
        services: &Services,
        case: Option<&CaseRecord>,
        jobs: &mut [RecordingJob],
        report: &mut ProcessReport,
    ) -> Result<(), StageError> {
        let catalog_error = |e: crate::catalog::CatalogError| StageError {
            is_retryable: e.is_retryable(),
            message: Text::new(format!("目录库错误：{e}"), format!("catalog error: {e}")),
        };
        let justifications =
            justify::latest_justifications(&services.catalog).map_err(catalog_error)?;
        let filings = services.catalog.delay_filings().map_err(catalog_error)?;

        let facts: Vec<RecordingFacts> = jobs.iter_mut().filter_map(facts_of_job).collect();
        let continuity = analyze_batch(&services.config, case, &facts, &justifications, &filings);
        store_batch(services, &continuity).map_err(catalog_error)?;
        flag_late_uploads(services, &continuity.deadlines, report);

        let timezone = services.config.timezone();
        let mut timeline = None;
        match store_timeline(services, &continuity, case, timezone) {
            Ok(Some(location)) => {
                report.sections.insert("timeline".into(), location.clone().into());
                timeline = Some(location);
            }
            Ok(None) => {}
            Err(error) => {
                warn!(%error, "timeline picture not stored");
                report.errors.push(Text::new(
                    format!("时间轴图未能保存：{error}"),
                    format!("timeline picture not stored: {error}"),
                ));
            }
        }

        // The readable form in both languages, for the text report of
        // `process`, which renders sections it does not know as given.
        let mut text = Text::new(
            render::render_sections(&continuity, crate::i18n::Lang::Zh, timezone),
            render::render_sections(&continuity, crate::i18n::Lang::En, timezone),
        );
        if let Some(location) = &timeline {
            text.zh.push_str(&format!("时间轴图: {location}\n"));
            text.en.push_str(&format!("timeline picture: {location}\n"));
        }
        report.sections.insert(
            "continuity_text".into(),
            serde_json::to_value(text).expect("a text serializes"),
        );

        let value = serde_json::to_value(&continuity).expect("the continuity report serializes");
        if let serde_json::Value::Object(sections) = value {
            report.sections.extend(sections);
        }
        Ok(())
    }
}

fn facts_of_job(job: &mut RecordingJob) -> Option<RecordingFacts> {
    let ingested = job.ingested.as_ref()?;
    let probe = job.probe.as_mut()?;
    if !probe.readable {
        return None;
    }
    let name = job.name.as_ref();
    Some(RecordingFacts {
        path: job.path.display().to_string(),
        file_name: crate::ingest::file_name_of(&job.path),
        sha256: Some(ingested.sha256.clone()),
        device: probe.device.clone(),
        sequence: name.and_then(|n| n.sequence.or(n.chapter)),
        start: probe.start,
        start_source: probe.start_source,
        uploaded_at: ingested.ingested_at,
        timing: analyze_recording(probe),
    })
}

/// Stores sessions and gaps so that gaps can be justified by id.
fn store_batch(
    services: &Services,
    continuity: &ContinuityReport,
) -> Result<(), crate::catalog::CatalogError> {
    let now = Utc::now().to_rfc3339();
    for session in &continuity.sessions {
        let json = serde_json::to_string(session).expect("a session serializes");
        services.catalog.upsert_session(
            &session.session_id,
            &session.device,
            &session.start.to_rfc3339(),
            &session.end.to_rfc3339(),
            &json,
            &now,
        )?;
        for gap in session.gaps() {
            services.catalog.upsert_gap(
                &gap.gap_id,
                &gap.device,
                &gap.from.to_rfc3339(),
                &gap.to.to_rfc3339(),
                gap.duration,
                &gap.kind,
                gap.sha256.as_deref(),
                &now,
            )?;
        }
    }
    for unit in &continuity.units {
        for gap in unit.gaps.iter().filter(|g| g.kind != "gap") {
            // Missing heads and tails are gaps of their own that only unit
            // coverage finds; they are stored so that they can be justified.
            services.catalog.upsert_gap(
                &gap.gap_id,
                unit.device.as_deref().unwrap_or("-"),
                &gap.from.to_rfc3339(),
                &gap.to.to_rfc3339(),
                gap.duration,
                &gap.kind,
                None,
                &now,
            )?;
        }
    }
    Ok(())
}

/// Adds a `late_upload` finding to each late recording without a delay
/// filing, in the report and the catalog.
fn flag_late_uploads(services: &Services, deadlines: &Deadlines, report: &mut ProcessReport) {
    for deadline in &deadlines.recordings {
        let mut findings = Vec::new();
        if deadline.late {
            let filed = deadline.delay_filing.is_some();
            let (zh_note, en_note) = if filed {
                ("，已登记延迟说明", "; a delay filing is recorded")
            } else {
                ("，未登记延迟说明", "; no delay filing is recorded")
            };
            findings.push(
                Finding::new(
                    "late_upload",
                    Text::new(
                        format!(
                            "{} 录制，应在 {} 前导入，实际 {} 导入{zh_note}",
                            deadline.recorded_on, deadline.upload_deadline, deadline.uploaded_on
                        ),
                        format!(
                            "recorded on {}, due by the end of {}, uploaded on {}{en_note}",
                            deadline.recorded_on, deadline.upload_deadline, deadline.uploaded_on
                        ),
                    ),
                )
                .with_detail(serde_json::json!({
                    "recorded_on": deadline.recorded_on,
                    "upload_deadline": deadline.upload_deadline,
                    "uploaded_on": deadline.uploaded_on,
                    "delay_filed": filed,
                })),
            );
        }
        if let Some(file) = report.files.iter_mut().find(|f| f.path == deadline.path) {
            file.findings.retain(|f| f.kind != "late_upload");
            file.findings.extend(findings.iter().cloned());
        }
        if let Some(sha256) = &deadline.sha256 {
            let rows: Vec<_> = findings.iter().map(|f| f.to_row(DEADLINE_STAGE)).collect();
            if let Err(error) = services
                .catalog
                .replace_findings(sha256, DEADLINE_STAGE, &rows)
            {
                warn!(%sha256, %error, "late-upload finding not stored in the catalog");
            }
        }
    }
}

/// Renders the timeline picture and stores it in the routine tier under a
/// key named by its content, so that a rerun never overwrites one.
fn store_timeline(
    services: &Services,
    continuity: &ContinuityReport,
    case: Option<&CaseRecord>,
    timezone: chrono_tz::Tz,
) -> Result<Option<String>, ContinuityError> {
    if continuity.sessions.is_empty() {
        return Ok(None);
    }
    let subject = case
        .map(|c| c.case_id.clone())
        .unwrap_or_else(|| continuity.sessions[0].session_id.clone());
    let png = crate::timeline::render(continuity, case, timezone).map_err(|message| {
        ContinuityError::Timeline {
            subject: subject.clone(),
            message,
        }
    })?;
    let digest = crate::ingest::sha256_hex(&png);
    let first = continuity
        .sessions
        .iter()
        .map(|s| s.start)
        .min()
        .unwrap_or_else(Utc::now);
    let key = format!(
        "reports/{}/{}/timeline-{}.png",
        first.with_timezone(&timezone).format("%Y/%m/%d"),
        crate::store::key_segment(&subject),
        &digest[..16]
    );
    let stored = services
        .store
        .put_small(Tier::Routine, &key, &png)
        .and_then(|info| {
            crate::store::Manifest::for_report(
                Tier::Routine,
                &key,
                &png,
                &format!("coverage timeline {subject}"),
                &services.actor,
            )
            .store(services.store.as_ref())?;
            Ok(info)
        })
        .map_err(|e| ContinuityError::Timeline {
            subject,
            message: e.to_string(),
        })?;
    info!(key = %stored.key, "timeline picture stored");
    Ok(Some(stored.location))
}

/// Failure to write a file that must be new.
enum WriteNewError {
    Exists,
    Other(String),
}

/// Writes `bytes` to a file that must not exist yet, so that a picture
/// never replaces a recording or any other file given by mistake.
fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), WriteNewError> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => WriteNewError::Exists,
            _ => WriteNewError::Other(e.to_string()),
        })?;
    file.write_all(bytes)
        .map_err(|e| WriteNewError::Other(e.to_string()))
}
