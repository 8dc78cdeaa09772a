//! Settings: one TOML file, overridable by environment variables.
//!
//! Every command works on one data directory that holds the catalog
//! (`catalog.sqlite`), the local object store (`store/`) and, optionally,
//! `config.toml`. The directory comes from `--data-dir`, else
//! `EVIDENCE_DATA_DIR`, else `evidence-data` in the working directory, so
//! that all commands of one shell see the same catalog and store.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::i18n::Text;
use crate::naming::NamePattern;

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "evidence-data";

/// The bureau's local time zone: file names and case records of Chinese
/// body cameras carry local time without an offset.
pub const DEFAULT_TIMEZONE: &str = "Asia/Shanghai";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ConfigError {
    /// Returns the error in both languages. The TOML parser's own message
    /// names the line and the field, so it is quoted as it is.
    pub fn text(&self) -> Text {
        let zh = match self {
            ConfigError::Read { path, source } => format!(
                "无法读取配置文件 {}：{}",
                path.display(),
                crate::i18n::io_error_zh(source)
            ),
            ConfigError::Invalid { path, message } => {
                format!("配置文件 {} 无效：{message}", path.display())
            }
        };
        Text::new(zh, self.to_string())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Time zone of file names and case records without an offset.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Acting person recorded in manifests and the audit log. Defaults to
    /// the login name.
    #[serde(default)]
    pub actor: Option<String>,
    /// Extra file-name patterns, tried before the built-in presets.
    #[serde(default)]
    pub name_patterns: Vec<NamePattern>,
    /// A working-day calendar file for years the built-in calendar does
    /// not know.
    #[serde(default)]
    pub calendar_file: Option<PathBuf>,
    /// Tier that new originals are stored in.
    #[serde(default = "default_ingest_tier")]
    pub ingest_tier: String,
    /// Object store location and retention: `[store]`.
    #[serde(default)]
    pub store: StoreConfig,
    /// Roles each actor holds: `[roles]`, such as `li = ["approver"]`.
    #[serde(default)]
    pub roles: Roles,
    /// Disclosure settings: `[disclosure]` (the watermark text).
    #[serde(default)]
    pub disclosure: crate::disclose::DisclosureConfig,
    /// Catalog location: `[catalog]`.
    #[serde(default)]
    pub catalog: CatalogConfig,
}

/// `[roles]`: the roles of each person, and whether the table is there at
/// all, since an empty `[roles]` gives nobody a role while no `[roles]`
/// is a single-person installation.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    pub people: std::collections::BTreeMap<String, Vec<crate::disclose::Role>>,
    pub configured: bool,
}

impl std::ops::Deref for Roles {
    type Target = std::collections::BTreeMap<String, Vec<crate::disclose::Role>>;

    fn deref(&self) -> &Self::Target {
        &self.people
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Roles, D::Error> {
        Ok(Roles {
            people: Deserialize::deserialize(deserializer)?,
            configured: true,
        })
    }
}

/// The catalog: a SQLite file (the default, `DATA_DIR/catalog.sqlite`), or
/// a PostgreSQL database that several machines share.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// SQLite file, relative to the data directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (or with `?host=/socket/dir`);
    /// `EVIDENCE_CATALOG_URL` overrides it.
    #[serde(default)]
    pub url: Option<String>,
}

impl CatalogConfig {
    /// The PostgreSQL URL from the environment or the file, if any.
    pub fn url(&self) -> Option<String> {
        std::env::var("EVIDENCE_CATALOG_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| self.url.clone())
    }

    /// The SQLite file used when no URL is set.
    pub fn sqlite_path(&self, data_dir: &Path) -> PathBuf {
        match &self.path {
            Some(path) if path.is_relative() => data_dir.join(path),
            Some(path) => path.clone(),
            None => data_dir.join("catalog.sqlite"),
        }
    }
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_string()
}

fn default_ingest_tier() -> String {
    "routine".to_string()
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timezone: default_timezone(),
            actor: None,
            name_patterns: Vec::new(),
            calendar_file: None,
            ingest_tier: default_ingest_tier(),
            store: StoreConfig::default(),
            roles: Default::default(),
            disclosure: Default::default(),
            catalog: Default::default(),
        }
    }
}

impl Config {
    /// Loads `config.toml` from the data directory, or the defaults when
    /// there is none.
    pub fn load(data_dir: &Path) -> Result<Config, ConfigError> {
        let path = std::env::var_os("EVIDENCE_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("config.toml"));
        if !path.exists() {
            return Ok(Config::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Some(file) = &config.calendar_file {
            if file.is_relative() {
                config.calendar_file = Some(data_dir.join(file));
            }
        }
        for pattern in &config.name_patterns {
            pattern.compile().map_err(|message| ConfigError::Invalid {
                path: path.clone(),
                message,
            })?;
        }
        config
            .timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| ConfigError::Invalid {
                path: path.clone(),
                message: format!("unknown time zone {:?}", config.timezone),
            })?;
        Ok(config)
    }

    pub fn timezone(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai)
    }

    /// Returns the acting person: `EVIDENCE_ACTOR`, else the config's
    /// actor, else the login name.
    pub fn actor(&self) -> String {
        if let Ok(actor) = std::env::var("EVIDENCE_ACTOR") {
            if !actor.is_empty() {
                return actor;
            }
        }
        if let Some(actor) = &self.actor {
            return actor.clone();
        }
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_string())
    }
}

/// Which object store backend keeps the tiers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory under the data directory: no server needed.
    #[default]
    Local,
    /// Any S3-compatible service.
    S3,
}

