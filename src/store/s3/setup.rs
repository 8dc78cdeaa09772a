//! `storage init`: what each bucket needs, and what it turns out to offer.
//!
//! Every bucket the store writes to is created when missing (with object
//! lock requested, since most services allow it only at creation), gets
//! versioning and object lock where wanted and supported, and the bucket
//! holding the routine tier gets a lifecycle rule that expires routine
//! footage after a year. Rules set by others on the same bucket are kept.
//! A service that refuses a setting is not an error: the report says what
//! is missing and what the product falls back on.

use std::collections::BTreeMap;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    ObjectLockConfiguration, ObjectLockEnabled, VersioningConfiguration,
};
use serde::Serialize;

use std::path::Path;

use crate::config::{Backend, ObjectLockUse, StoreConfig};
use crate::i18n::{Lang, Text};
use crate::store::retention::{Capabilities, ROUTINE_EXPIRY_DAYS};
use crate::store::{ObjectStore, StoreError, Tier};

use super::{remote, BucketFeatures, Location, S3Store};

/// Id of the rule that expires routine footage.
const ROUTINE_RULE_ID: &str = "evidence-routine-expiry";

/// Id of the rule that removes abandoned multipart uploads.
const ABORT_RULE_ID: &str = "evidence-abort-stale-uploads";

/// An interrupted upload is resumable for this many days; after that the
/// service frees its parts and the next run starts over. Thirty days
/// outlast any outage a station would wait through.
const ABORT_STALE_UPLOAD_DAYS: i32 = 30;

/// What `storage init` did to one bucket and what it offers.
#[derive(Clone, Debug, Serialize)]
pub struct BucketReport {
    pub endpoint: String,
    pub bucket: String,
    /// `TIER:PREFIX` of every tier (and `backup:PREFIX`) in this bucket.
    pub holds: Vec<String>,
    pub created: bool,
    pub versioning: bool,
    pub object_lock: bool,
    /// Whether the routine expiry rule is in place (routine buckets only).
    pub lifecycle: Option<bool>,
    /// What is missing and what the product does instead.
    pub notes: Vec<Text>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    /// `local` or `s3`.
    pub backend: &'static str,
    /// S3 buckets as set up; empty for the local store.
    pub buckets: Vec<BucketReport>,
    /// What each tier now offers.
    pub tiers: Vec<Capabilities>,
}

impl InitReport {
    pub fn render_text(&self, lang: Lang) -> String {
        let yes_no = |b: bool| {
            if b {
                lang.pick("是", "yes")
            } else {
                lang.pick("否", "no")
            }
        };
        let mut out = String::new();
        for bucket in &self.buckets {
            out.push_str(&format!(
                "{} {}/{}{}\n  {}: {}\n  {}: {}  {}: {}{}\n",
                lang.pick("存储桶", "bucket"),
                bucket.endpoint,
                bucket.bucket,
                if bucket.created {
                    lang.pick("（新建）", " (created)")
                } else {
                    ""
                },
                lang.pick("存放", "holds"),
                bucket.holds.join(", "),
                lang.pick("版本控制", "versioning"),
                yes_no(bucket.versioning),
                lang.pick("对象锁定", "object lock"),
                yes_no(bucket.object_lock),
                match bucket.lifecycle {
                    Some(l) => format!(
                        "  {}: {}",
                        lang.pick("一般资料一年后过期", "routine expiry after a year"),
                        yes_no(l)
                    ),
                    None => String::new(),
                }
            ));
            for note in &bucket.notes {
                out.push_str(&format!("  - {}\n", note.get(lang)));
            }
        }
        if self.buckets.is_empty() {
            for tier in &self.tiers {
                out.push_str(&format!(
                    "{} {}: {}\n",
                    lang.pick("层", "tier"),
                    tier.tier.as_str(),
                    tier.location
                ));
                for note in tier.fallbacks() {
                    out.push_str(&format!("  - {}\n", note.get(lang)));
                }
            }
        }
        out
    }
}

