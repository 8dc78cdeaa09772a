//! The stored objects that audit events name, checked against what the
//! events recorded.
//!
//! An intact chain proves nothing about the footage it describes: an original
//! deleted or swapped behind the product's back leaves every event in
//! place. So `audit verify` also looks up each object that an ingest,
//! derive or export event names. The object must still exist, and its
//! manifest must carry the SHA-256 the event recorded. Its size must match
//! the manifest, and the event where the event recorded one. Re-hashing every
//! byte is `evidence verify`'s job; this check costs one `head` and one
//! manifest read per object.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::{AuditEventRow, Catalog, CatalogError};
use crate::i18n::Text;
use crate::store::retention::read_manifest;
use crate::store::{ObjectStore, StoreError, Tier};

/// One object an event names, with what the event recorded about it.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    seq: i64,
    action: String,
    tier: Tier,
    key: String,
    sha256: String,
    bytes: Option<u64>,
}

/// An object that is gone or no longer what its event recorded.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectProblem {
    /// The event that names the object.
    pub seq: i64,
    pub action: String,
    pub tier: Tier,
    pub key: String,
    /// SHA-256 the event recorded.
    pub sha256: String,
    /// Size the event recorded, where it recorded one.
    pub bytes: Option<u64>,
    /// Size found in the store.
    pub found_bytes: Option<u64>,
    /// SHA-256 the object's manifest carries now.
    pub found_sha256: Option<String>,
    pub message: Text,
}

/// Objects checked and the ones that failed, split by kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ObjectsReport {
    pub checked: usize,
    pub missing: Vec<ObjectProblem>,
    pub changed: Vec<ObjectProblem>,
}

/// Failure that stopped the object check as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("object {tier}/{key} could not be looked up: {source}")]
    Store {
        tier: &'static str,
        key: String,
        source: StoreError,
    },
    #[error("the catalog could not list the copies of export {request}: {source}")]
    Catalog {
        request: String,
        source: CatalogError,
    },
}

impl ObjectsError {
    pub fn text(&self) -> Text {
        let zh = match self {
            ObjectsError::Store { tier, key, source } => {
                format!("无法查询对象 {tier}/{key}：{}", source.text().zh)
            }
            ObjectsError::Catalog { request, source } => {
                format!("目录库无法列出调取导出 {request} 的副本：{source}")
            }
        };
        Text::new(zh, self.to_string())
    }
}

/// Checks every object the events name; objects a later `delete` event
/// names are skipped, since their retention ended and they were removed
/// through the product.
pub fn check_objects(
    store: &dyn ObjectStore,
    catalog: &Catalog,
    events: &[AuditEventRow],
) -> Result<ObjectsReport, ObjectsError> {
    let (targets, unlocated) = targets(catalog, events)?;
    let results: Vec<Result<Option<(bool, ObjectProblem)>, ObjectsError>> = targets
        .par_iter()
        .map(|target| check(store, target))
        .collect();

    let mut report = ObjectsReport {
        checked: targets.len() + unlocated.len(),
        missing: unlocated,
        changed: Vec::new(),
    };
    for result in results {
        match result? {
            Some((true, problem)) => report.missing.push(problem),
            Some((false, problem)) => report.changed.push(problem),
            None => {}
        }
    }
    Ok(report)
}

