//! Split: for each inspected unit and each device, one clip that holds
//! that unit's footage and nothing of another unit's.
//!
//! Contract: given a case record and the recordings in the catalog,
//! [`split_case`] plans per unit and device which stretches of which chapter
//! files cover the unit's range ([`plan`]), cuts them into one MP4
//! ([`cut`], lossless by default; [`reencode`] when asked), stores the clip
//! in the evidence tier under a new version key with its provenance
//! manifest, and registers it in the catalog ([`output`]). A rerun with the
//! same case record writes nothing; a changed record adds versions and keeps
//! the old ones.
//!
//! ```text
//! catalog ─▶ recordings ─▶ plan (unit × device) ─▶ cut ─▶ [re-encode] ─▶ store + manifest + catalog
//! ```
//!
//! Ids from the case record and device names from file names are data: ids
//! pass `case::check_id`, devices pass `store::key_segment`, and every key
//! passes `store::check_key` before anything is written.

pub mod cli;
pub mod cut;
pub mod output;
pub mod plan;
pub mod reencode;
mod sources;

use chrono::{DateTime, FixedOffset, Utc};
use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

use crate::case::{check_id, CaseRecord};
use crate::catalog::CatalogError;
use crate::i18n::{Lang, Text};
use crate::media::mp4_writer::Mp4WriteError;
use crate::report::ProcessReport;
use crate::runner::{BatchStage, RecordingJob, Services, StageError};
use crate::store::StoreError;

pub use output::ClipReport;
pub use plan::{ClipPlan, Gap, GapKind, Recording, Segment};

/// Options for making clips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplitOptions {
    /// Re-encode where a boundary falls inside a GOP, so that the clip
    /// starts and ends on exactly the unit's frames with nothing hidden.
    pub reencode: bool,
}

/// Method of making a clip, as manifests and reports name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The camera's encoded frames copied unchanged; an edit list presents
    /// exactly the unit's range and hides the preroll.
    LosslessEditList,
    /// Frames copied unchanged except the partial GOPs at the boundaries,
    /// which were re-encoded.
    ReencodePartialGop,
    /// The whole video track was re-encoded (the stream did not allow
    /// splicing re-encoded frames into the original ones); other tracks
    /// are copied.
    ReencodeWhole,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::LosslessEditList => "lossless_edit_list",
            Method::ReencodePartialGop => "reencode_partial_gop",
            Method::ReencodeWhole => "reencode_whole",
        }
    }
}

#[derive(Debug, Error)]
pub enum SplitError {
    #[error("recording {file_name} is not MP4/QuickTime, so its samples cannot be copied into an MP4 clip")]
    UnsupportedContainer { file_name: String },
    #[error("cannot read recording {file_name}: {reason}")]
    Source { file_name: String, reason: String },
    #[error("cannot write clip {key}: {source}")]
    Write { key: String, source: Mp4WriteError },
    #[error("cannot store clip {key}: {source}")]
    Store { key: String, source: StoreError },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("re-encoding failed for unit {unit_id}: {}", reason.en)]
    Reencode { unit_id: String, reason: Text },
    #[error("invalid id in field {field}: {message}")]
    InvalidId { field: String, message: Text },
}

impl SplitError {
    /// Returns whether trying again could help: storage and catalog hiccups can
    /// clear; a broken recording or an invalid id cannot.
    pub fn is_retryable(&self) -> bool {
        match self {
            SplitError::Store { source, .. } => source.is_retryable(),
            SplitError::Catalog(e) => e.is_retryable(),
            SplitError::Write {
                source: Mp4WriteError::Write(_),
                ..
            } => true,
            _ => false,
        }
    }

    /// Returns the error in both languages, for reports.
    pub fn text(&self) -> Text {
        let zh = match self {
            SplitError::UnsupportedContainer { file_name } => {
                format!("录像 {file_name} 不是 MP4/QuickTime 格式，无法无损复制到 MP4 片段中")
            }
            SplitError::Source { file_name, reason } => {
                format!("无法读取录像 {file_name}：{reason}")
            }
            SplitError::Write { key, source } => format!("无法写出片段 {key}：{source}"),
            SplitError::Store { key, source } => format!("无法保存片段 {key}：{}", source.text().zh),
            SplitError::Catalog(e) => format!("目录数据库出错：{e}"),
            SplitError::Reencode { unit_id, reason } => {
                format!("检查单位 {unit_id} 重新编码失败：{}", reason.zh)
            }
            SplitError::InvalidId { field, message } => {
                format!("字段 {field} 的编号无效：{}", message.zh)
            }
        };
        let en = match self {
            SplitError::InvalidId { field, message } => {
                format!("invalid id in field {field}: {}", message.en)
            }
            other => other.to_string(),
        };
        Text::new(zh, en)
    }
}

/// A unit (and device) for which no clip could be made, with the reason.
#[derive(Clone, Debug, Serialize)]
pub struct MissingClip {
    pub unit_id: String,
    pub device: Option<String>,
    pub reason: Text,
}

/// Everything one split run produced.
#[derive(Clone, Debug, Serialize)]
pub struct SplitOutcome {
    pub case_id: String,
    pub clips: Vec<ClipReport>,
    /// Units without a clip: no footage, or a clip that failed.
    pub missing: Vec<MissingClip>,
    pub errors: Vec<Text>,
}

