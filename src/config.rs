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

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Time zone of file names and case records without an offset.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Who is acting, for manifests and the audit log; defaults to the
    /// login name.
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

    /// The acting person: the config's actor, else `EVIDENCE_ACTOR`, else
    /// the login name.
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

/// Resolves the data directory from the option, the environment or the default.
pub fn resolve_data_dir(option: Option<PathBuf>) -> PathBuf {
    option
        .or_else(|| std::env::var_os("EVIDENCE_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}
