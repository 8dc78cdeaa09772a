//! The object store: where originals and derived artefacts are kept, by tier.
//!
//! One interface, several backends. The local directory backend is the
//! embedded default and needs no server. Objects are written through a
//! staged upload that becomes visible under its key only once complete and
//! verified, so an interrupted write never leaves a partial evidence object.
//! Keys are content-addressed for originals and never overwritten.
//!
//! Beside each object lies its manifest (`KEY.manifest.json`): hashes,
//! size, source, tool versions, time and actor.

pub mod delete;
pub mod file;
pub mod local;
pub mod retention;
pub mod s3;
pub mod verify;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::i18n::Text;

pub use local::LocalStore;
pub use retention::{Capabilities, ObjectLabels};

/// Suffix of the manifest object that accompanies every artefact.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Storage tiers and the retention each one stands for (Article 12 and 13
/// of the bureau's rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Routine footage, kept one year.
    Routine,
    /// Footage used as evidence, kept as long as its case file.
    Evidence,
    /// Footage kept long-term (objections, obstruction, incidents, media).
    Longterm,
    /// Approved, redacted copies that left the bureau.
    Public,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Routine, Tier::Evidence, Tier::Longterm, Tier::Public];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Routine => "routine",
            Tier::Evidence => "evidence",
            Tier::Longterm => "longterm",
            Tier::Public => "public",
        }
    }

    pub fn parse(text: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Reasons [`check_key`] gives for a rejected key.
const KEY_NOT_RELATIVE: &str = "keys are relative and not empty";
const KEY_NOT_PRINTABLE: &str = "keys are printable ASCII without spaces";
const KEY_BAD_SEGMENT: &str = "key segments are not empty and do not start with '.'";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store I/O failed on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object {tier}/{key} not found")]
    NotFound { tier: &'static str, key: String },
    #[error("object key {key:?} is not allowed: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("object {tier}/{key} failed verification: expected sha256 {expected}, found {actual}")]
    Mismatch {
        tier: &'static str,
        key: String,
        expected: String,
        actual: String,
    },
    #[error("object {tier}/{key} is under retention until {until}; it cannot be deleted before then")]
    Retained {
        tier: &'static str,
        key: String,
        until: String,
    },
    #[error("object {tier}/{key} is under legal hold; it cannot be deleted")]
    LegalHold { tier: &'static str, key: String },
    #[error("object store request on {subject} failed: {message}")]
    Remote {
        subject: String,
        message: String,
        retryable: bool,
    },
    #[error("object store setting is not usable: {}", .message.en)]
    Setting { message: Text },
    #[error("{path} changed after it was hashed (bytes {offset}..{end} differ); nothing was stored from it")]
    SourceChanged { path: PathBuf, offset: u64, end: u64 },
}

impl StoreError {
    /// Wraps a catalog failure met while the store lists or records objects.
    pub fn catalog(error: impl std::fmt::Display) -> StoreError {
        StoreError::Setting {
            message: Text::new(format!("目录数据库出错：{error}"), format!("catalog failed: {error}")),
        }
    }

    /// Returns the error in both languages. A message that comes from a
    /// server is quoted as it is.
    pub fn text(&self) -> Text {
        let zh = match self {
            StoreError::Io { path, source } => {
                format!("存储读写 {} 失败：{}", path.display(), crate::i18n::io_error_zh(source))
            }
            StoreError::NotFound { tier, key } => format!("对象 {tier}/{key} 不存在"),
            StoreError::InvalidKey { key, reason } => {
                let reason = match *reason {
                    KEY_NOT_RELATIVE => "键必须是非空的相对路径",
                    KEY_NOT_PRINTABLE => "键只能由不含空格的可打印 ASCII 字符组成",
                    KEY_BAD_SEGMENT => "键的每一段都不能为空，也不能以“.”开头",
                    other => other,
                };
                format!("对象键 {key:?} 不允许：{reason}")
            }
            StoreError::Mismatch { tier, key, expected, actual } => format!(
                "对象 {tier}/{key} 校验失败：应为 sha256 {expected}，实际为 {actual}"
            ),
            StoreError::Retained { tier, key, until } => {
                format!("对象 {tier}/{key} 的保存期到 {until} 为止，在此之前不能删除")
            }
            StoreError::LegalHold { tier, key } => {
                format!("对象 {tier}/{key} 处于法律保全（legal hold）状态，不能删除")
            }
            StoreError::Remote { subject, message, .. } => {
                format!("对象存储请求 {subject} 失败：{message}")
            }
            StoreError::Setting { message } => format!("对象存储设置不可用：{}", message.zh),
            StoreError::SourceChanged { path, offset, end } => format!(
                "{} 在计算哈希之后发生了变化（第 {offset}..{end} 字节不同），未保存其中任何内容",
                path.display()
            ),
        };
        Text::new(zh, self.to_string())
    }

    /// Whether trying again could help: a full disk or a flaky mount can
    /// recover; a bad key or a corrupt object cannot.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io { .. } => true,
            StoreError::Remote { retryable, .. } => *retryable,
            // A file still being copied in settles; the next run hashes it anew.
            StoreError::SourceChanged { .. } => true,
            _ => false,
        }
    }
}