/// `evidence storage init` for whichever backend is configured. The local
/// store needs no setup; its report says what it falls back on.
pub fn init_storage(config: &StoreConfig, data_dir: &Path, store: &dyn ObjectStore) -> Result<InitReport, StoreError> {
    let buckets = match config.backend {
        Backend::Local => Vec::new(),
        Backend::S3 => S3Store::open(config, data_dir, None)?.init()?.buckets,
    };
    let tiers = Tier::ALL
        .iter()
        .map(|&tier| store.capabilities(tier))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InitReport {
        backend: match config.backend {
            Backend::Local => "local",
            Backend::S3 => "s3",
        },
        buckets,
        tiers,
    })
}

/// Reads what a bucket offers; a request the service does not implement
/// counts as "not offered".
pub(super) async fn detect(location: &Location) -> BucketFeatures {
    let client = &location.client;
    let object_lock = client
        .get_object_lock_configuration()
        .bucket(&location.bucket)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.object_lock_configuration()
                .and_then(|c| c.object_lock_enabled().cloned())
        })
        == Some(ObjectLockEnabled::Enabled);
    let versioning = client
        .get_bucket_versioning()
        .bucket(&location.bucket)
        .send()
        .await
        .ok()
        .and_then(|o| o.status().cloned())
        == Some(BucketVersioningStatus::Enabled);
    let lifecycle_routine = match client
        .get_bucket_lifecycle_configuration()
        .bucket(&location.bucket)
        .send()
        .await
    {
        Ok(output) => output.rules().iter().any(|rule| {
            rule.id() == Some(ROUTINE_RULE_ID)
                && rule.status() == &ExpirationStatus::Enabled
                && rule.expiration().and_then(|e| e.days()).is_some()
        }),
        Err(_) => false,
    };
    BucketFeatures {
        object_lock,
        versioning,
        lifecycle_routine,
    }
}

pub(super) async fn init(store: &S3Store) -> Result<InitReport, StoreError> {
    let mut buckets: BTreeMap<String, (Location, Vec<String>, Option<String>)> = BTreeMap::new();
    for tier in Tier::ALL {
        let location = store.location(tier)?.clone();
        let entry = buckets
            .entry(location.bucket_id())
            .or_insert_with(|| (location.clone(), Vec::new(), None));
        entry.1.push(format!("{}:{}", tier.as_str(), location.prefix));
        if tier == Tier::Routine {
            entry.2 = Some(location.prefix.clone());
        }
    }
    if let Some(backup) = &store.inner.backup {
        let location = backup.location(Tier::Evidence)?.clone();
        buckets
            .entry(location.bucket_id())
            .or_insert_with(|| (location.clone(), Vec::new(), None))
            .1
            .push(format!("backup:{}", location.prefix));
    }

    let wants_lock = store.inner.lock_use != ObjectLockUse::Off;
    let mut reports = Vec::new();
    for (_, (location, holds, routine_prefix)) in buckets {
        let mut notes = Vec::new();
        let created = ensure_bucket(&location, wants_lock).await?;

        if wants_lock {
            if let Err(message) = enable_versioning(&location).await {
                tracing::debug!(bucket = %location.bucket_id(), %message, "versioning refused");
            }
            if let Err(message) = enable_object_lock(&location).await {
                tracing::debug!(bucket = %location.bucket_id(), %message, "object lock refused");
            }
        }
        let lifecycle = match &routine_prefix {
            Some(prefix) => match install_lifecycle(&location, prefix).await {
                Ok(()) => Some(true),
                Err(message) => {
                    tracing::debug!(bucket = %location.bucket_id(), %message, "lifecycle refused");
                    Some(false)
                }
            },
            None => None,
        };

        store
            .inner
            .features
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&location.bucket_id());
        let features = store.features(&location).await;
        if !features.object_lock {
            notes.push(Text::new(
                "不支持对象锁定（合规模式、法律保留）：改由本程序在保存期内拒绝删除，并以 evidence verify 定期核验",
                "no object lock (compliance mode, legal hold): the product refuses deletion during retention instead, and `evidence verify` checks fixity",
            ));
        }
        if !features.versioning {
            notes.push(Text::new(
                "不支持版本控制：本程序从不覆盖对象，对象被改动时由 evidence verify 发现",
                "no versioning: the product never overwrites an object, and `evidence verify` finds one that was changed",
            ));
        }
        if lifecycle == Some(false) || (lifecycle.is_some() && !features.lifecycle_routine) {
            notes.push(Text::new(
                "无法安装生命周期规则：一般音像资料满一年后不会自动过期，须由人删除",
                "no lifecycle rule: routine footage does not expire by itself after a year and must be deleted by a person",
            ));
        }
        reports.push(BucketReport {
            endpoint: location.endpoint.clone(),
            bucket: location.bucket.clone(),
            holds,
            created,
            versioning: features.versioning,
            object_lock: features.object_lock,
            lifecycle: lifecycle.map(|_| features.lifecycle_routine),
            notes,
        });
    }
    Ok(InitReport {
        backend: "s3",
        buckets: reports,
        tiers: Vec::new(),
    })
}

