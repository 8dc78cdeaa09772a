//! Permitted deletion: `evidence storage delete`.
//!
//! Nothing is deleted before its retention ends (Articles 12 and 13).
//! Every backend rejects such a deletion, and so does the server's own
//! lock where there is one. An object under legal hold is rejected too. A
//! deletion removes the object, its manifest and, for the evidence tier,
//! its separate backup copy, and each removed copy is logged in the audit
//! chain as a `delete` event and in the catalog (`deletions`), so that
//! fixity checks and the compliance report no longer expect it. The object
//! is named by tier and key, or by the SHA-256 of a recording in the
//! catalog.
//!
//! The recording's catalog row stays (its custody history). The same file
//! uploaded again is stored again under its old key, with a new manifest,
//! because ingest restores an original the store lacks. The backup copy
//! is written again with it where the tier has a backup.

use serde::Serialize;
use thiserror::Error;

use crate::catalog::CatalogError;
use crate::i18n::Text;
use crate::runner::Services;

use super::retention::read_manifest;
use super::{ObjectStore, StoreError, Tier};

/// The object a deletion names.
#[derive(Clone, Debug)]
pub enum Target {
    Key { tier: Tier, key: String },
    Recording { sha256: String },
}

#[derive(Debug, Error)]
pub enum DeleteError {
    #[error("no recording with sha256 {sha256} in the catalog")]
    UnknownRecording { sha256: String },
    #[error("{tier}/{key} is not stored")]
    NotFound { tier: &'static str, key: String },
    #[error("{tier}/{key} cannot be deleted: it is under retention until {until}")]
    Retained {
        tier: &'static str,
        key: String,
        until: String,
    },
    #[error("{tier}/{key} cannot be deleted: it is under legal hold")]
    LegalHold { tier: &'static str, key: String },
    #[error("deleting {subject} failed: {source}")]
    Store { subject: String, source: StoreError },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{subject} was deleted, but logging it in the audit chain failed: {source}")]
    Audit {
        subject: String,
        source: Box<crate::audit::AuditError>,
    },
}

impl DeleteError {
    /// Renders the message in both languages.
    pub fn text(&self) -> Text {
        let zh = match self {
            DeleteError::UnknownRecording { sha256 } => {
                format!("目录中没有 sha256 为 {sha256} 的录像")
            }
            DeleteError::NotFound { tier, key } => format!("{tier}/{key} 不在存储中"),
            DeleteError::Retained { tier, key, until } => {
                match until.as_str() {
                    "permanent" => format!("不能删除 {tier}/{key}：永久保存，任何人不得删除"),
                    super::local::UNTIL_NO_MANIFEST => format!(
                        "不能删除 {tier}/{key}：没有清单，无法确定保存期限，因此不得删除"
                    ),
                    until => format!(
                        "不能删除 {tier}/{key}：保存期限至 {until}，期满前任何人不得删除"
                    ),
                }
            }
            DeleteError::LegalHold { tier, key } => {
                format!("不能删除 {tier}/{key}：该对象处于法定保全（legal hold）状态")
            }
            DeleteError::Store { subject, source } => {
                format!("删除 {subject} 失败：{}", source.text().zh)
            }
            DeleteError::Catalog(source) => format!("读取目录失败：{source}"),
            DeleteError::Audit { subject, source } => {
                format!("{subject} 已删除，但写入审计日志失败：{}", source.text().zh)
            }
        };
        Text::new(zh, self.to_string())
    }
}

/// One removed copy.
#[derive(Clone, Debug, Serialize)]
pub struct Deleted {
    pub tier: Tier,
    pub key: String,
    /// `primary` or `backup`.
    pub copy: &'static str,
    pub location: String,
}

/// The outcome of `storage delete`.
#[derive(Clone, Debug, Serialize)]
pub struct DeleteReport {
    /// The recording's SHA-256, from the catalog or the manifest.
    pub sha256: Option<String>,
    pub deleted: Vec<Deleted>,
}

/// Deletes one object and its backup copy once their retention has ended.
/// The primary copy is checked and deleted first, so a rejection leaves both.
pub fn delete(services: &Services, target: &Target) -> Result<DeleteReport, DeleteError> {
    let (tier, key, mut sha256) = match target {
        Target::Key { tier, key } => (*tier, key.clone(), None),
        Target::Recording { sha256 } => {
            let row = services.catalog.recording(sha256)?.ok_or_else(|| {
                DeleteError::UnknownRecording {
                    sha256: sha256.clone(),
                }
            })?;
            let tier = Tier::parse(&row.tier).unwrap_or(Tier::Routine);
            (tier, row.key, Some(sha256.clone()))
        }
    };
    let store = services.store.as_ref();
    if sha256.is_none() {
        sha256 = read_manifest(store, tier, &key).ok().map(|m| m.sha256);
    }
    let mut copies: Vec<(&'static str, &dyn ObjectStore)> = vec![("primary", store)];
    if tier == Tier::Evidence {
        if let Some(backup) = store.backup() {
            copies.push(("backup", backup));
        }
    }

    let mut deleted = Vec::new();
    for (copy, store) in copies {
        let location = match store.head(tier, &key) {
            Ok(Some(info)) => info.location,
            Ok(None) if copy == "backup" => continue,
            Ok(None) => {
                return Err(DeleteError::NotFound {
                    tier: tier.as_str(),
                    key,
                })
            }
            Err(source) => return Err(store_error(tier, &key, source)),
        };
        store
            .delete(tier, &key)
            .map_err(|source| store_error(tier, &key, source))?;
        tracing::info!(tier = tier.as_str(), key = %key, copy, "deleted after retention ended");
        services.catalog.record_deletion(
            tier.as_str(),
            &key,
            copy,
            sha256.as_deref(),
            &chrono::Utc::now().to_rfc3339(),
            &services.actor,
        )?;
        let detail = serde_json::json!({ "tier": tier.as_str(), "key": key, "copy": copy, "location": location });
        let object = sha256
            .clone()
            .unwrap_or_else(|| format!("{}/{key}", tier.as_str()));
        crate::audit::record(services, crate::audit::Action::Delete, &object, detail).map_err(
            |source| DeleteError::Audit {
                subject: location.clone(),
                source: Box::new(source),
            },
        )?;
        deleted.push(Deleted {
            tier,
            key: key.clone(),
            copy,
            location,
        });
    }
    Ok(DeleteReport { sha256, deleted })
}

fn store_error(tier: Tier, key: &str, source: StoreError) -> DeleteError {
    match source {
        StoreError::Retained { until, .. } => DeleteError::Retained {
            tier: tier.as_str(),
            key: key.to_string(),
            until,
        },
        StoreError::LegalHold { .. } => DeleteError::LegalHold {
            tier: tier.as_str(),
            key: key.to_string(),
        },
        StoreError::NotFound { .. } => DeleteError::NotFound {
            tier: tier.as_str(),
            key: key.to_string(),
        },
        other => DeleteError::Store {
            subject: format!("{}/{key}", tier.as_str()),
            source: other,
        },
    }
}
