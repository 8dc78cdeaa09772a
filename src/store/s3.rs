//! The S3 backend: tiers in buckets of any S3-compatible service.
//!
//! Each tier maps to a bucket, a key prefix and a storage class; the
//! evidence tier can name a second bucket, on the same or another
//! endpoint, that receives a separate verified copy (Article 12). The
//! `ObjectStore` interface is synchronous, so the store owns a tokio
//! runtime and blocks on it; callers are never runtime threads.
//!
//! A write is hashed part by part as it arrives: the SHA-256 of each
//! fixed-size part. The bytes go to a local spool file, except when the
//! caller names the file they come from (`read_from`; ingest does), so an
//! original is not copied to local disk only to be sent away. The whole
//! object's SHA-256 and SM3 are the ones the caller computed over the same
//! bytes in the same pass (`set_digests`; ingest does this), or, when it
//! gave none, are computed from the spool at commit. Only then is the
//! object sent: one PUT carrying the object's SHA-256 below the multipart
//! threshold, parts with their SHA-256 each above it (see `upload`), each
//! part hashed again as it is read for sending, so that a source changed
//! since is refused before a byte leaves. After the upload the object is
//! verified against what the server stores:
//!
//! - a single PUT: the full-object SHA-256 the server computed on receipt
//!   must equal the local one;
//! - a multipart upload: the server must have echoed each part's SHA-256
//!   (it checked the part on receipt) and report the composite checksum
//!   (SHA-256 of the part SHA-256s, `-N`) equal to the one computed from
//!   the local part digests. Since those digests were taken from the very
//!   bytes whose whole-object SHA-256 was computed, this proves the server
//!   holds exactly those bytes without reading them back;
//! - otherwise the object is read back in parallel ranged GETs and its
//!   SHA-256 compared.
//!
//! Garage 2.5 checks part checksums and reports both kinds of checksum, so
//! it is verified without a read-back. moto 5 neither checks nor echoes
//! part checksums nor reports a single PUT's, so it is read back. The ETag
//! is never taken for a hash. Metadata carries `sha256`, `sm3`, `case`,
//! `unit`, `tier` and `retention`.
//!
//! NOTE: the upload starts only once every byte is hashed, because
//! original keys are named by the SHA-256 and the metadata carries the
//! SM3. A server-side copy from a staging key would let it start earlier,
//! but Garage 2.5 reads and hashes the whole object again for a copy.
//!
//! Credentials come from the config or the standard `AWS_ACCESS_KEY_ID`
//! and `AWS_SECRET_ACCESS_KEY` variables only; no instance-metadata or
//! container endpoint is ever asked.

mod setup;
mod upload;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, MetadataDirective, ObjectLockLegalHoldStatus, StorageClass};
use aws_sdk_s3::Client;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use sm3::Sm3;
use tokio::runtime::Runtime;

use crate::i18n::Text;
use crate::catalog::Catalog;
use crate::config::{ObjectLockUse, S3Endpoint, StoreConfig, TierTarget};

use super::retention::{Capabilities, ObjectLabels, Retention, RetentionPolicy};
use super::{check_key, ObjectInfo, ObjectStore, StagedObject, StoreError, Tier, MANIFEST_SUFFIX};

pub use setup::{init_storage, BucketReport, InitReport};

/// Spool files live here under the data directory.
const SPOOL_DIR: &str = "spool";

/// Read buffer when the spool itself must be hashed: large enough for
/// sequential disk speed.
const SPOOL_READ_BYTES: usize = 4 << 20;

/// S3 refuses parts under 5 MiB except the last one.
const MIN_PART_BYTES: u64 = 5 << 20;

/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;

/// CopyObject copies at most 5 GiB; larger objects are copied through the
/// product instead.
const COPY_OBJECT_MAX_BYTES: u64 = 5 << 30;

/// Attempts of each request before it counts as failed: enough to ride
/// out a busy server, few enough that a stopped one fails within seconds.
const REQUEST_ATTEMPTS: u32 = 4;

/// A stalled connection fails after this long rather than hanging an upload.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runtime threads: I/O bound, and the machine's cores are shared with
/// hashing.
const RUNTIME_THREADS: usize = 2;

/// Where one tier lives.
#[derive(Clone)]
struct Location {
    client: Client,
    /// The endpoint as configured, for locations and the resume record.
    endpoint: String,
    bucket: String,
    prefix: String,
    storage_class: Option<StorageClass>,
}

impl Location {
    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Names the object across endpoints, for reports and resume records.
    fn url(&self, key: &str) -> String {
        format!(
            "{}/{}/{}",
            self.endpoint.trim_end_matches('/'),
            self.bucket,
            self.object_key(key)
        )
    }

    fn bucket_id(&self) -> String {
        format!("{}/{}", self.endpoint.trim_end_matches('/'), self.bucket)
    }
}

/// Multipart settings after the memory budget is applied.
#[derive(Clone, Copy, Debug)]
struct UploadSettings {
    threshold: u64,
    part_size: u64,
    /// Parts in flight: the configured concurrency, capped by the memory budget.
    parallel_parts: usize,
    bytes_per_second: Option<f64>,
}

/// What one bucket offers, detected on first use.
#[derive(Clone, Copy, Debug, Default)]
struct BucketFeatures {
    object_lock: bool,
    versioning: bool,
    lifecycle_routine: bool,
}