/// Creates the bucket when it is missing; true when it was created.
async fn ensure_bucket(location: &Location, wants_lock: bool) -> Result<bool, StoreError> {
    let client = &location.client;
    match client.head_bucket().bucket(&location.bucket).send().await {
        Ok(_) => return Ok(false),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
        Err(e) => return Err(remote(location.bucket_id(), e)),
    }
    let region = client.config().region().map(|r| r.to_string()).unwrap_or_default();
    let configuration = (region != "us-east-1" && !region.is_empty()).then(|| {
        CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(region.as_str()))
            .build()
    });
    let create = |lock: bool| {
        client
            .create_bucket()
            .bucket(&location.bucket)
            .set_create_bucket_configuration(configuration.clone())
            .set_object_lock_enabled_for_bucket(lock.then_some(true))
            .send()
    };
    match create(wants_lock).await {
        Ok(_) => {}
        Err(e) if wants_lock && e.code() != Some("BucketAlreadyOwnedByYou") => {
            tracing::debug!(bucket = %location.bucket_id(), error = ?e.code(), "creation with object lock refused; creating without");
            create(false).await.map_err(|e| remote(location.bucket_id(), e))?;
        }
        Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => return Ok(false),
        Err(e) => return Err(remote(location.bucket_id(), e)),
    }
    tracing::info!(bucket = %location.bucket_id(), "bucket created");
    Ok(true)
}

async fn enable_versioning(location: &Location) -> Result<(), String> {
    location
        .client
        .put_bucket_versioning()
        .bucket(&location.bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("error").to_string())
}

/// Turns object lock on without a default retention: each object gets
/// its own retain-until date or legal hold when it is written.
async fn enable_object_lock(location: &Location) -> Result<(), String> {
    let enabled = location
        .client
        .get_object_lock_configuration()
        .bucket(&location.bucket)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.object_lock_configuration()
                .and_then(|c| c.object_lock_enabled().cloned())
        });
    if enabled == Some(ObjectLockEnabled::Enabled) {
        return Ok(());
    }
    location
        .client
        .put_object_lock_configuration()
        .bucket(&location.bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("error").to_string())
}

/// Installs the routine expiry and stale-upload rules, keeping every
/// other rule of the bucket.
async fn install_lifecycle(location: &Location, routine_prefix: &str) -> Result<(), String> {
    let client = &location.client;
    let mut rules: Vec<LifecycleRule> = match client
        .get_bucket_lifecycle_configuration()
        .bucket(&location.bucket)
        .send()
        .await
    {
        Ok(output) => output.rules().to_vec(),
        Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
        Err(e) => return Err(e.code().unwrap_or("error").to_string()),
    };
    rules.retain(|r| r.id() != Some(ROUTINE_RULE_ID) && r.id() != Some(ABORT_RULE_ID));
    let build = |builder: aws_sdk_s3::types::builders::LifecycleRuleBuilder| builder.build().map_err(|e| e.to_string());
    rules.push(build(
        LifecycleRule::builder()
            .id(ROUTINE_RULE_ID)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(routine_prefix).build())
            .expiration(LifecycleExpiration::builder().days(ROUTINE_EXPIRY_DAYS).build()),
    )?);
    rules.push(build(
        LifecycleRule::builder()
            .id(ABORT_RULE_ID)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(ABORT_STALE_UPLOAD_DAYS)
                    .build(),
            ),
    )?);
    let configuration = BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map_err(|e| e.to_string())?;
    client
        .put_bucket_lifecycle_configuration()
        .bucket(&location.bucket)
        .lifecycle_configuration(configuration)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("error").to_string())
}