/// Size and location of a stored object.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectInfo {
    pub tier: Tier,
    pub key: String,
    pub bytes: u64,
    /// Where the object can be found, for reports: a path or a URL.
    pub location: String,
}

/// A write in progress. Nothing is visible under a key until `commit`.
pub trait StagedObject: Write + Send {
    /// Makes the staged bytes visible under `key`, after checking that they
    /// hash to `sha256`. Committing to a key that already holds the same
    /// bytes succeeds without writing; a different object under the key is
    /// an error, because nothing is overwritten.
    fn commit(self: Box<Self>, tier: Tier, key: &str, sha256: &str) -> Result<ObjectInfo, StoreError>;

    /// Gives the object its custody labels (SM3, case, unit), which a
    /// backend with object metadata stores with it. Backends without
    /// metadata keep them in the manifest only.
    fn label(&mut self, _labels: ObjectLabels) {}

    /// Hands over the SHA-256 and SM3 (hex) that the caller computed over
    /// exactly the bytes it wrote, in the same pass, so that a backend
    /// need not hash them a second time. A backend that proves its copy by
    /// other means (per-part checksums the server checks) takes these as
    /// the whole object's digests; the local store still reads its copy
    /// back.
    fn set_digests(&mut self, _sha256: &str, _sm3: &str) {}

    /// Says, before the first write, that the bytes about to be written
    /// are exactly the file at `path`. A backend that proves what it
    /// stores by checksums the server checks per part (or by reading the
    /// object back) may then hash what is written without keeping a copy,
    /// and send the parts from the file itself at commit: a byte that
    /// changed in between fails the server's check or the read-back, and
    /// nothing unverified becomes visible. The local store keeps its copy.
    fn read_from(&mut self, _path: &Path) {}
}

pub trait ObjectStore: Send + Sync {
    /// Starts a staged write.
    fn stage(&self) -> Result<Box<dyn StagedObject>, StoreError>;

    /// Returns the object's size and location, or `None` when it is absent.
    fn head(&self, tier: Tier, key: &str) -> Result<Option<ObjectInfo>, StoreError>;

    /// Opens a stored object for reading.
    fn open(&self, tier: Tier, key: &str) -> Result<Box<dyn Read + Send>, StoreError>;

    /// Writes a small object (a manifest, a report) in one call.
    fn put_small(&self, tier: Tier, key: &str, bytes: &[u8]) -> Result<ObjectInfo, StoreError> {
        let mut staged = self.stage()?;
        staged.write_all(bytes).map_err(|source| StoreError::Io {
            path: PathBuf::from(key),
            source,
        })?;
        staged.commit(tier, key, &crate::ingest::sha256_hex(bytes))
    }

    /// Lists the keys of one tier under a prefix, manifests excluded.
    fn list(&self, tier: Tier, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Copies an object into another tier under the same key, verified
    /// against `sha256`; the source stays where it is. Backends that can
    /// copy on the server do so; this default streams the bytes through.
    fn copy(&self, from: Tier, key: &str, to: Tier, sha256: &str, labels: &ObjectLabels) -> Result<ObjectInfo, StoreError> {
        let mut reader = self.open(from, key)?;
        let mut staged = self.stage()?;
        std::io::copy(&mut reader, &mut staged).map_err(|source| StoreError::Io {
            path: PathBuf::from(key),
            source,
        })?;
        staged.label(labels.clone());
        staged.commit(to, key, sha256)
    }

    /// Deletes an object and its manifest, refusing while its retention
    /// runs (or when its retention cannot be established).
    fn delete(&self, tier: Tier, key: &str) -> Result<(), StoreError>;

    /// What this store offers for one tier: lock, versioning, lifecycle.
    fn capabilities(&self, tier: Tier) -> Result<Capabilities, StoreError>;

    /// The separate backup copy of the evidence tier, when one is configured.
    fn backup(&self) -> Option<&dyn ObjectStore> {
        None
    }
}

/// Tool versions recorded in every manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ToolVersions {
    pub evidence: String,
    pub gstreamer: String,
}