/// Collects the objects named by ingest, derive and export events, each
/// once, under the first event that names it. Also returns, as missing,
/// each exported copy whose export event records its SHA-256 but whose
/// location the catalog no longer has.
fn targets(
    catalog: &Catalog,
    events: &[AuditEventRow],
) -> Result<(Vec<Target>, Vec<ObjectProblem>), ObjectsError> {
    let mut unlocated = Vec::new();
    let deleted: HashSet<&str> = events
        .iter()
        .filter(|e| e.action == "delete")
        .map(|e| e.object.as_str())
        .collect();
    let mut found: BTreeMap<(u8, String), Target> = BTreeMap::new();
    let mut add = |target: Target| {
        let tier_key = format!("{}/{}", target.tier.as_str(), target.key);
        if deleted.contains(tier_key.as_str()) || deleted.contains(target.sha256.as_str()) {
            return;
        }
        found
            .entry((target.tier as u8, target.key.clone()))
            .or_insert(target);
    };

    for event in events {
        let detail: serde_json::Value =
            serde_json::from_str(&event.detail_json).unwrap_or_default();
        match event.action.as_str() {
            "ingest" => {
                let tier = detail["tier"].as_str().and_then(Tier::parse);
                let key = detail["key"].as_str();
                if let (Some(tier), Some(key)) = (tier, key) {
                    add(Target {
                        seq: event.seq,
                        action: event.action.clone(),
                        tier,
                        key: key.to_string(),
                        sha256: event.object.to_ascii_lowercase(),
                        bytes: detail["bytes"].as_u64(),
                    });
                }
            }
            "derive" => {
                let named = event.object.split_once('/');
                let sha256 = detail["sha256"].as_str();
                if let (Some((tier, key)), Some(sha256)) = (named, sha256) {
                    if let Some(tier) = Tier::parse(tier) {
                        add(Target {
                            seq: event.seq,
                            action: event.action.clone(),
                            tier,
                            key: key.to_string(),
                            sha256: sha256.to_ascii_lowercase(),
                            bytes: detail["bytes"].as_u64(),
                        });
                    }
                }
            }
            "export" => {
                let copies = catalog
                    .disclosure_exports(&event.object)
                    .map_err(|source| ObjectsError::Catalog {
                        request: event.object.clone(),
                        source,
                    })?;
                let recorded: Vec<String> = detail["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item.as_str().map(str::to_ascii_lowercase))
                    .collect();
                for sha256 in recorded
                    .iter()
                    .filter(|sha| !copies.iter().any(|c| c.sha256.eq_ignore_ascii_case(sha)))
                {
                    unlocated.push(unlocated_copy(event, sha256));
                }
                for copy in copies {
                    add(Target {
                        seq: event.seq,
                        action: event.action.clone(),
                        tier: Tier::Public,
                        key: copy.key,
                        sha256: copy.sha256.to_ascii_lowercase(),
                        bytes: None,
                    });
                }
            }
            _ => {}
        }
    }
    let mut targets: Vec<Target> = found.into_values().collect();
    targets.sort_by_key(|t| t.seq);
    Ok((targets, unlocated))
}

/// Describes an exported copy that the catalog no longer locates.
fn unlocated_copy(event: &AuditEventRow, sha256: &str) -> ObjectProblem {
    let prefix = format!("disclosures/{}/", event.object);
    ObjectProblem {
        seq: event.seq,
        action: event.action.clone(),
        tier: Tier::Public,
        key: prefix.clone(),
        sha256: sha256.to_string(),
        bytes: None,
        found_bytes: None,
        found_sha256: None,
        message: Text::new(
            format!(
                "事件 #{} 记录的导出副本 {sha256}（调取申请 {}）在目录库中已无存放位置记录",
                event.seq, event.object
            ),
            format!(
                "exported copy {sha256} that event #{} recorded for request {} is no longer located by the catalog",
                event.seq, event.object
            ),
        ),
    }
}

/// Checks one object: `None` when it is as recorded, otherwise the
/// problem and whether the object is missing (`true`) or changed.
fn check(
    store: &dyn ObjectStore,
    target: &Target,
) -> Result<Option<(bool, ObjectProblem)>, ObjectsError> {
    let object = format!("{}/{}", target.tier.as_str(), target.key);
    let problem = |found_bytes, found_sha256, message| ObjectProblem {
        seq: target.seq,
        action: target.action.clone(),
        tier: target.tier,
        key: target.key.clone(),
        sha256: target.sha256.clone(),
        bytes: target.bytes,
        found_bytes,
        found_sha256,
        message,
    };

    let info = store
        .head(target.tier, &target.key)
        .map_err(|source| ObjectsError::Store {
            tier: target.tier.as_str(),
            key: target.key.clone(),
            source,
        })?;
    let Some(info) = info else {
        return Ok(Some((
            true,
            problem(
                None,
                None,
                Text::new(
                    format!("事件 #{} 记录的对象 {object} 已不在存储中", target.seq),
                    format!(
                        "object {object} that event #{} recorded is missing from the store",
                        target.seq
                    ),
                ),
            ),
        )));
    };

    if let Some(bytes) = target.bytes.filter(|&b| b != info.bytes) {
        return Ok(Some((
            false,
            problem(
                Some(info.bytes),
                None,
                Text::new(
                    format!(
                        "对象 {object} 现为 {} 字节，事件 #{} 记录的是 {bytes} 字节",
                        info.bytes, target.seq
                    ),
                    format!(
                        "object {object} is {} bytes, but event #{} recorded {bytes} bytes",
                        info.bytes, target.seq
                    ),
                ),
            ),
        )));
    }

    let manifest = match read_manifest(store, target.tier, &target.key) {
        Ok(manifest) => manifest,
        Err(error) => {
            return Ok(Some((
                false,
                problem(
                    Some(info.bytes),
                    None,
                    Text::new(
                        format!("对象 {object} 的清单无法读取：{error}"),
                        format!("the manifest of object {object} cannot be read: {error}"),
                    ),
                ),
            )))
        }
    };
    if manifest.sha256.to_ascii_lowercase() != target.sha256 {
        return Ok(Some((
            false,
            problem(
                Some(info.bytes),
                Some(manifest.sha256.clone()),
                Text::new(
                    format!(
                        "对象 {object} 的清单记录 SHA-256 {}，事件 #{} 记录的是 {}",
                        manifest.sha256, target.seq, target.sha256
                    ),
                    format!(
                        "the manifest of object {object} records SHA-256 {}, but event #{} recorded {}",
                        manifest.sha256, target.seq, target.sha256
                    ),
                ),
            ),
        )));
    }
    if manifest.bytes != info.bytes {
        return Ok(Some((
            false,
            problem(
                Some(info.bytes),
                Some(manifest.sha256),
                Text::new(
                    format!(
                        "对象 {object} 现为 {} 字节，其清单记录的是 {} 字节",
                        info.bytes, manifest.bytes
                    ),
                    format!(
                        "object {object} is {} bytes, but its manifest records {} bytes",
                        info.bytes, manifest.bytes
                    ),
                ),
            ),
        )));
    }
    Ok(None)
}
