//! Retention: how long each tier keeps an object, and promotion to the
//! long-term tier.
//!
//! Routine footage is kept one year, evidence footage as long as its case
//! file (configured years, or permanent), long-term footage permanently
//! (Articles 12 and 13). Every backend refuses to delete an object before
//! its retention ends, whether or not the storage underneath can lock it.
//! An Article 13 trigger promotes a recording by copying it into the
//! long-term tier; the copy is verified before it counts, and the source
//! is never moved or removed, so no step can lose the only copy.

use std::io::Read;

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::catalog::{Catalog, CatalogError};
use crate::config::{EvidenceRetention, StoreConfig};
use crate::i18n::{Lang, Text};

use super::{Manifest, ObjectStore, StoreError, Tier, MANIFEST_SUFFIX};

/// Routine footage is kept one year (Article 12).
pub const ROUTINE_RETENTION_MONTHS: u32 = 12;

/// Days after which the lifecycle rule expires routine footage: 366, so
/// that a leap year never ends the year a day early.
pub const ROUTINE_EXPIRY_DAYS: i32 = 366;

/// How long one object must be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Kept until this instant; deletable after it.
    Until(DateTime<Utc>),
    /// Never deletable by the product.
    Permanent,
}

impl Retention {
    /// Whether the object may be deleted at `now`.
    pub fn has_ended(&self, now: DateTime<Utc>) -> bool {
        match self {
            Retention::Until(until) => now >= *until,
            Retention::Permanent => false,
        }
    }

    /// The form stored in object metadata: an RFC 3339 instant or `permanent`.
    pub fn label(&self) -> String {
        match self {
            Retention::Until(until) => until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            Retention::Permanent => "permanent".to_string(),
        }
    }

    /// Reads the metadata form back; anything else is `None`.
    pub fn parse_label(text: &str) -> Option<Retention> {
        if text == "permanent" {
            return Some(Retention::Permanent);
        }
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Retention::Until(t.with_timezone(&Utc)))
    }
}

/// The retention rule of every tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Evidence footage: the case file's retention in years, or `None` for permanent.
    pub evidence_years: Option<u32>,
}

impl Default for RetentionPolicy {
    fn default() -> RetentionPolicy {
        RetentionPolicy::from_config(&StoreConfig::default())
    }
}

impl RetentionPolicy {
    pub fn from_config(config: &StoreConfig) -> RetentionPolicy {
        RetentionPolicy {
            evidence_years: match config.evidence_retention {
                EvidenceRetention::Years(years) => Some(years),
                EvidenceRetention::Permanent(_) => None,
            },
        }
    }

    /// The retention of an object stored in `tier` at `stored_at`. Approved
    /// public copies are kept like evidence, since a copy of every
    /// disclosure must be kept with the case (Article 15).
    pub fn retention_for(&self, tier: Tier, stored_at: DateTime<Utc>) -> Retention {
        let add_years = |years: u32| {
            stored_at
                .checked_add_months(Months::new(years.saturating_mul(12)))
                .map(Retention::Until)
                .unwrap_or(Retention::Permanent)
        };
        match tier {
            Tier::Routine => stored_at
                .checked_add_months(Months::new(ROUTINE_RETENTION_MONTHS))
                .map(Retention::Until)
                .unwrap_or(Retention::Permanent),
            Tier::Evidence | Tier::Public => match self.evidence_years {
                Some(years) => add_years(years),
                None => Retention::Permanent,
            },
            Tier::Longterm => Retention::Permanent,
        }
    }
}

/// Custody labels an object carries in backends with object metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectLabels {
    pub sm3: Option<String>,
    pub case: Option<String>,
    pub unit: Option<String>,
    /// When absent, the store derives it from the tier and the time of writing.
    pub retention: Option<Retention>,
    /// The Article 13 trigger that put the object into the long-term tier.
    pub trigger: Option<Trigger>,
}

/// What a store offers for one tier, detected when it is first asked.
#[derive(Clone, Debug, Serialize)]
pub struct Capabilities {
    pub tier: Tier,
    /// `local` or `s3`.
    pub backend: &'static str,
    /// A path, or `ENDPOINT/BUCKET/PREFIX`.
    pub location: String,
    /// Objects are written in compliance mode with a retain-until date,
    /// and permanent ones under legal hold.
    pub object_lock: bool,
    pub versioning: bool,
    /// The store itself expires routine footage after a year.
    pub lifecycle: bool,
    /// Promotion copies on the server, without the bytes passing through.
    pub server_side_copy: bool,
    /// A separate backup copy is written and verified (evidence tier).
    pub backup: Option<String>,
}

