//! Ingest: the first and only read of an upload.
//!
//! One pass over the uploaded file computes SHA-256 and SM3 (GB/T 32905)
//! while writing the evidence original into a staged object; the store then
//! reads the copy back and checks its SHA-256 before the object becomes
//! visible under its key, and the recording is registered in the catalog.
//! A recording's identity is its SHA-256: a file already ingested is
//! recognized and nothing is written twice. Whether the file can be parsed
//! does not matter here: every upload is kept, bit-exact.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sm3::Sm3;
use thiserror::Error;

use crate::catalog::{CatalogError, RecordingRow};
use crate::i18n::Text;
use crate::naming::NameInfo;
use crate::runner::Services;
use crate::store::{key_segment, Manifest, Source, StoreError, Tier, ToolVersions};

/// Chunk size of the single read pass: large enough for sequential disk
/// speed, and each chunk is hashed by both digests in parallel while the
/// next is read.
const CHUNK_BYTES: usize = 4 << 20;

/// Device segment of the key when neither name nor container names one.
const UNKNOWN_DEVICE: &str = "unknown-device";

/// Lock file in the data directory that serializes the step from "not in
/// the catalog" to "stored and registered" between processes.
// NOTE: the lock is advisory and local, so stations that share a data
// directory over a network file system may not honour it.
const INGEST_LOCK_FILE: &str = "ingest.lock";

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("cannot read upload {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the original of {path} into the store: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("upload {path} changed while it was read ({before} bytes before, {after} after, {read} read): it is probably still being copied; nothing was stored, run again once the copy is complete")]
    Changed {
        path: PathBuf,
        before: u64,
        after: u64,
        read: u64,
    },
    #[error("cannot lock {path} against other ingests: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

impl IngestError {
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Read { .. } => false,
            IngestError::Write { .. } => true,
            IngestError::Store(e) => e.is_retryable(),
            IngestError::Catalog(e) => e.is_retryable(),
            IngestError::Audit(e) => e.is_retryable(),
            IngestError::Changed { .. } => true,
            IngestError::Lock { .. } => false,
        }
    }

    /// Renders the message in both languages. Variants without a Chinese
    /// text of their own use the English one for both.
    pub fn text(&self) -> Text {
        match self {
            IngestError::Changed { path, before, after, read } => Text::new(
                format!(
                    "上传文件 {} 在读取过程中发生了变化（读取前 {before} 字节，读取后 {after} 字节，已读 {read} 字节），可能仍在复制中；未保存任何内容，请在复制完成后重新运行",
                    path.display()
                ),
                self.to_string(),
            ),
            IngestError::Lock { path, source } => Text::new(
                format!("无法锁定 {} 以排除其他导入进程：{source}", path.display()),
                self.to_string(),
            ),
            IngestError::Read { path, source } => Text::new(
                format!("无法读取上传文件 {}：{}", path.display(), crate::i18n::io_error_zh(source)),
                self.to_string(),
            ),
            IngestError::Write { path, source } => Text::new(
                format!("无法把 {} 的原始文件写入存储：{}", path.display(), crate::i18n::io_error_zh(source)),
                self.to_string(),
            ),
            IngestError::Store(StoreError::SourceChanged { path, offset, end }) => Text::new(
                format!(
                    "上传文件 {} 在计算哈希之后发生了变化（第 {offset}..{end} 字节不同），未保存其中任何内容；可能仍在复制中，请在复制完成后重新运行",
                    path.display()
                ),
                self.to_string(),
            ),
            IngestError::Store(e) => e.text(),
            IngestError::Audit(e) => e.text(),
            IngestError::Catalog(e) => Text::new(format!("目录数据库出错：{e}"), e.to_string()),
        }
    }
}

/// The outcome of ingesting one upload.
#[derive(Clone, Debug, Serialize)]
pub struct Ingested {
    pub sha256: String,
    pub sm3: String,
    pub bytes: u64,
    pub tier: Tier,
    pub key: String,
    /// Location of the original: a file path for the local store.
    pub location: String,
    /// False when the catalog already held this recording.
    pub is_new: bool,
    pub ingested_at: DateTime<Utc>,
}