impl ToolVersions {
    pub fn current() -> ToolVersions {
        ToolVersions {
            evidence: env!("CARGO_PKG_VERSION").to_string(),
            gstreamer: crate::media::gstreamer_version(),
        }
    }
}

/// Where an artefact came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Source {
    /// Path of the uploaded file as it was given.
    pub path: String,
    pub file_name: String,
    pub modified: Option<DateTime<Utc>>,
    /// SHA-256 of the recordings a derived artefact was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recordings: Vec<String>,
}

/// The custody record kept beside each artefact.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// `original`, `clip`, `redacted`, `report`.
    pub artefact: String,
    pub tier: Tier,
    pub key: String,
    pub sha256: String,
    pub sm3: String,
    pub bytes: u64,
    pub source: Source,
    pub tools: ToolVersions,
    pub created_at: DateTime<Utc>,
    pub actor: String,
}

impl Manifest {
    /// Builds the custody record of a report artefact (a picture, a text)
    /// that the product made itself, so that fixity checks can read it.
    pub fn for_report(tier: Tier, key: &str, bytes: &[u8], made_from: &str, actor: &str) -> Manifest {
        use sm3::Digest;
        Manifest {
            artefact: "report".into(),
            tier,
            key: key.to_string(),
            sha256: crate::ingest::sha256_hex(bytes),
            sm3: hex::encode(sm3::Sm3::digest(bytes)),
            bytes: bytes.len() as u64,
            source: Source {
                path: made_from.to_string(),
                file_name: key.rsplit('/').next().unwrap_or(key).to_string(),
                modified: None,
                recordings: Vec::new(),
            },
            tools: ToolVersions::current(),
            created_at: Utc::now(),
            actor: actor.to_string(),
        }
    }

    pub fn key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.key)
    }

    /// Writes the manifest beside its object. A manifest already there with
    /// the same hashes is kept as it is, so a rerun records nothing twice.
    pub fn store(&self, store: &dyn ObjectStore) -> Result<ObjectInfo, StoreError> {
        if let Some(info) = store.head(self.tier, &self.key())? {
            return Ok(info);
        }
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        store.put_small(self.tier, &self.key(), &bytes)
    }
}

/// Makes one safe key segment from text that came from outside (a device
/// id from a file name): anything but ASCII letters, digits, `-` and `_`
/// becomes `_`, and an empty result becomes `unknown`.
pub fn key_segment(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .take(crate::case::MAX_ID_LEN)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "unknown".to_string()
    } else {
        cleaned
    }
}

/// Checks a key before it touches a backend: relative, no `..`, no empty or
/// hidden segments, printable ASCII only.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() || key.starts_with('/') {
        return invalid(KEY_NOT_RELATIVE);
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return invalid(KEY_NOT_PRINTABLE);
    }
    if key.split('/').any(|s| s.is_empty() || s.starts_with('.')) {
        return invalid(KEY_BAD_SEGMENT);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segment_keeps_only_safe_characters() {
        assert_eq!(key_segment("HB0631"), "HB0631");
        assert_eq!(key_segment("../x"), "___x");
        assert_eq!(key_segment(""), "unknown");
        assert_eq!(key_segment("摄像机"), "___");
    }

    #[test]
    fn check_key_rejects_escapes() {
        for bad in ["", "/abs", "a/../b", "a//b", ".hidden", "a b", "a/\u{1}"] {
            assert!(check_key(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(check_key("originals/2024/05/01/HB0631/ab.mp4").is_ok());
    }

    #[test]
    fn error_text_has_no_english_in_chinese() {
        let rejected = check_key("a b").unwrap_err().text();
        assert_eq!(rejected.zh, "对象键 \"a b\" 不允许：键只能由不含空格的可打印 ASCII 字符组成");
        assert!(rejected.en.contains("printable ASCII"), "{}", rejected.en);

        let retained = StoreError::Retained {
            tier: "evidence",
            key: "originals/x.mp4".into(),
            until: "2031-01-01".into(),
        }
        .text();
        assert_eq!(retained.zh, "对象 evidence/originals/x.mp4 的保存期到 2031-01-01 为止，在此之前不能删除");

        let full = StoreError::Io {
            path: "/data/store".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        }
        .text();
        assert!(full.zh.starts_with("存储读写 /data/store 失败：磁盘空间不足"), "{}", full.zh);
    }
}