impl Capabilities {
    /// Plain statements of what the store lacks and what the product does
    /// instead, for `storage init` and the logs.
    pub fn fallbacks(&self) -> Vec<Text> {
        let mut notes = Vec::new();
        if !self.object_lock {
            notes.push(Text::new(
                format!(
                    "{}：不支持对象锁定（合规模式、法律保留）；改由本程序在保存期内拒绝删除，并以 evidence verify 定期核验",
                    self.location
                ),
                format!(
                    "{}: no object lock (compliance mode, legal hold); the product refuses deletion during retention instead, and `evidence verify` checks fixity",
                    self.location
                ),
            ));
        }
        if !self.versioning {
            notes.push(Text::new(
                format!("{}：不支持版本控制；对象从不覆盖，改动由 evidence verify 发现", self.location),
                format!(
                    "{}: no versioning; the product never overwrites an object, and `evidence verify` finds a changed one",
                    self.location
                ),
            ));
        }
        if self.tier == Tier::Routine && !self.lifecycle {
            notes.push(Text::new(
                format!("{}：存储不会自动使一般音像资料一年后过期；到期后须由人删除", self.location),
                format!(
                    "{}: the store does not expire routine footage after a year by itself; it must be deleted by a person once retention ends",
                    self.location
                ),
            ));
        }
        notes
    }
}

/// Article 13's situations that call for long-term keeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Trigger {
    /// The party objected or complained (当事人有异议或投诉).
    ObjectionOrComplaint,
    /// Enforcement was obstructed or an officer assaulted (阻挠执法、暴力抗法).
    ObstructionOrAssault,
    /// The footage is evidence in a penalty or enforcement case (作为处罚或强制证据).
    EvidenceInPenaltyOrEnforcement,
    /// An incident happened (突发事件).
    Incident,
    /// Media were present (媒体在场).
    MediaPresence,
    /// Another reason, stated in the note (其他).
    Other,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::ObjectionOrComplaint => "objection_or_complaint",
            Trigger::ObstructionOrAssault => "obstruction_or_assault",
            Trigger::EvidenceInPenaltyOrEnforcement => "evidence_in_penalty_or_enforcement",
            Trigger::Incident => "incident",
            Trigger::MediaPresence => "media_presence",
            Trigger::Other => "other",
        }
    }
}