struct Inner {
    runtime: Arc<Runtime>,
    tiers: HashMap<Tier, Location>,
    /// The separate copy of the evidence tier.
    backup: Option<S3Store>,
    upload: UploadSettings,
    catalog: Option<Arc<Catalog>>,
    spool_dir: PathBuf,
    retention: RetentionPolicy,
    lock_use: ObjectLockUse,
    features: Mutex<HashMap<String, BucketFeatures>>,
    limiter: Arc<upload::RateLimiter>,
}

/// The S3 object store. Cloning shares the runtime and clients.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl S3Store {
    /// Builds the store from `[store]`, keeping spool files under
    /// `data_dir` and the resume records of multipart uploads in `catalog`.
    pub fn open(config: &StoreConfig, data_dir: &Path, catalog: Option<Arc<Catalog>>) -> Result<S3Store, StoreError> {
        let upload = upload_settings(config)?;
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(RUNTIME_THREADS)
                .thread_name("evidence-s3")
                .enable_all()
                .build()
                .map_err(|source| StoreError::Io {
                    path: data_dir.to_path_buf(),
                    source,
                })?,
        );
        let spool_dir = data_dir.join(SPOOL_DIR);
        fs::create_dir_all(&spool_dir).map_err(|source| StoreError::Io {
            path: spool_dir.clone(),
            source,
        })?;
        remove_orphaned_spool(&spool_dir);

        let primary = config.primary_endpoint();
        let client = build_client(&primary)?;
        let endpoint_label = endpoint_label(&primary);
        let mut tiers = HashMap::new();
        for tier in Tier::ALL {
            let target = tier_target(config, tier);
            let bucket =
                target
                    .bucket
                    .clone()
                    .or_else(|| config.bucket.clone())
                    .ok_or_else(|| StoreError::Setting {
                        message: Text::new(
                            format!(
                                "[store] 没有为 {} 层指定存储桶：请设置 `bucket`，或 [store.{}] 下的 `bucket`",
                                tier.as_str(),
                                tier.as_str()
                            ),
                            format!(
                                "[store] names no bucket for tier {}: set `bucket`, or `bucket` under [store.{}]",
                                tier.as_str(),
                                tier.as_str()
                            ),
                        ),
                    })?;
            tiers.insert(
                tier,
                Location {
                    client: client.clone(),
                    endpoint: endpoint_label.clone(),
                    bucket,
                    prefix: normalize_prefix(target.prefix.clone().unwrap_or_else(|| format!("{}/", tier.as_str()))),
                    storage_class: target.storage_class.as_deref().map(StorageClass::from),
                },
            );
        }
        check_disjoint(&tiers)?;

        let retention = RetentionPolicy::from_config(config);
        let limiter = Arc::new(upload::RateLimiter::new(upload.bytes_per_second));
        let backup = match &config.backup {
            None => None,
            Some(backup) => {
                let endpoint = config.backup_endpoint(backup);
                let location = Location {
                    client: if endpoint == primary {
                        client.clone()
                    } else {
                        build_client(&endpoint)?
                    },
                    endpoint: endpoint_label_or(&endpoint, &endpoint_label),
                    bucket: backup.bucket.clone(),
                    prefix: normalize_prefix(backup.prefix.clone().unwrap_or_else(|| "evidence/".to_string())),
                    storage_class: backup.storage_class.as_deref().map(StorageClass::from),
                };
                let evidence = &tiers[&Tier::Evidence];
                if location.bucket_id() == evidence.bucket_id() && location.prefix == evidence.prefix {
                    return Err(StoreError::Setting {
                        message: Text::new(
                            "[store.backup] 就是证据层本身；备份必须是另一个存储桶或前缀",
                            "[store.backup] is the evidence tier itself; a backup must be another bucket or prefix",
                        ),
                    });
                }
                Some(S3Store {
                    inner: Arc::new(Inner {
                        runtime: runtime.clone(),
                        tiers: HashMap::from([(Tier::Evidence, location)]),
                        backup: None,
                        upload,
                        catalog: catalog.clone(),
                        spool_dir: spool_dir.clone(),
                        retention,
                        lock_use: config.object_lock,
                        features: Mutex::new(HashMap::new()),
                        limiter: limiter.clone(),
                    }),
                })
            }
        };

        Ok(S3Store {
            inner: Arc::new(Inner {
                runtime,
                tiers,
                backup,
                upload,
                catalog,
                spool_dir,
                retention,
                lock_use: config.object_lock,
                features: Mutex::new(HashMap::new()),
                limiter,
            }),
        })
    }

    fn location(&self, tier: Tier) -> Result<&Location, StoreError> {
        self.inner.tiers.get(&tier).ok_or_else(|| StoreError::Setting {
            message: Text::new(
                format!("此存储没有 {} 层", tier.as_str()),
                format!("this store keeps no {} tier", tier.as_str()),
            ),
        })
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.inner.runtime.block_on(future)
    }

    /// The multipart upload records of one object, newest first, so that
    /// callers can see whether an upload was resumed.
    pub fn upload_records(&self, tier: Tier, key: &str) -> Result<Vec<crate::catalog::UploadRow>, StoreError> {
        let location = self.location(tier)?;
        match &self.inner.catalog {
            Some(catalog) => catalog
                .uploads(&location.url(key))
                .map_err(StoreError::catalog),
            None => Ok(Vec::new()),
        }
    }

    /// Detects what a bucket offers, once per bucket per process.
    async fn features(&self, location: &Location) -> BucketFeatures {
        if let Some(found) = self
            .inner
            .features
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&location.bucket_id())
        {
            return *found;
        }
        let features = setup::detect(location).await;
        tracing::debug!(bucket = %location.bucket_id(), ?features, "bucket features detected");
        self.inner
            .features
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(location.bucket_id(), features);
        features
    }

    /// Decides how an object is locked, and refuses when lock is required
    /// but the bucket has none.
    async fn lock_plan(
        &self,
        location: &Location,
        tier: Tier,
        key: &str,
        retention: Retention,
    ) -> Result<LockPlan, StoreError> {
        if self.inner.lock_use == ObjectLockUse::Off {
            return Ok(LockPlan::None);
        }
        if !self.features(location).await.object_lock {
            if self.inner.lock_use == ObjectLockUse::Required {
                return Err(StoreError::Setting {
                    message: Text::new(
                        format!(
                            "存储桶 {} 没有对象锁定，但配置为 object_lock = \"required\"；请在创建时启用了对象锁定的存储桶上运行 `evidence storage init`",
                            location.bucket_id()
                        ),
                        format!(
                            "bucket {} has no object lock but object_lock = \"required\"; run `evidence storage init` on a bucket created with object lock",
                            location.bucket_id()
                        ),
                    ),
                });
            }
            tracing::debug!(tier = tier.as_str(), key, bucket = %location.bucket_id(), "no object lock; the product's deletion refusal applies");
            return Ok(LockPlan::None);
        }
        Ok(match retention {
            Retention::Until(until) => LockPlan::Compliance(until),
            Retention::Permanent => LockPlan::LegalHold,
        })
    }

    /// Uploads the spool to one location and establishes the stored
    /// object's SHA-256. An object already under the key is accepted only
    /// when its bytes hash to `sha256`.
    async fn put_verified(
        &self,
        tier: Tier,
        key: &str,
        spool: &Path,
        size: u64,
        sha256: &str,
        parts: &PartDigests,
        labels: &ObjectLabels,
    ) -> Result<ObjectInfo, StoreError> {
        let location = self.location(tier)?.clone();
        let info = ObjectInfo {
            tier,
            key: key.to_string(),
            bytes: size,
            location: location.url(key),
        };
        if let Some(existing) = head(&location, key).await? {
            let recorded = existing.metadata.get("sha256").cloned().unwrap_or_default();
            if recorded != sha256 {
                return Err(StoreError::Mismatch {
                    tier: tier.as_str(),
                    key: key.to_string(),
                    expected: sha256.to_string(),
                    actual: if recorded.is_empty() {
                        "unknown (no sha256 metadata)".into()
                    } else {
                        recorded
                    },
                });
            }
            let verified_by = if self.server_checksum_matches(&location, key, sha256, None).await? {
                "server_checksum"
            } else {
                self.verify_read_back(&location, tier, key, sha256, existing.bytes).await?;
                "read_back"
            };
            tracing::info!(tier = tier.as_str(), key, verified_by, "already stored and verified");
            return Ok(info);
        }

        let retention = labels
            .retention
            .unwrap_or_else(|| self.inner.retention.retention_for(tier, chrono::Utc::now()));
        let write = upload::WriteSpec {
            metadata: object_metadata(tier, sha256, labels, retention),
            lock: self.lock_plan(&location, tier, key, retention).await?,
        };
        if size < self.inner.upload.threshold {
            upload::put_single(&location, key, spool, sha256, &write, &self.inner.limiter).await?;
            if self.server_checksum_matches(&location, key, sha256, None).await? {
                tracing::info!(
                    tier = tier.as_str(),
                    key,
                    verified_by = "server_checksum",
                    "stored and verified"
                );
                return Ok(info);
            }
        } else {
            let part_size = upload::part_size_for(&self.inner.upload, size);
            let rehashed;
            let digests = if parts.part_size == part_size {
                &parts.digests
            } else {
                // The object is too large for the configured part size, so
                // its parts are hashed again, together with the whole spool
                // to tie them to `sha256`.
                let (digests, whole) = hash_spool(spool, Some(part_size)).await?;
                if whole.sha256 != sha256 {
                    return Err(StoreError::Mismatch {
                        tier: tier.as_str(),
                        key: key.to_string(),
                        expected: sha256.to_string(),
                        actual: whole.sha256,
                    });
                }
                rehashed = digests;
                &rehashed
            };
            let context = upload::Multipart {
                location: &location,
                key,
                spool,
                size,
                sha256,
                parts: digests,
                part_size,
                write: &write,
                settings: self.inner.upload,
                catalog: self.inner.catalog.as_deref(),
                limiter: &self.inner.limiter,
            };
            let confirmed = context.run().await?;
            let composite = upload::composite_sha256(digests);
            if confirmed && self.server_checksum_matches(&location, key, sha256, Some(&composite)).await? {
                tracing::info!(
                    tier = tier.as_str(),
                    key,
                    verified_by = "server_part_checksums",
                    "stored and verified"
                );
                return Ok(info);
            }
        }
        self.verify_read_back(&location, tier, key, sha256, size).await?;
        tracing::info!(
            tier = tier.as_str(),
            key,
            verified_by = "read_back",
            "stored and verified"
        );
        Ok(info)
    }

    /// Asks for the SHA-256 checksum the server stores with the object
    /// and says whether it proves the object: the full-object SHA-256
    /// equal to `sha256`, or the composite `composite` of a multipart
    /// object. Anything else (no checksum, another part layout, a value
    /// that differs) is no proof either way, and the caller reads the
    /// object back, which also names a real mismatch.
    async fn server_checksum_matches(
        &self,
        location: &Location,
        key: &str,
        sha256: &str,
        composite: Option<&str>,
    ) -> Result<bool, StoreError> {
        let output = location
            .client
            .head_object()
            .bucket(&location.bucket)
            .key(location.object_key(key))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| remote(location.url(key), e))?;
        let stored = output.checksum_sha256();
        let matches = stored.is_some_and(|stored| {
            stored == upload::base64_of_hex(sha256) || composite.is_some_and(|c| stored == c)
        });
        if !matches {
            tracing::debug!(object = %location.url(key), ?stored, ?composite, "stored checksum proves nothing; reading back");
        }
        Ok(matches)
    }

    /// Reads the stored object back, in ranges fetched in parallel within
    /// the memory budget, and compares its size and SHA-256.
    async fn verify_read_back(
        &self,
        location: &Location,
        tier: Tier,
        key: &str,
        sha256: &str,
        size: u64,
    ) -> Result<(), StoreError> {
        let settings = &self.inner.upload;
        let actual = hash_stored(location, key, size, settings.part_size, settings.parallel_parts).await?;
        if actual != sha256 {
            tracing::error!(tier = tier.as_str(), key, expected = sha256, %actual, "stored object does not match");
            return Err(StoreError::Mismatch {
                tier: tier.as_str(),
                key: key.to_string(),
                expected: sha256.to_string(),
                actual,
            });
        }
        Ok(())
    }

    /// Sets up every bucket this store writes to: creation, versioning,
    /// object lock, the routine lifecycle rule. See `setup`.
    pub fn init(&self) -> Result<InitReport, StoreError> {
        self.block_on(setup::init(self))
    }

    fn capabilities_of(&self, tier: Tier) -> Result<Capabilities, StoreError> {
        let location = self.location(tier)?.clone();
        let features = self.block_on(self.features(&location));
        let backup = match (&self.inner.backup, tier) {
            (Some(backup), Tier::Evidence) => Some(backup.location(Tier::Evidence)?.url("")),
            _ => None,
        };
        Ok(Capabilities {
            tier,
            backend: "s3",
            location: location.url(""),
            object_lock: features.object_lock && self.inner.lock_use != ObjectLockUse::Off,
            versioning: features.versioning,
            lifecycle: features.lifecycle_routine,
            server_side_copy: true,
            backup,
        })
    }
}