/// Computes the SHA-256 of bytes in memory, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Ingests one upload: hash, store, verify, register.
pub fn ingest(
    services: &Services,
    path: &Path,
    name: Option<&NameInfo>,
    progress: Option<&ProgressBar>,
) -> Result<Ingested, IngestError> {
    let read_error = |source| IngestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    let now = Utc::now();

    let mut staged = services.store.stage()?;
    staged.read_from(path);
    let (sha256, sm3, bytes) = copy_and_hash(&mut file, &mut *staged, progress).map_err(|e| match e {
        CopyError::Read(source) => read_error(source),
        CopyError::Write(source) => IngestError::Write {
            path: path.to_path_buf(),
            source,
        },
    })?;
    tracing::info!(%sha256, bytes, "hashed");
    let after = file.metadata().map_err(read_error)?;
    if after.len() != metadata.len() || bytes != metadata.len() || after.modified().ok() != metadata.modified().ok() {
        return Err(IngestError::Changed {
            path: path.to_path_buf(),
            before: metadata.len(),
            after: after.len(),
            read: bytes,
        });
    }

    // Another process may be storing the same recording under another
    // name right now: the lookup and the commit must not interleave.
    let _lock = lock_ingest(&services.data_dir)?;
    if let Some(existing) = services.catalog.recording(&sha256)? {
        services.catalog.record_sighting(&sha256, &path.display().to_string(), &now.to_rfc3339())?;
        let tier = Tier::parse(&existing.tier).unwrap_or(Tier::Routine);
        // A stored original that has gone missing is written again from
        // this upload, which has the same SHA-256. Nothing is overwritten,
        // and the evidence is back in the store, not only in the catalog.
        let (location, restored) = match services.store.head(tier, &existing.key)? {
            Some(info) => {
                drop(staged);
                (info.location, false)
            }
            None => {
                staged.set_digests(&sha256, &sm3);
                let info = staged.commit(tier, &existing.key, &sha256)?;
                // A permitted deletion removed the manifest too; a copy
                // deleted behind the product's back may have left it.
                let manifest =
                    original_manifest(services, path, &metadata, tier, &existing.key, (&sha256, &sm3, bytes), now);
                store_manifest_once(services, &manifest)?;
                tracing::warn!(%sha256, tier = tier.as_str(), key = %existing.key, "stored original was missing; stored again from this upload");
                (info.location, true)
            }
        };
        record_ingest(services, &sha256, tier, &existing.key, existing.bytes)?;
        tracing::info!(%sha256, key = %existing.key, "already ingested");
        return Ok(Ingested {
            sha256,
            sm3,
            bytes,
            tier,
            key: existing.key,
            location,
            is_new: restored,
            ingested_at: existing.ingested_at.parse().unwrap_or(now),
        });
    }

    let tier = services.ingest_tier;
    let key = original_key(path, name, &sha256, now, services.config.timezone());
    staged.set_digests(&sha256, &sm3);
    let info = staged.commit(tier, &key, &sha256)?;
    tracing::info!(%sha256, tier = tier.as_str(), key = %key, "stored and verified");

    let file_name = file_name_of(path);
    let manifest = original_manifest(services, path, &metadata, tier, &key, (&sha256, &sm3, bytes), now);
    store_manifest_once(services, &manifest)?;

    services.catalog.insert_recording(&RecordingRow {
        sha256: sha256.clone(),
        sm3: sm3.clone(),
        bytes,
        tier: tier.as_str().into(),
        key: key.clone(),
        file_name,
        ingested_at: now.to_rfc3339(),
        actor: services.actor.clone(),
        readable: true,
        reason: None,
        device: None,
        officer: None,
        start: None,
        start_source: None,
        probe_json: None,
    })?;
    services.catalog.record_sighting(&sha256, &path.display().to_string(), &now.to_rfc3339())?;
    record_ingest(services, &sha256, tier, &key, bytes)?;

    Ok(Ingested {
        sha256,
        sm3,
        bytes,
        tier,
        key,
        location: info.location,
        is_new: true,
        ingested_at: now,
    })
}