/// How long evidence footage is kept: the case file's retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum EvidenceRetention {
    /// Whole years from the time the object was stored.
    Years(u32),
    /// The word `"permanent"`.
    Permanent(PermanentWord),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermanentWord {
    Permanent,
}

impl Default for EvidenceRetention {
    /// Permanent until the bureau configures its case-file retention:
    /// keeping too long loses nothing, deleting too early cannot be undone.
    fn default() -> EvidenceRetention {
        EvidenceRetention::Permanent(PermanentWord::Permanent)
    }
}

/// Whether objects are written under S3 object lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLockUse {
    /// Use object lock where the bucket supports it, say so where not.
    #[default]
    Auto,
    /// Refuse to write to a bucket without object lock.
    Required,
    /// Never ask for object lock.
    Off,
}

/// Where one tier lives in S3.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTarget {
    /// Bucket; the store's `bucket` when absent.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Key prefix; `TIER/` when absent.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Storage class (`STANDARD`, `STANDARD_IA`, `GLACIER_IR`, ...).
    #[serde(default)]
    pub storage_class: Option<String>,
}

/// The separate copy of the evidence tier (Article 12).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupTarget {
    /// Another endpoint; the primary one when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: Option<bool>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    pub bucket: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub storage_class: Option<String>,
}

/// Multipart upload settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultipartConfig {
    /// Objects at least this large go up in parts.
    #[serde(default = "default_threshold_mib")]
    pub threshold_mib: u64,
    #[serde(default = "default_part_mib")]
    pub part_size_mib: u64,
    /// Parts in flight at once, further bounded by the memory budget.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Memory that part buffers may take in all.
    #[serde(default = "default_memory_mib")]
    pub memory_budget_mib: u64,
    /// Upload rate limit for stations on a shared link; none when absent.
    #[serde(default)]
    pub max_mib_per_second: Option<f64>,
}

/// The object store: backend, S3 targets, retention.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: Backend,
    /// `http(s)://host:port`; `AWS_ENDPOINT_URL` when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `AWS_REGION` when absent, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style addressing (`host/bucket/key`), which most self-hosted
    /// services need.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Credentials; the standard `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` when absent.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Bucket of every tier that names none.
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub routine: TierTarget,
    #[serde(default)]
    pub evidence: TierTarget,
    #[serde(default)]
    pub longterm: TierTarget,
    #[serde(default)]
    pub public: TierTarget,
    #[serde(default)]
    pub backup: Option<BackupTarget>,
    #[serde(default)]
    pub multipart: MultipartConfig,
    #[serde(default)]
    pub evidence_retention: EvidenceRetention,
    #[serde(default)]
    pub object_lock: ObjectLockUse,
    /// Settings of the local backend.
    #[serde(default)]
    pub local: LocalTarget,
}

/// `[store.local]`: the local backend's own settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTarget {
    /// A second directory, ideally on another disk, that receives a
    /// separate verified copy of the evidence tier (Article 12).
    #[serde(default)]
    pub backup_dir: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            backend: Backend::Local,
            endpoint: None,
            region: None,
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            bucket: None,
            routine: TierTarget::default(),
            evidence: TierTarget::default(),
            longterm: TierTarget::default(),
            public: TierTarget::default(),
            backup: None,
            multipart: MultipartConfig::default(),
            evidence_retention: EvidenceRetention::default(),
            object_lock: ObjectLockUse::default(),
            local: LocalTarget::default(),
        }
    }
}

impl StoreConfig {
    /// The primary endpoint as configured.
    pub fn primary_endpoint(&self) -> S3Endpoint {
        S3Endpoint {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }

    /// The backup's endpoint: its own settings, else the primary's.
    pub fn backup_endpoint(&self, backup: &BackupTarget) -> S3Endpoint {
        if backup.endpoint.is_none() {
            return self.primary_endpoint();
        }
        S3Endpoint {
            endpoint: backup.endpoint.clone(),
            region: backup.region.clone().or_else(|| self.region.clone()),
            path_style: backup.path_style.unwrap_or(self.path_style),
            access_key_id: backup.access_key_id.clone(),
            secret_access_key: backup.secret_access_key.clone(),
        }
    }
}

/// One S3 endpoint and its credentials, resolved from the config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct S3Endpoint {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Default for MultipartConfig {
    fn default() -> MultipartConfig {
        MultipartConfig {
            threshold_mib: default_threshold_mib(),
            part_size_mib: default_part_mib(),
            concurrency: default_concurrency(),
            memory_budget_mib: default_memory_mib(),
            max_mib_per_second: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Below this a single PUT carries the whole object's SHA-256, which the
/// server checks on receipt; parts only pay off above it.
fn default_threshold_mib() -> u64 {
    64
}

/// 16 MiB parts keep a 1 GB recording at 60-odd parts, far below the
/// 10,000-part limit, and a retried part cheap.
fn default_part_mib() -> u64 {
    16
}

/// Enough parts in flight to fill a local link; more only adds memory.
fn default_concurrency() -> usize {
    8
}

/// Six 16 MiB parts at once, which upload a 1 GB recording to a local
/// Garage as fast as eight did, and leave room for the rest of the
/// process (about 28 MiB: libraries, runtime threads, ingest's two read
/// chunks) inside 128 MiB.
fn default_memory_mib() -> u64 {
    96
}

/// Resolves the data directory from the option, the environment or the default.
pub fn resolve_data_dir(option: Option<PathBuf>) -> PathBuf {
    option
        .or_else(|| std::env::var_os("EVIDENCE_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}