#[derive(Debug, Error)]
pub enum PromoteError {
    #[error("recording {sha256} is not in the catalog")]
    UnknownRecording { sha256: String },
    #[error("trigger `other` needs a note saying the reason")]
    NoteRequired,
    #[error("manifest of {tier}/{key} cannot be read: {message}")]
    Manifest {
        tier: &'static str,
        key: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl PromoteError {
    pub fn message(&self) -> Text {
        match self {
            PromoteError::UnknownRecording { sha256 } => Text::new(
                format!("目录中没有录像 {sha256}；请先用 evidence process 导入"),
                format!("recording {sha256} is not in the catalog; ingest it first with `evidence process`"),
            ),
            PromoteError::NoteRequired => Text::new(
                "触发情形为 other（其他）时须用 --note 说明理由",
                "trigger `other` needs --note stating the reason",
            ),
            other => Text::new(
                format!("转入长期保存失败：{other}"),
                format!("promotion failed: {other}"),
            ),
        }
    }
}

/// The result of one promotion, for the command's output.
#[derive(Clone, Debug, Serialize)]
pub struct Promotion {
    pub sha256: String,
    pub trigger: Trigger,
    pub note: Option<String>,
    pub from_tier: Tier,
    pub key: String,
    pub location: String,
    /// False when the recording was already in the long-term tier.
    pub copied: bool,
    pub promoted_at: DateTime<Utc>,
}

impl Promotion {
    pub fn render_text(&self, lang: Lang) -> String {
        let action = match (self.copied, lang) {
            (true, Lang::Zh) => "已复制到长期保存层并核验，原件保留在",
            (true, Lang::En) => "copied into the long-term tier and verified; the original stays in",
            (false, Lang::Zh) => "长期保存层已有此录像，已登记触发情形；原件仍在",
            (false, Lang::En) => "already in the long-term tier; the trigger is recorded; the original stays in",
        };
        format!(
            "{} {} ({}): {action} {}\n  {}\n",
            lang.pick("转入长期保存", "promoted"),
            self.sha256,
            self.trigger.as_str(),
            self.from_tier.as_str(),
            self.location
        )
    }
}

/// Reads the manifest that lies beside an object.
pub fn read_manifest(store: &dyn ObjectStore, tier: Tier, key: &str) -> Result<Manifest, StoreError> {
    let manifest_key = format!("{key}{MANIFEST_SUFFIX}");
    let mut text = String::new();
    store
        .open(tier, &manifest_key)?
        .read_to_string(&mut text)
        .map_err(|source| StoreError::Io {
            path: manifest_key.clone().into(),
            source,
        })?;
    let invalid = |e: serde_json::Error| StoreError::Setting {
        message: Text::new(
            format!("清单 {}/{manifest_key} 无效：{e}", tier.as_str()),
            format!("manifest {}/{manifest_key} is not valid: {e}", tier.as_str()),
        ),
    };
    if let Ok(manifest) = serde_json::from_str::<Manifest>(&text) {
        return Ok(manifest);
    }
    // Clip manifests carry their provenance in their own shape; the custody
    // facts every manifest shares (digests, size, time, actor) are read
    // from them and the rest is taken from where the manifest lies.
    let shared: SharedManifestFields = serde_json::from_str(&text).map_err(invalid)?;
    Ok(Manifest {
        artefact: shared.artefact,
        tier,
        key: key.to_string(),
        sha256: shared.sha256,
        sm3: shared.sm3,
        bytes: shared.bytes,
        source: crate::store::Source {
            path: String::new(),
            file_name: key.rsplit('/').next().unwrap_or(key).to_string(),
            modified: None,
            recordings: Vec::new(),
        },
        tools: shared.tools,
        created_at: shared.created_at,
        actor: shared.actor,
    })
}

/// The fields every manifest has, whatever else its artefact records.
#[derive(serde::Deserialize)]
struct SharedManifestFields {
    artefact: String,
    sha256: String,
    #[serde(default)]
    sm3: String,
    bytes: u64,
    tools: crate::store::ToolVersions,
    created_at: chrono::DateTime<chrono::Utc>,
    actor: String,
}

/// Promotes a recording to the long-term tier for an Article 13 trigger:
/// a verified copy under the same key with its own manifest, the source
/// left in place, the promotion recorded in the catalog. Promoting twice
/// records the trigger and copies nothing.
pub fn promote(
    store: &dyn ObjectStore,
    catalog: &Catalog,
    sha256: &str,
    trigger: Trigger,
    note: Option<&str>,
    actor: &str,
) -> Result<Promotion, PromoteError> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if trigger == Trigger::Other && note.is_none() {
        return Err(PromoteError::NoteRequired);
    }
    let recording = catalog
        .recording(sha256)?
        .ok_or_else(|| PromoteError::UnknownRecording {
            sha256: sha256.to_string(),
        })?;
    let from_tier = Tier::parse(&recording.tier).unwrap_or(Tier::Routine);
    let key = recording.key.clone();
    let now = Utc::now();

    let existing = store.head(Tier::Longterm, &key)?;
    let (location, copied) = match existing {
        Some(info) => (info.location, false),
        None => {
            let manifest = read_manifest(store, from_tier, &key).map_err(|e| PromoteError::Manifest {
                tier: from_tier.as_str(),
                key: key.clone(),
                message: e.to_string(),
            })?;
            let labels = ObjectLabels {
                sm3: Some(manifest.sm3.clone()),
                retention: Some(Retention::Permanent),
                trigger: Some(trigger),
                ..ObjectLabels::default()
            };
            let info = store.copy(from_tier, &key, Tier::Longterm, sha256, &labels)?;
            let promoted = Manifest {
                tier: Tier::Longterm,
                created_at: now,
                actor: actor.to_string(),
                ..manifest
            };
            promoted.store(store)?;
            (info.location, true)
        }
    };
    tracing::info!(%sha256, trigger = trigger.as_str(), copied, key = %key, "promoted to long-term");

    catalog.record_promotion(
        sha256,
        trigger.as_str(),
        note,
        from_tier.as_str(),
        &key,
        actor,
        &now.to_rfc3339(),
    )?;
    let detail = serde_json::json!({ "trigger": trigger.as_str(), "note": note, "from_tier": from_tier.as_str(), "key": key });
    crate::audit::record_as(catalog, actor, crate::audit::Action::Promote, sha256, detail).map_err(crate::audit::AuditError::into_catalog)?;
    catalog.set_recording_tier(sha256, Tier::Longterm.as_str())?;
    Ok(Promotion {
        sha256: sha256.to_string(),
        trigger,
        note: note.map(str::to_string),
        from_tier,
        key,
        location,
        copied,
        promoted_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn routine_footage_is_kept_one_calendar_year() {
        let stored = Utc.with_ymd_and_hms(2024, 2, 29, 8, 0, 0).unwrap();
        let retention = RetentionPolicy::default().retention_for(Tier::Routine, stored);
        assert_eq!(
            retention,
            Retention::Until(Utc.with_ymd_and_hms(2025, 2, 28, 8, 0, 0).unwrap())
        );
        assert!(!retention.has_ended(Utc.with_ymd_and_hms(2025, 2, 28, 7, 59, 59).unwrap()));
        assert!(retention.has_ended(Utc.with_ymd_and_hms(2025, 2, 28, 8, 0, 0).unwrap()));
    }

    #[test]
    fn evidence_follows_the_configured_case_file_retention() {
        let stored = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
        let thirty = RetentionPolicy {
            evidence_years: Some(30),
        };
        assert_eq!(
            thirty.retention_for(Tier::Evidence, stored),
            Retention::Until(Utc.with_ymd_and_hms(2054, 5, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            RetentionPolicy::default().retention_for(Tier::Evidence, stored),
            Retention::Permanent
        );
        assert_eq!(thirty.retention_for(Tier::Longterm, stored), Retention::Permanent);
    }

    #[test]
    fn retention_label_reads_back() {
        let until = Retention::Until(Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 0).unwrap());
        assert_eq!(until.label(), "2025-05-01T00:00:00Z");
        assert_eq!(Retention::parse_label(&until.label()), Some(until));
        assert_eq!(Retention::parse_label("permanent"), Some(Retention::Permanent));
        assert_eq!(Retention::parse_label("soon"), None);
    }
}
