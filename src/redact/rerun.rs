//! Redacted copies made again when the clip they were made from gets a
//! newer version, for `evidence reprocess`.
//!
//! An exported disclosure item that names a clip of the case has a
//! redacted copy made from that clip version. When reprocessing cuts a new
//! version of the unit's clip (a moved unit boundary, changed settings),
//! the item's approved spec is applied again to the newest version, with
//! the request's watermark, as the export did. The new copy is kept in the
//! clip tier under `redacted/CASE/UNIT/DEVICE/vN/REQUEST-POS.mp4`, where
//! `vN` is the clip version it was made from, with its redaction log and
//! a manifest naming that clip version. It is registered in the catalog's
//! `redactions` table and logged as a `derive` event. The exported copy and
//! every earlier remade copy stay where they are.
//!
//! A remade copy has not left the bureau: it is not put in the public tier,
//! and disclosing it takes a new request and approval.

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;
use thiserror::Error;
use tracing::info;

use crate::catalog::{ClipRow, DisclosureItemRow, DisclosureRow, RedactionRow};
use crate::i18n::Text;
use crate::runner::Services;
use crate::store::file::store_file;
use crate::store::{key_segment, Manifest, Source, StoreError, Tier, ToolVersions};

use super::{redact, EncoderSettings, RedactError, Request, Spec, LOG_SUFFIX};

/// Tier of remade copies: the tier of the clips they are made from.
const REMADE_TIER: Tier = Tier::Evidence;

/// Purpose of the audit `read` event of the clip a copy is remade from.
const READ_PURPOSE: &str = "redact";

/// One redacted copy made again, as reprocessing reports it.
#[derive(Clone, Debug, Serialize)]
pub struct RemadeCopy {
    pub request_id: String,
    pub position: i64,
    pub unit_id: String,
    pub device: String,
    pub clip_version: u32,
    /// `TIER/KEY` of the clip version the copy was made from.
    pub clip: String,
    pub clip_sha256: String,
    /// `TIER/KEY` of the new redacted copy.
    pub object: String,
    pub sha256: String,
    pub bytes: u64,
    pub method: String,
    /// `TIER/KEY` of the redacted copy this one follows, which stays.
    pub replaces: String,
    /// `created`, or `registered` when a killed run had stored the copy
    /// but not yet recorded it.
    pub status: &'static str,
}

/// A disclosure item whose copy could not be made again.
#[derive(Clone, Debug, Serialize)]
pub struct RemakeFailure {
    pub request_id: String,
    pub position: i64,
    pub reason: Text,
}

/// Outcome of remaking a case's redacted copies.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemakeOutcome {
    pub remade: Vec<RemadeCopy>,
    pub failed: Vec<RemakeFailure>,
}

