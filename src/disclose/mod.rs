//! Disclosure: footage leaves the bureau only through an approved request,
//! and a copy of everything that left is kept (Articles 15–17 of the
//! bureau's rules).
//!
//! The workflow: `request` (requester, purpose, items, redaction spec) →
//! `approve` or `reject` by another person with the approver role →
//! `export`, which makes a redacted copy of each item with a visible
//! watermark carrying the request number, writes a receipt (JSON and text,
//! Chinese and English) with every hash, and keeps each copy, its
//! redaction log and the receipt in the `public` tier. Nothing is exported
//! without approval, and every step is recorded in the catalog with its
//! actor and time.

pub mod cli;
pub mod receipt;

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::info;

use crate::catalog::{
    DisclosureDecisionRow, DisclosureExportRow, DisclosureItemRow, DisclosureRow,
};
use crate::i18n::Text;
use crate::redact::{self, EncoderSettings, Spec};
use crate::runner::Services;
use crate::store::file::store_file;
use crate::store::{Manifest, Source, Tier, ToolVersions};

/// Watermark burnt into exported copies; `{request}` becomes the number.
pub const DEFAULT_WATERMARK: &str = "公开副本 {request} Public copy";

/// Prefix of request numbers, followed by the date and a daily count.
const REQUEST_PREFIX: &str = "DR";

/// Roles an actor can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Approves or rejects disclosure requests (分管领导).
    Approver,
    /// Files requests and makes exports (信息公开工作人员).
    Disclosure,
    /// Reads reports and audit records.
    Auditor,
    Operator,
}

/// `[disclosure]` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureConfig {
    /// Watermark text; `{request}` is replaced by the request number.
    #[serde(default = "default_watermark")]
    pub watermark: String,
}

fn default_watermark() -> String {
    DEFAULT_WATERMARK.to_string()
}

impl Default for DisclosureConfig {
    fn default() -> DisclosureConfig {
        DisclosureConfig {
            watermark: default_watermark(),
        }
    }
}

/// Purpose of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    AdministrativeReview,
    Litigation,
    InformationDisclosure,
    InternalWork,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::AdministrativeReview => "administrative_review",
            Purpose::Litigation => "litigation",
            Purpose::InformationDisclosure => "information_disclosure",
            Purpose::InternalWork => "internal_work",
        }
    }

    pub fn text(purpose: &str) -> Text {
        match purpose {
            "administrative_review" => Text::new("行政复议", "administrative review"),
            "litigation" => Text::new("行政诉讼", "litigation"),
            "information_disclosure" => Text::new("政府信息公开", "information disclosure"),
            "internal_work" => Text::new("内部工作", "internal work"),
            other => Text::new(other, other),
        }
    }
}

/// Status of a request.
pub const STATUS_REQUESTED: &str = "requested";
pub const STATUS_APPROVED: &str = "approved";
pub const STATUS_REJECTED: &str = "rejected";
pub const STATUS_EXPORTED: &str = "exported";