/// Stores the manifest; one left by an earlier run that was killed before
/// registering the recording is kept when it describes the same bytes,
/// since its time differs and nothing is ever overwritten.
/// Takes the data directory's ingest lock, held until the returned file is
/// dropped; the kernel releases it when a process dies, so a killed ingest
/// never blocks the next.
fn lock_ingest(data_dir: &Path) -> Result<File, IngestError> {
    let path = data_dir.join(INGEST_LOCK_FILE);
    let lock_error = |source| IngestError::Lock {
        path: path.clone(),
        source,
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    file.lock().map_err(lock_error)?;
    Ok(file)
}

/// Builds the custody record of an original stored from the upload at
/// `path`; `digests` are its SHA-256, SM3 and size.
fn original_manifest(
    services: &Services,
    path: &Path,
    metadata: &std::fs::Metadata,
    tier: Tier,
    key: &str,
    digests: (&str, &str, u64),
    now: DateTime<Utc>,
) -> Manifest {
    let (sha256, sm3, bytes) = digests;
    Manifest {
        artefact: "original".into(),
        tier,
        key: key.to_string(),
        sha256: sha256.to_string(),
        sm3: sm3.to_string(),
        bytes,
        source: Source {
            path: path.display().to_string(),
            file_name: file_name_of(path),
            modified: metadata.modified().ok().map(DateTime::<Utc>::from),
            recordings: Vec::new(),
        },
        tools: ToolVersions::current(),
        created_at: now,
        actor: services.actor.clone(),
    }
}

fn store_manifest_once(services: &Services, manifest: &Manifest) -> Result<(), IngestError> {
    match manifest.store(services.store.as_ref()) {
        Ok(_) => Ok(()),
        Err(error @ StoreError::Mismatch { .. }) => {
            match crate::store::retention::read_manifest(services.store.as_ref(), manifest.tier, &manifest.key) {
                Ok(existing) if existing.sha256 == manifest.sha256 => Ok(()),
                _ => Err(error.into()),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Logs the ingest in the audit chain once per recording, also when a
/// killed run registered the recording but did not get to log it.
fn record_ingest(services: &Services, sha256: &str, tier: Tier, key: &str, bytes: u64) -> Result<(), IngestError> {
    let detail = serde_json::json!({ "tier": tier.as_str(), "key": key, "bytes": bytes });
    crate::audit::record_once(services, crate::audit::Action::Ingest, sha256, detail)?;
    Ok(())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Streams `input` into `output`, hashing each chunk with SHA-256 and SM3
/// on two threads while the chunk is written and the next one is read;
/// returns both digests and the size. SM3 is the slowest of these, so it
/// sets the pace and everything else hides behind it.
fn copy_and_hash(
    input: &mut (dyn Read + Send),
    output: &mut (dyn Write + Send),
    progress: Option<&ProgressBar>,
) -> Result<(String, String, u64), CopyError> {
    let mut sha256 = Sha256::new();
    let mut sm3 = Sm3::new();
    let mut current = vec![0u8; CHUNK_BYTES];
    let mut next = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    let mut n = read_full(input, &mut current).map_err(CopyError::Read)?;
    while n > 0 {
        let chunk = &current[..n];
        let (read, (written, ())) = rayon::join(
            || read_full(input, &mut next),
            || {
                rayon::join(
                    || output.write_all(chunk),
                    || {
                        rayon::join(|| sha256.update(chunk), || sm3.update(chunk));
                    },
                )
            },
        );
        written.map_err(CopyError::Write)?;
        total += n as u64;
        if let Some(bar) = progress {
            bar.set_position(total);
        }
        n = read.map_err(CopyError::Read)?;
        std::mem::swap(&mut current, &mut next);
    }
    output.flush().map_err(CopyError::Write)?;
    Ok((hex::encode(sha256.finalize()), hex::encode(sm3.finalize()), total))
}

/// Fills the buffer unless the input ends first; retries interrupted reads.
fn read_full(input: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Builds `originals/YYYY/MM/DD/DEVICE/SHA256.ext`. The date is the local
/// recording date from the file name when it has one, else the upload date,
/// so that the same upload maps to the same key on a rerun.
fn original_key(
    path: &Path,
    name: Option<&NameInfo>,
    sha256: &str,
    now: DateTime<Utc>,
    timezone: chrono_tz::Tz,
) -> String {
    let date = name
        .and_then(|n| n.local_start)
        .map(|t| t.date())
        .unwrap_or_else(|| now.with_timezone(&timezone).date_naive());
    let device = name
        .and_then(|n| n.device.as_deref())
        .map(key_segment)
        .unwrap_or_else(|| UNKNOWN_DEVICE.to_string());
    let extension = path
        .extension()
        .map(|e| key_segment(&e.to_string_lossy().to_ascii_lowercase()))
        .filter(|e| e.len() <= 8 && e != "unknown")
        .unwrap_or_else(|| "bin".to_string());
    format!("originals/{}/{device}/{sha256}.{extension}", date.format("%Y/%m/%d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_digests_match_known_vectors() {
        let mut output = Vec::new();
        let (sha256, sm3, bytes) = copy_and_hash(&mut &b"abc"[..], &mut output, None).ok().unwrap();
        assert_eq!(bytes, 3);
        assert_eq!(output, b"abc");
        assert_eq!(sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // GB/T 32905-2016, example A.1.
        assert_eq!(sm3, "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
    }

    #[test]
    fn key_uses_name_date_and_device() {
        let name = crate::naming::parse_file_name(
            "HB0631_130631001_20240501100000_0001.MP4",
            &[],
            chrono_tz::Asia::Shanghai,
        );
        let key = original_key(
            Path::new("/in/HB0631_130631001_20240501100000_0001.MP4"),
            name.as_ref(),
            "ab",
            Utc::now(),
            chrono_tz::Asia::Shanghai,
        );
        assert_eq!(key, "originals/2024/05/01/HB0631/ab.mp4");
    }

    #[test]
    fn key_without_name_uses_upload_date_and_unknown_device() {
        let now: DateTime<Utc> = "2024-05-01T20:00:00Z".parse().unwrap();
        let key = original_key(Path::new("/in/x y"), None, "ab", now, chrono_tz::Asia::Shanghai);
        assert_eq!(key, "originals/2024/05/02/unknown-device/ab.bin");
    }
}