#[derive(Debug, Error)]
pub enum RemakeError {
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the spec of request {request_id} is not valid: {source}")]
    Spec {
        request_id: String,
        source: super::SpecError,
    },
    #[error("clip {clip} could not be read: {source}")]
    Read {
        clip: String,
        source: std::io::Error,
    },
    #[error("clip {clip} has SHA-256 {actual}, not the {expected} its catalog row records")]
    ClipChanged {
        clip: String,
        expected: String,
        actual: String,
    },
    #[error("redaction of clip {clip} failed: {source}")]
    Redact { clip: String, source: RedactError },
    #[error("cannot use the working folder {path}: {source}")]
    Work {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

impl RemakeError {
    pub fn text(&self) -> Text {
        let zh = match self {
            RemakeError::Catalog(e) => format!("目录库错误：{e}"),
            RemakeError::Store(e) => format!("存储错误：{}", e.text().zh),
            RemakeError::Spec { request_id, source } => {
                format!("申请 {request_id} 的脱敏规格无效：{}", source.message().zh)
            }
            RemakeError::Read { clip, source } => format!("无法读取片段 {clip}：{source}"),
            RemakeError::ClipChanged {
                clip,
                expected,
                actual,
            } => format!("片段 {clip} 的 SHA-256 为 {actual}，与目录库记录的 {expected} 不符"),
            RemakeError::Redact { clip, source } => {
                format!("片段 {clip} 脱敏失败：{}", source.message().zh)
            }
            RemakeError::Work { path, source } => {
                format!("无法使用工作文件夹 {}：{source}", path.display())
            }
            RemakeError::Audit(e) => e.text().zh,
        };
        Text::new(zh, self.to_string())
    }
}

/// Remakes the redacted copy of every exported disclosure item that names
/// an older version of one of the case's clips, from the newest version.
/// A copy already made from that version is left alone, so running again
/// makes nothing twice. One item's failure is recorded and the rest go on.
pub fn remake_for_case(services: &Services, case_id: &str) -> Result<RemakeOutcome, RemakeError> {
    let clips = services.catalog.clips(case_id)?;
    let made = services.catalog.redactions(case_id)?;
    let mut outcome = RemakeOutcome::default();
    if clips.is_empty() {
        return Ok(outcome);
    }

    for request in services.catalog.disclosure_requests()? {
        if request.status != crate::disclose::STATUS_EXPORTED {
            continue;
        }
        let exports = services.catalog.disclosure_exports(&request.request_id)?;
        for item in services.catalog.disclosure_items(&request.request_id)? {
            let Some(source) = clips
                .iter()
                .find(|c| c.tier == item.tier && c.key == item.key)
            else {
                continue;
            };
            let Some(newest) = clips
                .iter()
                .filter(|c| c.unit_id == source.unit_id && c.device == source.device)
                .max_by_key(|c| c.version)
            else {
                continue;
            };
            if newest.version <= source.version {
                continue;
            }
            let earlier: Vec<&RedactionRow> = made
                .iter()
                .filter(|r| r.request_id == request.request_id && r.position == item.position)
                .collect();
            if earlier.iter().any(|r| r.clip_version == newest.version) {
                continue;
            }
            let replaces = match earlier.iter().max_by_key(|r| r.clip_version) {
                Some(previous) => format!("{}/{}", previous.tier, previous.key),
                None => exports
                    .iter()
                    .find(|e| e.position == item.position)
                    .map(|e| format!("{}/{}", Tier::Public.as_str(), e.key))
                    .unwrap_or_default(),
            };

            match remake(services, &request, &item, newest, &replaces) {
                Ok(copy) => outcome.remade.push(copy),
                Err(error) => {
                    tracing::warn!(
                        request = %request.request_id,
                        position = item.position,
                        clip = %newest.key,
                        %error,
                        "redacted copy not remade"
                    );
                    outcome.failed.push(RemakeFailure {
                        request_id: request.request_id.clone(),
                        position: item.position,
                        reason: error.text(),
                    });
                }
            }
        }
    }
    Ok(outcome)
}

/// Custody record of a remade copy: the shared manifest fields and the
/// clip version and disclosure item it was made from.
#[derive(Serialize)]
struct RemadeManifest<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    made_from: MadeFrom<'a>,
}

#[derive(Serialize)]
struct MadeFrom<'a> {
    request_id: &'a str,
    position: i64,
    clip_key: &'a str,
    clip_version: u32,
    clip_sha256: &'a str,
    replaces: &'a str,
}

