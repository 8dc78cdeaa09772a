//! Storing clips: versioned keys in the evidence tier, the provenance
//! manifest beside each clip, and the catalog row.
//!
//! A clip's key is `clips/CASE/UNIT/DEVICE/vN.mp4`. The plan a clip was cut
//! from is hashed; when the newest version of a unit's clip was cut from the
//! same plan, nothing is written again, and any other plan adds version
//! N + 1. Nothing is ever overwritten, so every version handed out stays.
//!
//! A clip is stored before its catalog row is written, so a run stopped in
//! between leaves a stored version that has no catalog row. The plan hash
//! is kept in the clip's manifest. The next run with the same plan adopts
//! that version (writes the missing row) instead of cutting a duplicate.
//! A version stored without its manifest is adopted when a fresh cut of
//! the plan has the same SHA-256.

use std::io::{self, Read, Write};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sm3::Sm3;

use super::cut::{cut_lossless, SegmentCut, TrackNote};
use super::plan::{ClipPlan, Gap, Recording};
use super::{reencode, Method, SplitError, SplitOptions};
use crate::case::{CaseRecord, Unit};
use crate::catalog::ClipRow;
use crate::media::mp4_writer::write_movie;
use crate::runner::Services;
use crate::store::{
    check_key, key_segment, ObjectStore, StoreError, Tier, ToolVersions, MANIFEST_SUFFIX,
};

/// Version of the clip layout this code writes; part of the plan hash, so
/// a change of the cutter makes new versions instead of claiming old ones.
const CLIP_FORMAT_VERSION: u32 = 1;

/// The tier clips go to: they are evidence, kept as long as the case file.
const CLIP_TIER: Tier = Tier::Evidence;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipStatus {
    /// Written by this run.
    Created,
    /// Cut from the same plan before; the stored version is reported.
    Unchanged,
    /// Stored from the same plan by a run that stopped before writing the
    /// catalog row; this run wrote the row.
    Recovered,
}

/// A time range on the wall clock.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// One stretch of a recording in a clip.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SegmentReport {
    pub recording: String,
    pub file_name: String,
    /// Presentation seconds of the recording shown by the clip.
    pub from: f64,
    pub to: f64,
    /// Presentation second of the recording from which samples are stored
    /// (the keyframe before `from` when copying).
    pub stored_from: f64,
    pub preroll: f64,
    /// Where the stretch starts on the clip's timeline, in seconds.
    pub clip_from: f64,
    pub wall_from: DateTime<Utc>,
    pub wall_to: DateTime<Utc>,
    /// Byte range of the recording the copied samples lie in.
    pub bytes_from: u64,
    pub bytes_to: u64,
    pub samples: u64,
}

/// A recording a clip was made from.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SourceReport {
    pub sha256: String,
    pub file_name: String,
    pub key: String,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct TracksReport {
    pub kept: Vec<serde_json::Value>,
    pub dropped: Vec<serde_json::Value>,
}

/// One clip as reports and manifests show it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ClipReport {
    pub unit_id: String,
    pub device: String,
    pub status: ClipStatus,
    pub version: u32,
    pub tier: Tier,
    pub key: String,
    /// Where the clip lies: a file path for the local store.
    pub path: String,
    /// Wall-clock start and end of what the clip presents.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Seconds the clip presents, recording gaps included.
    pub duration: f64,
    /// Seconds of footage, recording gaps excluded.
    pub footage_seconds: f64,
    pub requested: Range,
    pub actual: Range,
    /// Largest span of video stored before a boundary and hidden by the
    /// edit list, in seconds; 0 when nothing is hidden.
    pub preroll: f64,
    pub method: String,
    pub sha256: String,
    pub sm3: String,
    pub bytes: u64,
    pub segments: Vec<SegmentReport>,
    pub gaps: Vec<serde_json::Value>,
    pub sources: Vec<SourceReport>,
    pub tracks: TracksReport,
}

/// The custody record stored beside a clip.
#[derive(Serialize)]
struct ClipManifest<'a> {
    artefact: &'static str,
    case_id: &'a str,
    #[serde(flatten)]
    clip: &'a ClipReport,
    /// SHA-256 of the plan the clip was cut from, so that a run stopped
    /// before the catalog row can be recognized and adopted.
    plan_sha256: &'a str,
    tools: ToolVersions,
    encoder: Option<String>,
    created_at: DateTime<Utc>,
    actor: &'a str,
}