/// Splits the footage of a case: one clip per unit and device.
pub fn split_case(services: &Services, case: &CaseRecord, options: SplitOptions) -> SplitOutcome {
    let mut outcome = SplitOutcome {
        case_id: case.case_id.clone(),
        clips: Vec::new(),
        missing: Vec::new(),
        errors: Vec::new(),
    };
    if let Err(error) = check_case_ids(case) {
        outcome.errors.push(error.text());
        return outcome;
    }

    let window = case_window(case);
    let started = std::time::Instant::now();
    let loaded = sources::load_recordings(services, case, window);
    tracing::debug!(
        recordings = loaded.recordings.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "recordings loaded with their index"
    );
    outcome.errors.extend(loaded.notes);
    let devices = sources::by_device(loaded.recordings);

    // Plan every unit and device first, then cut the clips side by side:
    // they are independent, and hashing one while another waits on the
    // disk keeps both cores busy.
    let mut jobs = Vec::new();
    for unit in &case.units {
        let wanted: Vec<&String> = if unit.devices.is_empty() {
            devices.keys().collect()
        } else {
            unit.devices.iter().collect()
        };
        let mut planned = 0;
        for device in wanted {
            let Some(recordings) = devices.get(device) else {
                continue;
            };
            if let Some(plan) =
                plan::plan_unit(&unit.unit_id, device, unit.from, unit.to, recordings)
            {
                planned += 1;
                jobs.push((unit, plan, recordings));
            }
        }
        if planned == 0 {
            outcome.missing.push(MissingClip {
                unit_id: unit.unit_id.clone(),
                device: None,
                reason: Text::new(
                    "没有任何已导入的录像覆盖该检查单位的时间范围",
                    "no ingested recording covers the unit's time range",
                ),
            });
        }
    }

    let results: Vec<_> = jobs
        .par_iter()
        .map(|(unit, plan, recordings)| {
            let span = tracing::info_span!("clip", unit = %unit.unit_id, device = %plan.device);
            let _entered = span.enter();
            output::make_clip(services, case, unit, plan, recordings, options)
        })
        .collect();
    for ((unit, plan, _), result) in jobs.iter().zip(results) {
        match result {
            Ok(clip) => outcome.clips.push(clip),
            Err(error) => {
                tracing::warn!(unit = %unit.unit_id, device = %plan.device, %error, "clip not made");
                outcome.missing.push(MissingClip {
                    unit_id: unit.unit_id.clone(),
                    device: Some(plan.device.clone()),
                    reason: error.text(),
                });
                outcome.errors.push(error.text());
            }
        }
    }
    outcome
}

/// Checks again the ids that become key segments: a record built in code
/// has not passed `CaseRecord::load`.
fn check_case_ids(case: &CaseRecord) -> Result<(), SplitError> {
    let invalid = |field: String| move |message| SplitError::InvalidId { field, message };
    check_id(&case.case_id).map_err(invalid("case_id".into()))?;
    for (i, unit) in case.units.iter().enumerate() {
        check_id(&unit.unit_id).map_err(invalid(format!("units[{i}].unit_id")))?;
        for (j, device) in unit.devices.iter().enumerate() {
            check_id(device).map_err(invalid(format!("units[{i}].devices[{j}]")))?;
        }
    }
    Ok(())
}

/// Returns the earliest start and latest end of the case's units.
fn case_window(case: &CaseRecord) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = case
        .units
        .iter()
        .map(|u| u.from)
        .min()
        .expect("a case has units");
    let to = case
        .units
        .iter()
        .map(|u| u.to)
        .max()
        .expect("a case has units");
    let utc = |t: DateTime<FixedOffset>| t.with_timezone(&Utc);
    (utc(from), utc(to))
}

/// The split stage of the main job: runs when a case record is given.
pub struct SplitStage;

impl BatchStage for SplitStage {
    fn name(&self) -> &'static str {
        "split"
    }

    fn run(
        &self,
        services: &Services,
        case: Option<&CaseRecord>,
        _jobs: &mut [RecordingJob],
        report: &mut ProcessReport,
    ) -> Result<(), StageError> {
        let Some(case) = case else {
            return Ok(());
        };
        let outcome = split_case(services, case, SplitOptions::default());
        insert_sections(report, &outcome);
        Ok(())
    }
}

/// Puts a split outcome into a process report: `clips` and
/// `clips_missing` sections, and the errors.
pub fn insert_sections(report: &mut ProcessReport, outcome: &SplitOutcome) {
    report.sections.insert(
        "clips".into(),
        serde_json::to_value(&outcome.clips).expect("clips serialize"),
    );
    report.sections.insert(
        "clips_missing".into(),
        serde_json::to_value(&outcome.missing).expect("missing clips serialize"),
    );
    report.sections.insert(
        "clips_text".into(),
        serde_json::to_value(Text::new(
            cli::render_clips(outcome, Lang::Zh),
            cli::render_clips(outcome, Lang::En),
        ))
        .expect("a text serializes"),
    );
    report.errors.extend(outcome.errors.iter().cloned());
}