/// How an object is protected by the server, where it can be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LockPlan {
    None,
    /// Compliance mode until the retention ends: nobody can shorten it.
    Compliance(chrono::DateTime<chrono::Utc>),
    /// Permanent retention has no date; a legal hold keeps the object
    /// until an authorized person lifts it, which the product never does.
    LegalHold,
}

/// Puts an existing object under compliance retention or legal hold.
async fn apply_lock(location: &Location, key: &str, lock: LockPlan) -> Result<(), StoreError> {
    let object_key = location.object_key(key);
    match lock {
        LockPlan::None => Ok(()),
        LockPlan::Compliance(until) => location
            .client
            .put_object_retention()
            .bucket(&location.bucket)
            .key(object_key)
            .retention(
                aws_sdk_s3::types::ObjectLockRetention::builder()
                    .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
                    .retain_until_date(upload::smithy_time(until))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| remote(location.url(key), e)),
        LockPlan::LegalHold => location
            .client
            .put_object_legal_hold()
            .bucket(&location.bucket)
            .key(object_key)
            .legal_hold(
                aws_sdk_s3::types::ObjectLockLegalHold::builder()
                    .status(ObjectLockLegalHoldStatus::On)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| remote(location.url(key), e)),
    }
}

/// What a HEAD request tells.
struct Head {
    bytes: u64,
    metadata: HashMap<String, String>,
    legal_hold: bool,
}