fn remake(
    services: &Services,
    request: &DisclosureRow,
    item: &DisclosureItemRow,
    clip: &ClipRow,
    replaces: &str,
) -> Result<RemadeCopy, RemakeError> {
    let spec = Spec::parse(&request.spec_json).map_err(|source| RemakeError::Spec {
        request_id: request.request_id.clone(),
        source,
    })?;
    let clip_object = format!("{}/{}", clip.tier, clip.key);
    let clip_tier = Tier::parse(&clip.tier).unwrap_or(REMADE_TIER);
    let key = format!(
        "redacted/{}/{}/{}/v{}/{}-{:02}.mp4",
        key_segment(&clip.case_id),
        key_segment(&clip.unit_id),
        key_segment(&clip.device),
        clip.version,
        key_segment(&request.request_id),
        item.position
    );
    // A killed run may have stored the copy without registering it. The
    // stored copy is registered as it is, because a new render would not
    // be byte-identical and keys are never reused.
    if services.store.head(REMADE_TIER, &key)?.is_some() {
        let manifest = match crate::store::retention::read_manifest(
            services.store.as_ref(),
            REMADE_TIER,
            &key,
        ) {
            Ok(manifest) => manifest,
            Err(StoreError::NotFound { .. }) => {
                let (sha256, sm3, bytes) = hash_stored(services, &key)?;
                write_manifest(
                    services, &key, &sha256, &sm3, bytes, clip, request, item, replaces,
                )?
            }
            Err(error) => return Err(error.into()),
        };
        let method = read_method(services, &key).unwrap_or_default();
        return register(
            services,
            request,
            item,
            clip,
            replaces,
            &key,
            &manifest,
            &method,
            "registered",
        );
    }

    let work = work_dir(services)?;
    let result = (|| {
        let input = fetch_clip(services, clip, clip_tier, &clip_object, &work)?;
        let output = work.join("redacted.mp4");
        let watermark = services
            .config
            .disclosure
            .watermark
            .replace("{request}", &request.request_id);
        let log = redact(&Request {
            input: &input,
            output: &output,
            spec: &spec,
            actor: &services.actor,
            watermark: Some(watermark),
            encoder: EncoderSettings::default(),
            force_full: false,
        })
        .map_err(|source| RemakeError::Redact {
            clip: clip_object.clone(),
            source,
        })?;
        let manifest = store_copy(
            services,
            &output,
            &key,
            &log.output.sha256,
            clip,
            request,
            item,
            replaces,
        )?;
        let log_path = super::log_path(&output);
        let log_bytes = std::fs::read(&log_path).map_err(|source| RemakeError::Work {
            path: log_path.clone(),
            source,
        })?;
        let log_key = format!("{key}{LOG_SUFFIX}");
        services
            .store
            .put_small(REMADE_TIER, &log_key, &log_bytes)?;
        let mut log_manifest = Manifest::for_report(
            REMADE_TIER,
            &log_key,
            &log_bytes,
            &clip_object,
            &services.actor,
        );
        log_manifest.artefact = "redaction_log".to_string();
        log_manifest.store(services.store.as_ref())?;
        let method = serde_json::to_value(log.method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        register(
            services, request, item, clip, replaces, &key, &manifest, &method, "created",
        )
    })();
    let _ = std::fs::remove_dir_all(&work);
    let copy = result?;
    info!(request = %copy.request_id, position = copy.position, clip = %copy.clip, object = %copy.object, sha256 = %copy.sha256, "redacted copy remade");
    Ok(copy)
}

/// Records a stored copy in the catalog and the audit chain.
#[allow(clippy::too_many_arguments)]
fn register(
    services: &Services,
    request: &DisclosureRow,
    item: &DisclosureItemRow,
    clip: &ClipRow,
    replaces: &str,
    key: &str,
    manifest: &Manifest,
    method: &str,
    status: &'static str,
) -> Result<RemadeCopy, RemakeError> {
    let row = RedactionRow {
        request_id: request.request_id.clone(),
        position: item.position,
        case_id: clip.case_id.clone(),
        unit_id: clip.unit_id.clone(),
        device: clip.device.clone(),
        clip_version: clip.version,
        clip_key: clip.key.clone(),
        clip_sha256: clip.sha256.clone(),
        tier: REMADE_TIER.as_str().to_string(),
        key: key.to_string(),
        sha256: manifest.sha256.clone(),
        bytes: manifest.bytes,
        method: method.to_string(),
        replaces_key: replaces.to_string(),
        created_at: Utc::now().to_rfc3339(),
        actor: services.actor.clone(),
    };
    services.catalog.insert_redaction(&row)?;
    let object = format!("{}/{key}", REMADE_TIER.as_str());
    let detail = serde_json::json!({
        "sha256": row.sha256,
        "bytes": row.bytes,
        "request": row.request_id,
        "position": row.position,
        "clip": format!("{}/{}", clip.tier, clip.key),
        "clip_version": clip.version,
        "clip_sha256": clip.sha256,
        "replaces": replaces,
    });
    crate::audit::record_once(services, crate::audit::Action::Derive, &object, detail)?;
    Ok(RemadeCopy {
        request_id: row.request_id,
        position: row.position,
        unit_id: row.unit_id,
        device: row.device,
        clip_version: row.clip_version,
        clip: format!("{}/{}", clip.tier, clip.key),
        clip_sha256: row.clip_sha256,
        object,
        sha256: row.sha256,
        bytes: row.bytes,
        method: row.method,
        replaces: row.replaces_key,
        status,
    })
}

/// Hashes a stored copy whose manifest a killed run did not get to write;
/// returns its SHA-256, SM3 and size.
fn hash_stored(services: &Services, key: &str) -> Result<(String, String, u64), RemakeError> {
    use sha2::Digest as _;
    let object = format!("{}/{key}", REMADE_TIER.as_str());
    let io = |source| RemakeError::Read {
        clip: object.clone(),
        source,
    };
    let read = crate::audit::StoredRead {
        tier: REMADE_TIER,
        key,
        sha256: None,
        purpose: READ_PURPOSE,
        extra: None,
    };
    let logged = crate::audit::read_stored(services, &read)?;
    let mut reader = logged.open(services.store.as_ref())?;
    let mut sha256 = sha2::Sha256::new();
    let mut sm3 = sm3::Sm3::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = std::io::Read::read(&mut reader, &mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        sha256.update(&buffer[..n]);
        sm3.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((
        hex::encode(sha256.finalize()),
        hex::encode(sm3.finalize()),
        bytes,
    ))
}

/// Reads the method out of a stored redaction log.
fn read_method(services: &Services, key: &str) -> Option<String> {
    let mut reader = services
        .store
        .open(REMADE_TIER, &format!("{key}{LOG_SUFFIX}"))
        .ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text).ok()?;
    let log: serde_json::Value = serde_json::from_str(&text).ok()?;
    log["method"].as_str().map(str::to_string)
}

/// Returns a path to the clip's bytes: the store's own file when it is on
/// this machine, else a checked copy in `work`. The read is logged first.
fn fetch_clip(
    services: &Services,
    clip: &ClipRow,
    tier: Tier,
    clip_object: &str,
    work: &Path,
) -> Result<PathBuf, RemakeError> {
    let read = crate::audit::StoredRead {
        tier,
        key: &clip.key,
        sha256: Some(&clip.sha256),
        purpose: READ_PURPOSE,
        extra: None,
    };
    let logged = crate::audit::read_stored(services, &read)?;
    let path = match logged.local_file(services.store.as_ref())? {
        Some(path) => path,
        None => {
            let copy = work.join("clip.mp4");
            let io = |source| RemakeError::Read {
                clip: clip_object.to_string(),
                source,
            };
            let mut reader = logged.open(services.store.as_ref())?;
            let mut file = std::fs::File::create(&copy).map_err(io)?;
            std::io::copy(&mut reader, &mut file).map_err(io)?;
            file.sync_all().map_err(io)?;
            copy
        }
    };
    let actual = crate::store::local::sha256_file(&path).map_err(|source| RemakeError::Read {
        clip: clip_object.to_string(),
        source,
    })?;
    if actual != clip.sha256 {
        return Err(RemakeError::ClipChanged {
            clip: clip_object.to_string(),
            expected: clip.sha256.clone(),
            actual,
        });
    }
    Ok(path)
}

/// Stores the copy and its manifest; returns the manifest.
#[allow(clippy::too_many_arguments)]
fn store_copy(
    services: &Services,
    path: &Path,
    key: &str,
    sha256: &str,
    clip: &ClipRow,
    request: &DisclosureRow,
    item: &DisclosureItemRow,
    replaces: &str,
) -> Result<Manifest, RemakeError> {
    let io = |source| RemakeError::Work {
        path: path.to_path_buf(),
        source,
    };
    let stored = store_file(services.store.as_ref(), path, REMADE_TIER, key, sha256, io)?;
    write_manifest(
        services,
        key,
        sha256,
        &stored.sm3,
        stored.bytes,
        clip,
        request,
        item,
        replaces,
    )
}

/// Writes the manifest of a stored copy unless one is there; returns it.
#[allow(clippy::too_many_arguments)]
fn write_manifest(
    services: &Services,
    key: &str,
    sha256: &str,
    sm3: &str,
    bytes: u64,
    clip: &ClipRow,
    request: &DisclosureRow,
    item: &DisclosureItemRow,
    replaces: &str,
) -> Result<Manifest, RemakeError> {
    let clip_object = format!("{}/{}", clip.tier, clip.key);
    let manifest = Manifest {
        artefact: "redacted".to_string(),
        tier: REMADE_TIER,
        key: key.to_string(),
        sha256: sha256.to_string(),
        sm3: sm3.to_string(),
        bytes,
        source: Source {
            path: clip_object.clone(),
            file_name: key.rsplit('/').next().unwrap_or(key).to_string(),
            modified: None,
            recordings: vec![clip.sha256.clone()],
        },
        tools: ToolVersions::current(),
        created_at: Utc::now(),
        actor: services.actor.clone(),
    };
    let record = RemadeManifest {
        manifest: &manifest,
        made_from: MadeFrom {
            request_id: &request.request_id,
            position: item.position,
            clip_key: &clip_object,
            clip_version: clip.version,
            clip_sha256: &clip.sha256,
            replaces,
        },
    };
    if services.store.head(REMADE_TIER, &manifest.key())?.is_none() {
        let json = serde_json::to_vec_pretty(&record).expect("a manifest serializes");
        services
            .store
            .put_small(REMADE_TIER, &manifest.key(), &json)?;
    }
    Ok(manifest)
}

/// Creates a working folder under the data directory for one remake.
fn work_dir(services: &Services) -> Result<PathBuf, RemakeError> {
    let path = services.data_dir.join("work").join(format!(
        "remake-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&path).map_err(|source| RemakeError::Work {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