#[derive(Debug, Error)]
pub enum DiscloseError {
    #[error("disclosure request {0} not found")]
    NotFound(String),
    #[error("item {item:?} is neither the SHA-256 of an ingested recording nor a stored object TIER/KEY")]
    UnknownItem { item: String },
    #[error("a request needs at least one item")]
    NoItems,
    #[error("{actor} does not hold the approver role (config [roles])")]
    NotApprover { actor: String },
    #[error("{actor} filed request {request_id} and cannot decide it; another approver must")]
    OwnRequest { actor: String, request_id: String },
    #[error("request {request_id} is {status}, not {expected}")]
    WrongStatus {
        request_id: String,
        status: String,
        expected: &'static str,
    },
    #[error("a rejection needs a reason")]
    NoReason,
    #[error(transparent)]
    Spec(#[from] redact::SpecError),
    #[error("item {position} ({item}): {source}")]
    Redact {
        position: i64,
        item: String,
        source: redact::RedactError,
    },
    #[error("item {position}: the stored original's SHA-256 is {actual}, not the {expected} recorded at request time")]
    Changed {
        position: i64,
        expected: String,
        actual: String,
    },
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DiscloseError {
    pub fn message(&self) -> Text {
        let en = self.to_string();
        let zh = match self {
            DiscloseError::NotFound(id) => format!("找不到调取申请 {id}"),
            DiscloseError::UnknownItem { item } => {
                format!("项目 {item:?} 既不是已导入录像的 SHA-256，也不是存储中的对象 层级/键")
            }
            DiscloseError::NoItems => "申请至少需要一个项目".to_string(),
            DiscloseError::NotApprover { actor } => format!("{actor} 没有审批人角色（配置 [roles]）"),
            DiscloseError::OwnRequest { actor, request_id } => {
                format!("{actor} 是申请 {request_id} 的申请人，不能自行审批，须由另一位审批人决定")
            }
            DiscloseError::WrongStatus {
                request_id,
                status,
                expected,
            } => format!("申请 {request_id} 的状态是 {status}，不是 {expected}"),
            DiscloseError::NoReason => "驳回必须说明理由".to_string(),
            DiscloseError::Spec(e) => return e.message(),
            DiscloseError::Redact { position, item, source } => {
                format!("第 {position} 项（{item}）：{}", source.message().zh)
            }
            DiscloseError::Changed {
                position,
                expected,
                actual,
            } => format!("第 {position} 项：存储中原始文件的 SHA-256 为 {actual}，与申请时记录的 {expected} 不符"),
            DiscloseError::Catalog(e) => format!("目录库错误：{e}"),
            DiscloseError::Store(e) => format!("存储错误：{}", e.text().zh),
            DiscloseError::Io { path, source } => format!("无法写入 {}：{source}", path.display()),
        };
        Text::new(zh, en)
    }
}

/// A request with everything recorded about it.
#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    #[serde(flatten)]
    pub request: DisclosureRow,
    pub items: Vec<DisclosureItemRow>,
    pub decisions: Vec<DisclosureDecisionRow>,
    pub exports: Vec<DisclosureExportRow>,
}

/// Files a request. The spec is validated now, so an approver decides on
/// a spec that can be carried out.
pub fn request(
    services: &Services,
    purpose: Purpose,
    items: &[String],
    spec_path: &Path,
    note: Option<&str>,
) -> Result<RequestView, DiscloseError> {
    if items.is_empty() {
        return Err(DiscloseError::NoItems);
    }
    let spec = Spec::load(spec_path)?;
    let mut rows = Vec::new();
    for (position, item) in items.iter().enumerate() {
        let (sha256, tier, key) = resolve_item(services, item)?;
        rows.push(DisclosureItemRow {
            position: position as i64 + 1,
            item: item.clone(),
            sha256,
            tier: tier.as_str().to_string(),
            key,
        });
    }
    let now = Utc::now();
    let local_date = now
        .with_timezone(&services.config.timezone())
        .format("%Y%m%d");
    let row = DisclosureRow {
        request_id: String::new(),
        requester: services.actor.clone(),
        purpose: purpose.as_str().to_string(),
        spec_json: serde_json::to_string(&spec).expect("a spec serializes"),
        note: note.map(str::to_string),
        status: STATUS_REQUESTED.to_string(),
        created_at: now.to_rfc3339(),
    };
    let request_id = services.catalog.create_disclosure_request(
        &format!("{REQUEST_PREFIX}-{local_date}"),
        &row,
        &rows,
    )?;
    let detail = serde_json::json!({ "purpose": row.purpose, "items": rows.iter().map(|i| &i.sha256).collect::<Vec<_>>() });
    crate::audit::record(services, crate::audit::Action::Request, &request_id, detail).map_err(crate::audit::AuditError::into_catalog)?;
    info!(request = %request_id, actor = %services.actor, items = rows.len(), "disclosure requested");
    show(services, &request_id)
}

/// Finds what an item names: a recording by SHA-256, or a stored object
/// by `TIER/KEY` (a clip).
fn resolve_item(services: &Services, item: &str) -> Result<(String, Tier, String), DiscloseError> {
    let unknown = || DiscloseError::UnknownItem {
        item: item.to_string(),
    };
    if item.len() == 64 && item.chars().all(|c| c.is_ascii_hexdigit()) {
        let row = services
            .catalog
            .recording(&item.to_ascii_lowercase())?
            .ok_or_else(unknown)?;
        let tier = Tier::parse(&row.tier).ok_or_else(unknown)?;
        return Ok((row.sha256, tier, row.key));
    }
    let (tier, key) = item.split_once('/').ok_or_else(unknown)?;
    let tier = Tier::parse(tier).ok_or_else(unknown)?;
    crate::store::check_key(key).map_err(|_| unknown())?;
    if services.store.head(tier, key)?.is_none() {
        return Err(unknown());
    }
    let read = crate::audit::StoredRead {
        tier,
        key,
        sha256: None,
        purpose: "disclose request",
        extra: None,
    };
    let logged = crate::audit::read_stored(services, &read).map_err(crate::audit::AuditError::into_catalog)?;
    let mut reader = logged.open(services.store.as_ref())?;
    let sha256 = sha256_reader(&mut reader).map_err(|source| DiscloseError::Io {
        path: PathBuf::from(item),
        source,
    })?;
    Ok((sha256, tier, key.to_string()))
}

fn sha256_reader(reader: &mut dyn std::io::Read) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(reader, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Approves a request; the actor must hold the approver role and must
/// not be the requester.
pub fn approve(
    services: &Services,
    request_id: &str,
    note: Option<&str>,
) -> Result<RequestView, DiscloseError> {
    decide(services, request_id, STATUS_APPROVED, note)
}

/// Rejects a request, with a reason.
pub fn reject(
    services: &Services,
    request_id: &str,
    reason: &str,
) -> Result<RequestView, DiscloseError> {
    if reason.trim().is_empty() {
        return Err(DiscloseError::NoReason);
    }
    decide(services, request_id, STATUS_REJECTED, Some(reason))
}

fn decide(
    services: &Services,
    request_id: &str,
    to: &'static str,
    reason: Option<&str>,
) -> Result<RequestView, DiscloseError> {
    let request = services
        .catalog
        .disclosure_request(request_id)?
        .ok_or_else(|| DiscloseError::NotFound(request_id.to_string()))?;
    let actor = &services.actor;
    if !has_role(services, actor, Role::Approver) {
        return Err(DiscloseError::NotApprover {
            actor: actor.clone(),
        });
    }
    if &request.requester == actor {
        return Err(DiscloseError::OwnRequest {
            actor: actor.clone(),
            request_id: request_id.to_string(),
        });
    }
    let decision = DisclosureDecisionRow {
        decision: to.to_string(),
        actor: actor.clone(),
        reason: reason.map(str::to_string),
        decided_at: Utc::now().to_rfc3339(),
    };
    if !services
        .catalog
        .decide_disclosure(request_id, STATUS_REQUESTED, to, &decision)?
    {
        let status = services
            .catalog
            .disclosure_request(request_id)?
            .map(|r| r.status)
            .unwrap_or_default();
        return Err(DiscloseError::WrongStatus {
            request_id: request_id.to_string(),
            status,
            expected: STATUS_REQUESTED,
        });
    }
    let action = if to == STATUS_APPROVED { crate::audit::Action::Approve } else { crate::audit::Action::Reject };
    crate::audit::record(services, action, request_id, serde_json::json!({ "reason": reason })).map_err(crate::audit::AuditError::into_catalog)?;
    info!(request = %request_id, %actor, decision = to, "disclosure decided");
    show(services, request_id)
}

/// Returns whether the config gives `actor` the role.
pub fn has_role(services: &Services, actor: &str, role: Role) -> bool {
    services
        .config
        .roles
        .get(actor)
        .is_some_and(|roles| roles.contains(&role))
}

pub fn show(services: &Services, request_id: &str) -> Result<RequestView, DiscloseError> {
    let request = services
        .catalog
        .disclosure_request(request_id)?
        .ok_or_else(|| DiscloseError::NotFound(request_id.to_string()))?;
    Ok(RequestView {
        items: services.catalog.disclosure_items(request_id)?,
        decisions: services.catalog.disclosure_decisions(request_id)?,
        exports: services.catalog.disclosure_exports(request_id)?,
        request,
    })
}

pub fn list(services: &Services) -> Result<Vec<DisclosureRow>, DiscloseError> {
    Ok(services.catalog.disclosure_requests()?)
}

/// Result of one export: the receipt and where its files are.
#[derive(Clone, Debug, Serialize)]
pub struct ExportOutcome {
    pub request_id: String,
    pub out_dir: String,
    pub receipt: receipt::Receipt,
    pub receipt_json: String,
    pub receipt_text: String,
}

/// Exports an approved request into `out_dir` and keeps copies in the
/// public tier.
pub fn export(
    services: &Services,
    request_id: &str,
    out_dir: &Path,
    encoder: EncoderSettings,
) -> Result<ExportOutcome, DiscloseError> {
    let view = show(services, request_id)?;
    if view.request.status != STATUS_APPROVED {
        return Err(DiscloseError::WrongStatus {
            request_id: request_id.to_string(),
            status: view.request.status.clone(),
            expected: STATUS_APPROVED,
        });
    }
    let spec = Spec::parse(&view.request.spec_json)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DiscloseError::Io { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let watermark = services
        .config
        .disclosure
        .watermark
        .replace("{request}", request_id);
    let work = tempfile_dir(services)?;

    let mut exported = Vec::new();
    for item in &view.items {
        let tier = Tier::parse(&item.tier).unwrap_or(Tier::Evidence);
        // The original is copied out of the store and checked against the
        // hash recorded at request time, so the approval covers exactly
        // these bytes.
        let original = work.join(format!("original-{}.mp4", item.position));
        {
            let read = crate::audit::StoredRead {
                tier,
                key: &item.key,
                sha256: Some(&item.sha256),
                purpose: "disclose export",
                extra: Some(("request", request_id)),
            };
            let logged = crate::audit::read_stored(services, &read).map_err(crate::audit::AuditError::into_catalog)?;
            let mut reader = logged.open(services.store.as_ref())?;
            let mut file = std::fs::File::create(&original).map_err(io(&original))?;
            std::io::copy(&mut reader, &mut file).map_err(io(&original))?;
            file.sync_all().map_err(io(&original))?;
        }
        let actual = crate::store::local::sha256_file(&original).map_err(io(&original))?;
        if actual != item.sha256 {
            return Err(DiscloseError::Changed {
                position: item.position,
                expected: item.sha256.clone(),
                actual,
            });
        }

        let name = format!(
            "{request_id}-{:02}-{}.mp4",
            item.position,
            &item.sha256[..12]
        );
        let output = out_dir.join(&name);
        let log = redact::redact(&redact::Request {
            input: &original,
            output: &output,
            spec: &spec,
            actor: &services.actor,
            watermark: Some(watermark.clone()),
            encoder: encoder.clone(),
            force_full: false,
        })
        .map_err(|source| DiscloseError::Redact {
            position: item.position,
            item: item.item.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(&original);

        let key = format!("disclosures/{request_id}/{name}");
        let stored = keep_public(services, &output, &key, &log.output.sha256, &item.sha256)?;
        let log_path = redact::log_path(&output);
        let log_key = format!("{key}{}", redact::LOG_SUFFIX);
        let log_bytes = std::fs::read(&log_path).map_err(io(&log_path))?;
        keep_record(services, &log_key, &log_bytes, &key)?;
        exported.push(receipt::ExportedItem {
            position: item.position,
            item: item.item.clone(),
            original_sha256: item.sha256.clone(),
            output_file: name.clone(),
            output_sha256: log.output.sha256.clone(),
            output_bytes: log.output.bytes,
            redaction_log_sha256: crate::ingest::sha256_hex(&log_bytes),
            public_key: stored,
            method: log.method,
            frames: log.output.frames,
            frames_masked: log.frames_masked,
        });
    }
    let _ = std::fs::remove_dir_all(&work);

    let now = Utc::now();
    let receipt = receipt::Receipt::new(&view, &services.actor, now, &watermark, exported);
    let receipt_json = serde_json::to_vec_pretty(&receipt).expect("a receipt serializes");
    let receipt_text = receipt.render_text();
    let json_path = out_dir.join(format!("{request_id}-receipt.json"));
    let text_path = out_dir.join(format!("{request_id}-receipt.txt"));
    write_new(&json_path, &receipt_json)?;
    write_new(&text_path, receipt_text.as_bytes())?;
    let prefix = format!("disclosures/{request_id}");
    keep_record(services, &format!("{prefix}/receipt.json"), &receipt_json, &prefix)?;
    keep_record(services, &format!("{prefix}/receipt.txt"), receipt_text.as_bytes(), &prefix)?;

    for item in &receipt.items {
        services.catalog.record_disclosure_export(
            request_id,
            &DisclosureExportRow {
                position: item.position,
                sha256: item.output_sha256.clone(),
                key: item.public_key.clone(),
                actor: services.actor.clone(),
                exported_at: now.to_rfc3339(),
                detail_json: serde_json::to_string(item).expect("an item serializes"),
            },
        )?;
    }
    services.catalog.decide_disclosure(
        request_id,
        STATUS_APPROVED,
        STATUS_EXPORTED,
        &DisclosureDecisionRow {
            decision: STATUS_EXPORTED.to_string(),
            actor: services.actor.clone(),
            reason: None,
            decided_at: now.to_rfc3339(),
        },
    )?;
    let detail = serde_json::json!({ "items": receipt.items.iter().map(|i| &i.output_sha256).collect::<Vec<_>>() });
    crate::audit::record(services, crate::audit::Action::Export, request_id, detail).map_err(crate::audit::AuditError::into_catalog)?;
    info!(request = %request_id, actor = %services.actor, items = receipt.items.len(), "disclosure exported");
    Ok(ExportOutcome {
        request_id: request_id.to_string(),
        out_dir: out_dir.display().to_string(),
        receipt,
        receipt_json: json_path.display().to_string(),
        receipt_text: text_path.display().to_string(),
    })
}

/// Stores a record of the export (redaction log, receipt) in the public
/// tier with its manifest, so that fixity checks can verify it like the
/// copies it describes.
fn keep_record(services: &Services, key: &str, bytes: &[u8], made_from: &str) -> Result<(), DiscloseError> {
    services.store.put_small(Tier::Public, key, bytes)?;
    Manifest::for_report(Tier::Public, key, bytes, made_from, &services.actor).store(services.store.as_ref())?;
    Ok(())
}

/// Stores an exported copy in the public tier with its manifest; returns the key.
fn keep_public(
    services: &Services,
    path: &Path,
    key: &str,
    sha256: &str,
    original: &str,
) -> Result<String, DiscloseError> {
    let io = |source| DiscloseError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stored = store_file(services.store.as_ref(), path, Tier::Public, key, sha256, io)?;
    let manifest = Manifest {
        artefact: "redacted".to_string(),
        tier: Tier::Public,
        key: key.to_string(),
        sha256: sha256.to_string(),
        sm3: stored.sm3,
        bytes: stored.bytes,
        source: Source {
            path: path.display().to_string(),
            file_name: path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            modified: None,
            recordings: vec![original.to_string()],
        },
        tools: ToolVersions::current(),
        created_at: Utc::now(),
        actor: services.actor.clone(),
    };
    manifest.store(services.store.as_ref())?;
    Ok(stored.info.key)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), DiscloseError> {
    let io = |source| DiscloseError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Creates a working folder under the data directory for originals
/// copied out of the store during an export.
fn tempfile_dir(services: &Services) -> Result<PathBuf, DiscloseError> {
    let dir = services.data_dir.join("work").join(format!(
        "export-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|source| DiscloseError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}
