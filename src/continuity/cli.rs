//! The `check` and `delay` commands, between the command line and the
//! stage: they load what the data directory holds and return one result.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::case::CaseRecord;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::i18n::Text;
use crate::runner::Services;

use super::{CheckOptions, CheckReport};

/// Length of a SHA-256 in lowercase hex.
const SHA256_HEX_LEN: usize = 64;

/// Runs `evidence check`. The data directory is read for its settings and,
/// when a catalog exists there, for recorded justifications and delay
/// filings; nothing is written to it.
pub fn check(
    data_dir: &Path,
    paths: &[PathBuf],
    case: Option<&CaseRecord>,
    decode: bool,
    timeline: Option<&Path>,
) -> Result<CheckReport, Text> {
    let config = Config::load(data_dir).map_err(|e| e.text())?;

    let mut justifications = HashMap::new();
    let mut filings = Vec::new();
    // `check` stores nothing, so it reads the configured catalog only when
    // one exists: a PostgreSQL URL, or a SQLite file already on disk.
    let catalog_exists = config.catalog.url().is_some() || config.catalog.sqlite_path(data_dir).is_file();
    if catalog_exists {
        let read = Catalog::open_configured(data_dir, &config.catalog).and_then(|catalog| {
            let justified = super::justify::latest_justifications(&catalog)?;
            Ok((justified, catalog.delay_filings()?))
        });
        match read {
            Ok((justified, filed)) => {
                justifications = justified;
                filings = filed;
            }
            Err(error) => tracing::warn!(%error, "catalog not read; justifications are not shown"),
        }
    }

    let options = CheckOptions {
        config: &config,
        case,
        decode,
        timeline,
        justifications,
        filings,
    };
    Ok(super::check(paths, &options))
}

/// Records a delay filing for an ingested recording, named by its SHA-256
/// or by the path of the uploaded file.
pub fn file_delay(
    services: &Services,
    recording: &str,
    reason: &str,
) -> Result<serde_json::Value, Text> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Text::new(
            "延迟说明的理由不能为空",
            "the reason of a delay filing must not be empty",
        ));
    }
    let is_hash =
        recording.len() == SHA256_HEX_LEN && recording.chars().all(|c| c.is_ascii_hexdigit());
    let sha256 = if is_hash {
        recording.to_ascii_lowercase()
    } else {
        hash_file(Path::new(recording))?
    };

    let known = services
        .catalog
        .recording(&sha256)
        .map_err(|e| Text::new(format!("目录库错误：{e}"), format!("catalog error: {e}")))?;
    if known.is_none() {
        return Err(Text::new(
            format!("录像 {recording}（SHA-256 {sha256}）尚未导入：请先用 evidence process 导入，再登记延迟说明"),
            format!("recording {recording} (SHA-256 {sha256}) is not ingested: ingest it with `evidence process` first, then file the delay"),
        ));
    }

    let filed_at = chrono::Utc::now().to_rfc3339();
    services
        .catalog
        .add_delay_filing(&sha256, reason, &services.actor, &filed_at)
        .map_err(|e| Text::new(format!("目录库错误：{e}"), format!("catalog error: {e}")))?;
    crate::audit::record(services, crate::audit::Action::DelayFiling, &sha256, serde_json::json!({ "reason": reason }))
        .map_err(|e| e.text())?;
    tracing::info!(%sha256, actor = %services.actor, "delay filing recorded");
    Ok(serde_json::json!({
        "sha256": sha256,
        "reason": reason,
        "actor": services.actor,
        "filed_at": filed_at,
    }))
}

fn hash_file(path: &Path) -> Result<String, Text> {
    let cannot_read = |e: std::io::Error| {
        Text::new(
            format!("既不是 SHA-256，也无法读取文件 {}：{e}", path.display()),
            format!(
                "neither a SHA-256 nor a readable file {}: {e}",
                path.display()
            ),
        )
    };
    let mut file = std::fs::File::open(path).map_err(cannot_read)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(cannot_read)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}