/// Makes (or finds) the clip of one plan and returns its report.
pub fn make_clip(
    services: &Services,
    case: &CaseRecord,
    unit: &Unit,
    plan: &ClipPlan,
    recordings: &[Recording],
    options: SplitOptions,
) -> Result<ClipReport, SplitError> {
    let prefix = format!(
        "clips/{}/{}/{}/",
        case.case_id,
        unit.unit_id,
        key_segment(&plan.device)
    );
    check_key(&format!("{prefix}v1.mp4")).map_err(|source| SplitError::Store {
        key: prefix.clone(),
        source,
    })?;
    let plan_sha256 = plan_hash(plan, recordings, options);

    let versions: Vec<ClipRow> = services
        .catalog
        .clips(&case.case_id)?
        .into_iter()
        .filter(|row| row.unit_id == unit.unit_id && row.device == plan.device)
        .collect();
    if let Some(latest) = versions.last() {
        let stored = services.store.head(CLIP_TIER, &latest.key).ok().flatten();
        if latest.plan_sha256 == plan_sha256 && stored.is_some() {
            if let Ok(mut report) = serde_json::from_str::<ClipReport>(&latest.report_json) {
                tracing::info!(key = %latest.key, "clip unchanged; no new version");
                // A run stopped between the row and its audit event left
                // the event out; it is written now, once.
                record_derived(services, case, unit, &report)?;
                report.status = ClipStatus::Unchanged;
                return Ok(report);
            }
        }
    }
    // Versions in the store that the catalog lacks were stored by a run
    // stopped before its catalog row; one cut from this plan is adopted.
    let mut bare = Vec::new();
    for version in unlisted_versions(services.store.as_ref(), &prefix, &versions) {
        let key = format!("{prefix}v{version}.mp4");
        match read_clip_manifest(services.store.as_ref(), &key) {
            Some(stored)
                if stored.plan_sha256.as_deref() == Some(plan_sha256.as_str())
                    && stored.clip.key == key =>
            {
                if let Some(report) =
                    adopt_with_manifest(services, case, unit, stored, &plan_sha256)?
                {
                    return Ok(report);
                }
            }
            Some(_) => {}
            None => bare.push(version),
        }
    }
    let version = next_version(services.store.as_ref(), &prefix, &versions);
    let key = format!("{prefix}v{version}.mp4");
    check_key(&key).map_err(|source| SplitError::Store {
        key: key.clone(),
        source,
    })?;

    let started = Instant::now();
    let mut work = None;
    let (cut, method, encoder) = if options.reencode {
        let made = reencode::cut_reencoded(services, plan, recordings)?;
        work = Some(made.work_dir);
        (made.cut, made.method, Some(made.encoder))
    } else {
        (
            cut_lossless(plan, recordings)?,
            Method::LosslessEditList,
            None,
        )
    };

    let cut_ms = started.elapsed().as_millis();
    let mut staged = services.store.stage().map_err(store_error(&key))?;
    let (sha256, sm3, bytes) = {
        let mut writer = HashingWriter::new(&mut *staged);
        write_movie(&cut.movie, &mut writer).map_err(|source| SplitError::Write {
            key: key.clone(),
            source,
        })?;
        writer.finish()
    };
    let written_ms = started.elapsed().as_millis();
    let same_bytes = bare.into_iter().find(|&orphan| {
        let orphan_key = format!("{prefix}v{orphan}.mp4");
        stored_sha256(services, &orphan_key).as_deref() == Some(sha256.as_str())
    });
    let (version, key, status, info) = match same_bytes {
        Some(orphan) => {
            // The same bytes are already stored under that version, so the
            // staged copy is dropped (which removes it) instead of committed.
            drop(staged);
            let key = format!("{prefix}v{orphan}.mp4");
            tracing::info!(%key, %sha256, "clip stored by an interrupted run has the same bytes; adopting it");
            let info = services
                .store
                .head(CLIP_TIER, &key)
                .map_err(store_error(&key))?
                .ok_or_else(|| SplitError::Store {
                    key: key.clone(),
                    source: StoreError::NotFound {
                        tier: CLIP_TIER.as_str(),
                        key: key.clone(),
                    },
                })?;
            (orphan, key, ClipStatus::Recovered, info)
        }
        None => {
            staged.set_digests(&sha256, &sm3);
            let info = staged
                .commit(CLIP_TIER, &key, &sha256)
                .map_err(store_error(&key))?;
            tracing::info!(%key, %sha256, bytes, method = method.as_str(), "clip stored");
            tracing::debug!(
                cut_ms,
                written_ms,
                stored_ms = started.elapsed().as_millis(),
                "clip timings: planned samples, written and hashed, committed"
            );
            (version, key, ClipStatus::Created, info)
        }
    };
    drop(work);

    let mut report = clip_report(
        plan,
        recordings,
        &cut.segments,
        &cut.kept,
        &cut.dropped,
        ClipFacts {
            version,
            key: key.clone(),
            path: info.location,
            method,
            sha256,
            sm3,
            bytes,
        },
    );
    let now = Utc::now();
    let manifest = ClipManifest {
        artefact: "clip",
        case_id: &case.case_id,
        clip: &report,
        plan_sha256: &plan_sha256,
        tools: ToolVersions::current(),
        encoder,
        created_at: now,
        actor: &services.actor,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    let manifest_key = format!("{key}{MANIFEST_SUFFIX}");
    services
        .store
        .put_small(CLIP_TIER, &manifest_key, &manifest_bytes)
        .map_err(store_error(&manifest_key))?;

    register(
        services,
        case,
        unit,
        &report,
        &plan_sha256,
        now,
        &services.actor,
    )?;
    report.status = status;
    Ok(report)
}

/// Returns a closure that names the key of a failed store call.
fn store_error(key: &str) -> impl FnOnce(StoreError) -> SplitError {
    let key = key.to_string();
    move |source| SplitError::Store { key, source }
}

/// Writes a stored clip's catalog row, then its audit event.
fn register(
    services: &Services,
    case: &CaseRecord,
    unit: &Unit,
    report: &ClipReport,
    plan_sha256: &str,
    created_at: DateTime<Utc>,
    actor: &str,
) -> Result<(), SplitError> {
    services.catalog.insert_clip(&ClipRow {
        case_id: case.case_id.clone(),
        unit_id: unit.unit_id.clone(),
        device: report.device.clone(),
        version: report.version,
        tier: CLIP_TIER.as_str().into(),
        key: report.key.clone(),
        sha256: report.sha256.clone(),
        sm3: report.sm3.clone(),
        bytes: report.bytes,
        method: report.method.clone(),
        plan_sha256: plan_sha256.to_string(),
        report_json: serde_json::to_string(report).expect("a report serializes"),
        created_at: created_at.to_rfc3339(),
        actor: actor.to_string(),
    })?;
    record_derived(services, case, unit, report)
}

/// Writes the clip's `derive` audit event unless the chain already has
/// one for the clip, so that an adopted or rerun clip is logged once.
fn record_derived(
    services: &Services,
    case: &CaseRecord,
    unit: &Unit,
    report: &ClipReport,
) -> Result<(), SplitError> {
    let object = format!("{}/{}", CLIP_TIER.as_str(), report.key);
    let detail = serde_json::json!({ "case": case.case_id, "unit": unit.unit_id, "device": report.device, "version": report.version, "sha256": report.sha256 });
    crate::audit::record_once(services, crate::audit::Action::Derive, &object, detail)
        .map_err(|e| SplitError::Catalog(e.into_catalog()))
}

/// The fields of a stored clip manifest that adopting its clip reads.
#[derive(serde::Deserialize)]
struct StoredManifest {
    #[serde(flatten)]
    clip: ClipReport,
    /// Absent in manifests written before the plan hash was recorded.
    plan_sha256: Option<String>,
    created_at: DateTime<Utc>,
    actor: String,
}

/// Reads the manifest beside a clip; None when there is none or it cannot
/// be read as a clip manifest.
fn read_clip_manifest(store: &dyn ObjectStore, key: &str) -> Option<StoredManifest> {
    let manifest_key = format!("{key}{MANIFEST_SUFFIX}");
    let mut text = String::new();
    store
        .open(CLIP_TIER, &manifest_key)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    match serde_json::from_str(&text) {
        Ok(stored) => Some(stored),
        Err(error) => {
            tracing::warn!(key = %manifest_key, %error, "clip manifest cannot be read");
            None
        }
    }
}

/// Adopts a clip that a stopped run stored with its manifest: writes the
/// catalog row the manifest describes. None when the clip object is gone
/// or its size or SHA-256 differs from the manifest's, so that a new
/// version is cut.
fn adopt_with_manifest(
    services: &Services,
    case: &CaseRecord,
    unit: &Unit,
    stored: StoredManifest,
    plan_sha256: &str,
) -> Result<Option<ClipReport>, SplitError> {
    let mut report = stored.clip;
    let object = services
        .store
        .head(CLIP_TIER, &report.key)
        .map_err(store_error(&report.key))?;
    if object.map(|o| o.bytes) != Some(report.bytes) {
        tracing::warn!(key = %report.key, "clip manifest names an object that is missing or of another size; not adopted");
        return Ok(None);
    }
    // A clip changed since it was stored keeps its size, so only its
    // bytes tell whether the manifest still describes it.
    if stored_sha256(services, &report.key).as_deref() != Some(report.sha256.as_str()) {
        tracing::warn!(key = %report.key, "clip bytes differ from its manifest's SHA-256; not adopted");
        return Ok(None);
    }
    report.status = ClipStatus::Created;
    register(
        services,
        case,
        unit,
        &report,
        plan_sha256,
        stored.created_at,
        &stored.actor,
    )?;
    tracing::info!(key = %report.key, "clip stored by an interrupted run adopted into the catalog");
    report.status = ClipStatus::Recovered;
    Ok(Some(report))
}

/// Hashes a stored clip with SHA-256, after logging the read; None when it
/// cannot be read.
fn stored_sha256(services: &Services, key: &str) -> Option<String> {
    let read = crate::audit::StoredRead {
        tier: CLIP_TIER,
        key,
        sha256: None,
        purpose: "split",
        extra: None,
    };
    let logged = crate::audit::read_stored(services, &read).ok()?;
    let mut reader = logged.open(services.store.as_ref()).ok()?;
    let mut hasher = Sha256::new();
    io::copy(&mut reader, &mut hasher).ok()?;
    Some(hex::encode(hasher.finalize()))
}

/// Versions stored under `prefix`, oldest first.
fn stored_versions(store: &dyn ObjectStore, prefix: &str) -> Vec<u32> {
    let mut versions: Vec<u32> = store
        .list(CLIP_TIER, prefix)
        .unwrap_or_default()
        .iter()
        .filter_map(|key| {
            key.strip_prefix(prefix)?
                .strip_prefix('v')?
                .strip_suffix(".mp4")?
                .parse::<u32>()
                .ok()
        })
        .collect();
    versions.sort_unstable();
    versions
}

/// Stored versions the catalog has no row for, newest first.
fn unlisted_versions(store: &dyn ObjectStore, prefix: &str, versions: &[ClipRow]) -> Vec<u32> {
    let mut unlisted: Vec<u32> = stored_versions(store, prefix)
        .into_iter()
        .filter(|v| !versions.iter().any(|row| row.version == *v))
        .collect();
    unlisted.reverse();
    unlisted
}

/// The next free version: past every version the catalog or the store
/// knows, so that a catalog lost or restored never leads to a reused key.
fn next_version(store: &dyn ObjectStore, prefix: &str, versions: &[ClipRow]) -> u32 {
    let in_catalog = versions.iter().map(|row| row.version).max().unwrap_or(0);
    let in_store = stored_versions(store, prefix).last().copied().unwrap_or(0);
    in_catalog.max(in_store) + 1
}

/// Hashes what determines a clip's content: the format version, the
/// method, each stretch's recording and range, and the gaps.
fn plan_hash(plan: &ClipPlan, recordings: &[Recording], options: SplitOptions) -> String {
    let stretches: Vec<_> = plan
        .segments
        .iter()
        .map(|s| (&recordings[s.recording].sha256, s.from, s.to, s.clip_from))
        .collect();
    let text = serde_json::json!({
        "format": CLIP_FORMAT_VERSION,
        "reencode": options.reencode,
        "requested": [plan.requested_from, plan.requested_to],
        "stretches": stretches,
        "gaps": plan.gaps,
    });
    hex::encode(Sha256::digest(text.to_string().as_bytes()))
}

struct ClipFacts {
    version: u32,
    key: String,
    path: String,
    method: Method,
    sha256: String,
    sm3: String,
    bytes: u64,
}

fn clip_report(
    plan: &ClipPlan,
    recordings: &[Recording],
    cuts: &[SegmentCut],
    kept: &[TrackNote],
    dropped: &[TrackNote],
    facts: ClipFacts,
) -> ClipReport {
    let segments: Vec<SegmentReport> = plan
        .segments
        .iter()
        .zip(cuts)
        .map(|(segment, cut)| {
            let recording = &recordings[segment.recording];
            SegmentReport {
                recording: recording.sha256.clone(),
                file_name: recording.file_name.clone(),
                from: segment.from,
                to: segment.to,
                stored_from: cut.stored_from,
                preroll: cut.preroll,
                clip_from: segment.clip_from,
                wall_from: segment.wall_from,
                wall_to: segment.wall_to,
                bytes_from: cut.bytes_from,
                bytes_to: cut.bytes_to,
                samples: cut.samples,
            }
        })
        .collect();
    let mut sources: Vec<SourceReport> = Vec::new();
    for segment in &plan.segments {
        let recording = &recordings[segment.recording];
        if !sources.iter().any(|s| s.sha256 == recording.sha256) {
            sources.push(SourceReport {
                sha256: recording.sha256.clone(),
                file_name: recording.file_name.clone(),
                key: recording.key.clone(),
            });
        }
    }
    let first = plan.segments.first().expect("a plan has segments");
    let last = plan.segments.last().expect("a plan has segments");
    let to_json = |notes: &[TrackNote]| {
        notes
            .iter()
            .map(|n| serde_json::to_value(n).expect("a note serializes"))
            .collect()
    };
    let gaps = plan
        .gaps
        .iter()
        .map(|g: &Gap| serde_json::to_value(g).expect("a gap serializes"))
        .collect();

    ClipReport {
        unit_id: plan.unit_id.clone(),
        device: plan.device.clone(),
        status: ClipStatus::Created,
        version: facts.version,
        tier: CLIP_TIER,
        key: facts.key,
        path: facts.path,
        from: first.wall_from,
        to: last.wall_to,
        duration: plan.duration,
        footage_seconds: plan.footage_seconds(),
        requested: Range {
            from: plan.requested_from.with_timezone(&Utc),
            to: plan.requested_to.with_timezone(&Utc),
        },
        actual: Range {
            from: first.wall_from,
            to: last.wall_to,
        },
        preroll: segments.iter().map(|s| s.preroll).fold(0.0, f64::max),
        method: facts.method.as_str().into(),
        sha256: facts.sha256,
        sm3: facts.sm3,
        bytes: facts.bytes,
        segments,
        gaps,
        sources,
        tracks: TracksReport {
            kept: to_json(kept),
            dropped: to_json(dropped),
        },
    }
}

/// A writer that hashes with SHA-256 and SM3 what it passes on, the three
/// jobs running side by side so that a large clip is written once.
struct HashingWriter<'a> {
    inner: &'a mut (dyn Write + Send),
    sha256: Sha256,
    sm3: Sm3,
    bytes: u64,
}

impl<'a> HashingWriter<'a> {
    fn new(inner: &'a mut (dyn Write + Send)) -> HashingWriter<'a> {
        HashingWriter {
            inner,
            sha256: Sha256::new(),
            sm3: Sm3::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, String, u64) {
        (
            hex::encode(self.sha256.finalize()),
            hex::encode(self.sm3.finalize()),
            self.bytes,
        )
    }
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let (sha256, sm3, inner) = (&mut self.sha256, &mut self.sm3, &mut self.inner);
        let (written, ()) = rayon::join(
            || inner.write_all(buf),
            || {
                rayon::join(|| sha256.update(buf), || sm3.update(buf));
            },
        );
        written?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