async fn head(location: &Location, key: &str) -> Result<Option<Head>, StoreError> {
    let result = location
        .client
        .head_object()
        .bucket(&location.bucket)
        .key(location.object_key(key))
        .send()
        .await;
    match result {
        Ok(output) => Ok(Some(Head {
            bytes: output.content_length().unwrap_or_default().max(0) as u64,
            metadata: output.metadata().cloned().unwrap_or_default(),
            legal_hold: output.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
        })),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
        Err(e) => Err(remote(location.url(key), e)),
    }
}

/// Hashes a stored object of `size` bytes with SHA-256, fetching ranges
/// of `range_bytes`, `parallel` at once, and hashing them in order. A
/// stored object of another size "hashes" to a text saying so.
async fn hash_stored(
    location: &Location,
    key: &str,
    size: u64,
    range_bytes: u64,
    parallel: usize,
) -> Result<String, StoreError> {
    let mut hasher = Sha256::new();
    let mut pending = std::collections::VecDeque::new();
    let mut next = 0u64;
    loop {
        while pending.len() < parallel.max(1) && next < size {
            let end = (next + range_bytes).min(size);
            let location = location.clone();
            let key = key.to_string();
            pending.push_back(tokio::spawn(async move { fetch_range(&location, &key, next, end, size).await }));
            next = end;
        }
        let Some(task) = pending.pop_front() else { break };
        let bytes = match task.await.expect("fetching a range does not panic")? {
            Ok(bytes) => bytes,
            Err(found) => return Ok(format!("({found})")),
        };
        hasher.update(&bytes);
    }
    if size == 0 {
        let found = head(location, key).await?.map(|h| h.bytes).unwrap_or_default();
        if found != 0 {
            return Ok(format!("(an object of {found} bytes where 0 were expected)"));
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Fetches bytes `start..end` of an object expected to hold `size` bytes;
/// `Err` says how the answer differs from what was asked.
async fn fetch_range(
    location: &Location,
    key: &str,
    start: u64,
    end: u64,
    size: u64,
) -> Result<Result<Bytes, String>, StoreError> {
    let output = location
        .client
        .get_object()
        .bucket(&location.bucket)
        .key(location.object_key(key))
        .range(format!("bytes={start}-{}", end - 1))
        .send()
        .await
        .map_err(|e| remote(location.url(key), e))?;
    let total = output
        .content_range()
        .and_then(|range| range.rsplit('/').next())
        .and_then(|total| total.parse::<u64>().ok())
        .or_else(|| output.content_length().map(|n| n.max(0) as u64));
    if total != Some(size) {
        return Ok(Err(format!("an object of {} bytes where {size} were expected", total.unwrap_or_default())));
    }
    let bytes = output
        .body
        .collect()
        .await
        .map_err(|e| StoreError::Remote {
            subject: location.url(key),
            message: e.to_string(),
            retryable: true,
        })?
        .into_bytes();
    if bytes.len() as u64 != end - start {
        return Ok(Err(format!("a range of {} bytes where {} were asked", bytes.len(), end - start)));
    }
    Ok(Ok(bytes))
}

fn object_metadata(tier: Tier, sha256: &str, labels: &ObjectLabels, retention: Retention) -> HashMap<String, String> {
    let mut metadata = HashMap::from([
        ("sha256".to_string(), sha256.to_string()),
        ("tier".to_string(), tier.as_str().to_string()),
        ("retention".to_string(), retention.label()),
    ]);
    let mut add = |name: &str, value: &Option<String>| {
        if let Some(value) = value {
            metadata.insert(name.to_string(), header_safe(value));
        }
    };
    add("sm3", &labels.sm3);
    add("case", &labels.case);
    add("unit", &labels.unit);
    add("trigger", &labels.trigger.map(|t| t.as_str().to_string()));
    metadata
}

/// Percent-encodes what an HTTP header cannot carry (case and unit ids
/// may be Chinese); hand-written because it is six lines.
fn header_safe(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' || byte == b' ' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Maps an SDK error to a store error that says whether a retry can help.
fn remote<E>(subject: String, error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => service.raw().status().is_server_error(),
        _ => false,
    };
    let message = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => aws_sdk_s3::error::DisplayErrorContext(&error).to_string(),
    };
    StoreError::Remote {
        subject,
        message,
        retryable,
    }
}

fn tier_target(config: &StoreConfig, tier: Tier) -> &TierTarget {
    match tier {
        Tier::Routine => &config.routine,
        Tier::Evidence => &config.evidence,
        Tier::Longterm => &config.longterm,
        Tier::Public => &config.public,
    }
}

fn normalize_prefix(prefix: String) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// Tiers that share a bucket must not share keys: a lifecycle rule on
/// the routine prefix would otherwise expire evidence.
fn check_disjoint(tiers: &HashMap<Tier, Location>) -> Result<(), StoreError> {
    for a in Tier::ALL {
        for b in Tier::ALL {
            if a as u8 >= b as u8 {
                continue;
            }
            let (la, lb) = (&tiers[&a], &tiers[&b]);
            if la.bucket_id() == lb.bucket_id()
                && (la.prefix.starts_with(&lb.prefix) || lb.prefix.starts_with(&la.prefix))
            {
                return Err(StoreError::Setting {
                    message: Text::new(
                        format!(
                            "{} 层与 {} 层共用存储桶 {}，且前缀 {:?} 与 {:?} 重叠；请为每层设置各自的前缀",
                            a.as_str(),
                            b.as_str(),
                            la.bucket,
                            la.prefix,
                            lb.prefix
                        ),
                        format!(
                            "tiers {} and {} share bucket {} with overlapping prefixes {:?} and {:?}; give each its own prefix",
                            a.as_str(),
                            b.as_str(),
                            la.bucket,
                            la.prefix,
                            lb.prefix
                        ),
                    ),
                });
            }
        }
    }
    Ok(())
}

fn upload_settings(config: &StoreConfig) -> Result<UploadSettings, StoreError> {
    let multipart = &config.multipart;
    let part_size = multipart.part_size_mib.saturating_mul(1 << 20);
    if part_size < MIN_PART_BYTES || part_size > (5 << 30) {
        return Err(StoreError::Setting {
            message: Text::new(
                format!(
                    "[store.multipart] part_size_mib = {} 必须在 5 到 5120 之间",
                    multipart.part_size_mib
                ),
                format!(
                    "[store.multipart] part_size_mib = {} must be between 5 and 5120",
                    multipart.part_size_mib
                ),
            ),
        });
    }
    let budget = multipart.memory_budget_mib.saturating_mul(1 << 20);
    if budget < part_size {
        return Err(StoreError::Setting {
            message: Text::new(
                format!(
                    "[store.multipart] memory_budget_mib = {} 至少要容纳一个 {} MiB 的分片",
                    multipart.memory_budget_mib, multipart.part_size_mib
                ),
                format!(
                    "[store.multipart] memory_budget_mib = {} must hold at least one part of {} MiB",
                    multipart.memory_budget_mib, multipart.part_size_mib
                ),
            ),
        });
    }
    if multipart.concurrency == 0 {
        return Err(StoreError::Setting {
            message: Text::new(
                "[store.multipart] concurrency 至少为 1",
                "[store.multipart] concurrency must be at least 1",
            ),
        });
    }
    if let Some(rate) = multipart.max_mib_per_second {
        if !(rate > 0.0) {
            return Err(StoreError::Setting {
                message: Text::new(
                    "[store.multipart] max_mib_per_second 必须大于 0",
                    "[store.multipart] max_mib_per_second must be above 0",
                ),
            });
        }
    }
    Ok(UploadSettings {
        threshold: multipart.threshold_mib.saturating_mul(1 << 20).max(1),
        part_size,
        parallel_parts: multipart.concurrency.min((budget / part_size) as usize).max(1),
        bytes_per_second: multipart.max_mib_per_second.map(|r| r * (1u64 << 20) as f64),
    })
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn endpoint_label(endpoint: &S3Endpoint) -> String {
    endpoint
        .endpoint
        .clone()
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| "s3".to_string())
}

fn endpoint_label_or(endpoint: &S3Endpoint, fallback: &str) -> String {
    endpoint.endpoint.clone().unwrap_or_else(|| fallback.to_string())
}

/// Builds a client from the config, falling back on the standard
/// `AWS_*` variables; no other credential source is consulted.
pub(crate) fn build_client(endpoint: &S3Endpoint) -> Result<Client, StoreError> {
    let region = endpoint
        .region
        .clone()
        .or_else(|| env_nonempty("AWS_REGION"))
        .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(Region::new(region))
        .force_path_style(endpoint.path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(REQUEST_ATTEMPTS))
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        );
    match (&endpoint.access_key_id, &endpoint.secret_access_key) {
        (Some(id), Some(secret)) => {
            builder = builder.credentials_provider(Credentials::new(id, secret, None, None, "evidence-config"));
        }
        (None, None) => {
            if env_nonempty("AWS_ACCESS_KEY_ID").is_none() || env_nonempty("AWS_SECRET_ACCESS_KEY").is_none() {
                return Err(StoreError::Setting {
                    message: Text::new(
                        "没有 S3 凭据：请设置 AWS_ACCESS_KEY_ID 和 AWS_SECRET_ACCESS_KEY，或在 [store] 中设置 access_key_id 和 secret_access_key",
                        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key_id and secret_access_key in [store]",
                    ),
                });
            }
            builder =
                builder.credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new());
        }
        _ => {
            return Err(StoreError::Setting {
                message: Text::new(
                    "[store] 只给出了 access_key_id 和 secret_access_key 中的一个；请两个都给，或都不给",
                    "[store] gives only one of access_key_id and secret_access_key; give both or neither",
                ),
            })
        }
    }
    let url = endpoint
        .endpoint
        .clone()
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL"));
    if let Some(url) = url {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
}

fn remove_orphaned_spool(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if !pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            tracing::info!(file = %entry.path().display(), "removing spool file of an interrupted write");
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The SHA-256 of each `part_size` part of an object, the last shorter.
struct PartDigests {
    part_size: u64,
    digests: Vec<[u8; 32]>,
}

/// Cuts a byte stream into parts of a fixed size and hashes each.
struct PartSplitter {
    part_size: u64,
    current: Sha256,
    filled: u64,
    digests: Vec<[u8; 32]>,
}

impl PartSplitter {
    fn new(part_size: u64) -> PartSplitter {
        PartSplitter {
            part_size,
            current: Sha256::new(),
            filled: 0,
            digests: Vec::new(),
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = (self.part_size - self.filled).min(bytes.len() as u64) as usize;
            self.current.update(&bytes[..room]);
            self.filled += room as u64;
            bytes = &bytes[room..];
            if self.filled == self.part_size {
                self.digests.push(std::mem::take(&mut self.current).finalize().into());
                self.filled = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<[u8; 32]> {
        if self.filled > 0 {
            self.digests.push(self.current.finalize().into());
        }
        self.digests
    }
}

/// Whole-object digests, hex.
struct Digests {
    sha256: String,
    sm3: String,
}

/// Reads a spool file once, hashing the whole (SHA-256 and SM3) and, when
/// `part_size` is given, each part; for writers whose caller gave no
/// digests, and objects too large for the configured part size.
async fn hash_spool(spool: &Path, part_size: Option<u64>) -> Result<(Vec<[u8; 32]>, Digests), StoreError> {
    let path = spool.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let io_error = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io_error)?;
        let mut buffer = vec![0u8; SPOOL_READ_BYTES];
        let mut sha256 = Sha256::new();
        let mut sm3 = Sm3::new();
        let mut parts = part_size.map(PartSplitter::new);
        loop {
            let n = file.read(&mut buffer).map_err(io_error)?;
            if n == 0 {
                break;
            }
            let chunk = &buffer[..n];
            sha256.update(chunk);
            sm3.update(chunk);
            if let Some(parts) = parts.as_mut() {
                parts.update(chunk);
            }
        }
        Ok((
            parts.map(PartSplitter::finish).unwrap_or_default(),
            Digests {
                sha256: hex::encode(sha256.finalize()),
                sm3: hex::encode(sm3.finalize()),
            },
        ))
    })
    .await
    .expect("hashing the spool does not panic")
}

struct S3Staged {
    store: S3Store,
    /// The spool file this writer keeps and removes, unless the caller
    /// named the file the bytes come from.
    spool: Option<PathBuf>,
    file: Option<File>,
    /// The file read at commit: the spool or the caller's file.
    source: PathBuf,
    /// Hashes each part as it is written, in the writer's thread: the
    /// caller (ingest) writes in parallel with its own hashing.
    parts: PartSplitter,
    /// The caller's digests of what it wrote, when it gave them.
    given: Option<Digests>,
    labels: ObjectLabels,
    bytes: u64,
}

impl Write for S3Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.file.as_mut() {
            Some(file) => file.write(buf)?,
            None => buf.len(),
        };
        self.parts.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for S3Staged {
    fn drop(&mut self) {
        if let Some(spool) = self.spool.take() {
            let _ = fs::remove_file(spool);
        }
    }
}

impl StagedObject for S3Staged {
    fn label(&mut self, labels: ObjectLabels) {
        self.labels = labels;
    }

    fn set_digests(&mut self, sha256: &str, sm3: &str) {
        self.given = Some(Digests {
            sha256: sha256.to_string(),
            sm3: sm3.to_string(),
        });
    }

    /// Stops spooling. The parts are hashed as they are written and sent
    /// from `path` at commit, each checked against its SHA-256 (see
    /// `upload`), so a file that changed after it was hashed is rejected.
    fn read_from(&mut self, path: &Path) {
        if self.bytes > 0 {
            return;
        }
        self.file = None;
        if let Some(spool) = self.spool.take() {
            let _ = fs::remove_file(spool);
        }
        self.source = path.to_path_buf();
    }

    fn commit(mut self: Box<Self>, tier: Tier, key: &str, sha256: &str) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        if let Some(file) = self.file.take() {
            drop(file);
        }
        let part_size = self.parts.part_size;
        let parts = PartDigests {
            part_size,
            digests: std::mem::replace(&mut self.parts, PartSplitter::new(part_size)).finish(),
        };
        let store = self.store.clone();
        let whole = match self.given.take() {
            Some(given) => given,
            None => store.block_on(hash_spool(&self.source, None))?.1,
        };
        if whole.sha256 != sha256 {
            return Err(StoreError::Mismatch {
                tier: tier.as_str(),
                key: key.to_string(),
                expected: sha256.to_string(),
                actual: whole.sha256,
            });
        }
        if let Some(given) = &self.labels.sm3 {
            if *given != whole.sm3 {
                return Err(StoreError::Mismatch {
                    tier: tier.as_str(),
                    key: format!("{key} (sm3)"),
                    expected: given.clone(),
                    actual: whole.sm3,
                });
            }
        }
        let mut labels = self.labels.clone();
        labels.sm3 = Some(whole.sm3);

        let source = self.source.clone();
        let info = store.block_on(store.put_verified(tier, key, &source, self.bytes, sha256, &parts, &labels))?;
        if tier == Tier::Evidence {
            if let Some(backup) = &store.inner.backup {
                backup.block_on(backup.put_verified(tier, key, &source, self.bytes, sha256, &parts, &labels))?;
                tracing::info!(key, "separate backup copy stored and verified");
            }
        }
        Ok(info)
    }
}

/// Reads a stored object by blocking on its body stream.
struct S3Reader {
    runtime: Arc<Runtime>,
    body: ByteStream,
    pending: Bytes,
    subject: String,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let next = self.runtime.block_on(self.body.try_next());
            match next {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(format!("{}: {e}", self.subject))),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

impl ObjectStore for S3Store {
    fn stage(&self) -> Result<Box<dyn StagedObject>, StoreError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = self
            .inner
            .spool_dir
            .join(format!("{}-{nanos}.part", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Box::new(S3Staged {
            store: self.clone(),
            spool: Some(path.clone()),
            file: Some(file),
            source: path,
            parts: PartSplitter::new(self.inner.upload.part_size),
            given: None,
            labels: ObjectLabels::default(),
            bytes: 0,
        }))
    }

    fn head(&self, tier: Tier, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        check_key(key)?;
        let location = self.location(tier)?;
        Ok(self.block_on(head(location, key))?.map(|found| ObjectInfo {
            tier,
            key: key.to_string(),
            bytes: found.bytes,
            location: location.url(key),
        }))
    }

    fn open(&self, tier: Tier, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        check_key(key)?;
        let location = self.location(tier)?;
        let result = self.block_on(
            location
                .client
                .get_object()
                .bucket(&location.bucket)
                .key(location.object_key(key))
                .send(),
        );
        match result {
            Ok(output) => Ok(Box::new(S3Reader {
                runtime: self.inner.runtime.clone(),
                body: output.body,
                pending: Bytes::new(),
                subject: location.url(key),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Err(StoreError::NotFound {
                tier: tier.as_str(),
                key: key.to_string(),
            }),
            Err(e) => Err(remote(location.url(key), e)),
        }
    }

    fn list(&self, tier: Tier, prefix: &str) -> Result<Vec<String>, StoreError> {
        let location = self.location(tier)?;
        let full_prefix = location.object_key(prefix);
        let mut keys = Vec::new();
        let mut pages = location
            .client
            .list_objects_v2()
            .bucket(&location.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = self.block_on(pages.next()) {
            let page = page.map_err(|e| remote(location.url(prefix), e))?;
            for object in page.contents() {
                let Some(name) = object.key() else { continue };
                let Some(key) = name.strip_prefix(&location.prefix) else {
                    continue;
                };
                if !key.ends_with(MANIFEST_SUFFIX) {
                    keys.push(key.to_string());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Copies on the server (CopyObject) with new metadata, then reads the
    /// copy back. A copy into the evidence tier, which also needs its
    /// backup, and objects too large for one CopyObject go through the
    /// product instead.
    fn copy(
        &self,
        from: Tier,
        key: &str,
        to: Tier,
        sha256: &str,
        labels: &ObjectLabels,
    ) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let source = self.location(from)?.clone();
        let target = self.location(to)?.clone();
        let found = self.block_on(head(&source, key))?.ok_or_else(|| StoreError::NotFound {
            tier: from.as_str(),
            key: key.to_string(),
        })?;
        let same_endpoint = source.endpoint == target.endpoint;
        if (to == Tier::Evidence && self.inner.backup.is_some())
            || found.bytes > COPY_OBJECT_MAX_BYTES
            || !same_endpoint
        {
            let mut reader = self.open(from, key)?;
            let mut staged = self.stage()?;
            io::copy(&mut reader, &mut staged).map_err(|source| StoreError::Io {
                path: PathBuf::from(key),
                source,
            })?;
            staged.label(labels.clone());
            return staged.commit(to, key, sha256);
        }
        if let Some(recorded) = found.metadata.get("sha256") {
            if recorded != sha256 {
                return Err(StoreError::Mismatch {
                    tier: from.as_str(),
                    key: key.to_string(),
                    expected: sha256.to_string(),
                    actual: recorded.clone(),
                });
            }
        }

        self.block_on(async {
            if let Some(existing) = head(&target, key).await? {
                if existing.metadata.get("sha256").map(String::as_str) != Some(sha256) {
                    return Err(StoreError::Mismatch {
                        tier: to.as_str(),
                        key: key.to_string(),
                        expected: sha256.to_string(),
                        actual: existing.metadata.get("sha256").cloned().unwrap_or_default(),
                    });
                }
            } else {
                let retention = labels
                    .retention
                    .unwrap_or_else(|| self.inner.retention.retention_for(to, chrono::Utc::now()));
                let mut labels = labels.clone();
                if labels.sm3.is_none() {
                    labels.sm3 = found.metadata.get("sm3").cloned();
                }
                let metadata = object_metadata(to, sha256, &labels, retention);
                let lock = self.lock_plan(&target, to, key, retention).await?;
                let request = target
                    .client
                    .copy_object()
                    .copy_source(format!(
                        "{}/{}",
                        source.bucket,
                        upload::encode_key(&source.object_key(key))
                    ))
                    .bucket(&target.bucket)
                    .key(target.object_key(key))
                    .metadata_directive(MetadataDirective::Replace)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .set_metadata(Some(metadata))
                    .set_storage_class(target.storage_class.clone());
                request.send().await.map_err(|e| remote(target.url(key), e))?;
                // Locked after the copy, by the calls every lock-capable
                // service accepts; some refuse lock headers on CopyObject.
                apply_lock(&target, key, lock).await?;
            }
            self.verify_read_back(&target, to, key, sha256, found.bytes).await
        })?;
        tracing::info!(
            from = from.as_str(),
            to = to.as_str(),
            key,
            "copied on the server and verified"
        );
        Ok(ObjectInfo {
            tier: to,
            key: key.to_string(),
            bytes: found.bytes,
            location: target.url(key),
        })
    }

    /// Deletes only when the object's `retention` metadata says its
    /// retention has ended; the server's own lock, where there is one,
    /// refuses as well.
    fn delete(&self, tier: Tier, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let location = self.location(tier)?.clone();
        let found = self
            .block_on(head(&location, key))?
            .ok_or_else(|| StoreError::NotFound {
                tier: tier.as_str(),
                key: key.to_string(),
            })?;
        if found.legal_hold {
            return Err(StoreError::LegalHold {
                tier: tier.as_str(),
                key: key.to_string(),
            });
        }
        let retention = found.metadata.get("retention").and_then(|r| Retention::parse_label(r));
        match retention {
            Some(retention) if retention.has_ended(chrono::Utc::now()) => {}
            Some(retention) => {
                return Err(StoreError::Retained {
                    tier: tier.as_str(),
                    key: key.to_string(),
                    until: retention.label(),
                })
            }
            None => {
                return Err(StoreError::Retained {
                    tier: tier.as_str(),
                    key: key.to_string(),
                    until: "unknown (no retention metadata)".to_string(),
                })
            }
        }
        self.block_on(async {
            for name in [key.to_string(), format!("{key}{MANIFEST_SUFFIX}")] {
                location
                    .client
                    .delete_object()
                    .bucket(&location.bucket)
                    .key(location.object_key(&name))
                    .send()
                    .await
                    .map_err(|e| remote(location.url(&name), e))?;
            }
            Ok::<(), StoreError>(())
        })?;
        tracing::info!(tier = tier.as_str(), key, "deleted after retention ended");
        Ok(())
    }

    fn capabilities(&self, tier: Tier) -> Result<Capabilities, StoreError> {
        self.capabilities_of(tier)
    }

    fn backup(&self) -> Option<&dyn ObjectStore> {
        self.inner.backup.as_ref().map(|b| b as &dyn ObjectStore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_safe_encodes_what_headers_cannot_carry() {
        assert_eq!(header_safe("CASE-1"), "CASE-1");
        assert_eq!(header_safe("卫"), "%E5%8D%AB");
        assert_eq!(header_safe("50%"), "50%25");
    }

    #[test]
    fn overlapping_prefixes_in_one_bucket_are_refused() {
        let mut config = StoreConfig {
            bucket: Some("b".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            ..StoreConfig::default()
        };
        config.routine.prefix = Some(String::new());
        let dir = tempfile::tempdir().unwrap();
        let error = S3Store::open(&config, dir.path(), None).err().expect("refused");
        assert!(error.to_string().contains("overlapping"), "{error}");
    }

    #[test]
    fn memory_budget_caps_parts_in_flight() {
        let mut config = StoreConfig::default();
        config.multipart.part_size_mib = 16;
        config.multipart.concurrency = 8;
        config.multipart.memory_budget_mib = 40;
        assert_eq!(upload_settings(&config).unwrap().parallel_parts, 2);
        config.multipart.memory_budget_mib = 8;
        assert!(upload_settings(&config).is_err());
    }
}
