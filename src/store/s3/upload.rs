//! Sending a spooled object: one PUT, or a resumable multipart upload.
//!
//! A single PUT carries the object's SHA-256 as its checksum, which the
//! server checks on receipt. A multipart upload sends fixed-size parts,
//! several at once but never more than the memory budget holds, each with
//! its SHA-256, computed when the bytes were written (not read back from
//! the spool), which the server checks per part; the server's composite
//! checksum of the completed object (the SHA-256 of the part SHA-256s,
//! `-N`) is then compared by the caller. Payloads are not signed: the
//! signed checksum header already binds each body, and signing would hash
//! every byte once more. Every acknowledged part is recorded in the
//! catalog with the upload id before the next step, so a run that was
//! interrupted (the server stopped, the link dropped, the process killed)
//! continues the same upload: parts the server lists with the recorded
//! ETag, and whose bytes in the new spool have the recorded SHA-256, are
//! not sent again.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockLegalHoldStatus, ObjectLockMode,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::i18n::Text;
use crate::catalog::{Catalog, PartRow};

use super::{remote, Location, LockPlan, UploadSettings, MAX_PARTS};
use crate::store::StoreError;

/// What every upload of one object carries.
pub(super) struct WriteSpec {
    pub metadata: HashMap<String, String>,
    pub lock: LockPlan,
}

/// Spreads sends so that the average rate stays under a limit; a station
/// on a shared link must leave room for others.
pub(super) struct RateLimiter {
    bytes_per_second: Option<f64>,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(bytes_per_second: Option<f64>) -> RateLimiter {
        RateLimiter {
            bytes_per_second,
            next_free: Mutex::new(None),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn reserve(&self, bytes: u64) {
        let Some(rate) = self.bytes_per_second else { return };
        let start = {
            let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + Duration::from_secs_f64(bytes as f64 / rate));
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

pub(super) fn base64_of_hex(hex_digest: &str) -> String {
    BASE64.encode(hex::decode(hex_digest).unwrap_or_default())
}


/// Length of a SHA-256 in base64; a recorded part checksum of another
/// length was written by an earlier version that sent CRC32C.
const SHA256_BASE64_LEN: usize = 44;

/// The composite checksum S3 reports for a multipart object with SHA-256
/// part checksums: base64 of the SHA-256 of the concatenated raw part
/// digests, then `-` and the part count.
pub(super) fn composite_sha256(parts: &[[u8; 32]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    format!("{}-{}", BASE64.encode(hasher.finalize()), parts.len())
}

pub(super) fn smithy_time(time: chrono::DateTime<chrono::Utc>) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs(time.timestamp())
}

/// URL-encodes a key for `x-amz-copy-source`, keeping `/`; hand-written
/// because the SDK leaves this header to the caller.
pub(super) fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn read_range(spool: &Path, offset: u64, length: usize) -> Result<Bytes, StoreError> {
    let mut buffer = vec![0u8; length];
    read_exact_at(spool, offset, &mut buffer)?;
    Ok(Bytes::from(buffer))
}

fn read_exact_at(source: &Path, offset: u64, buffer: &mut [u8]) -> Result<(), StoreError> {
    let io_error = |source_error| StoreError::Io {
        path: source.to_path_buf(),
        source: source_error,
    };
    let file = std::fs::File::open(source).map_err(io_error)?;
    file.read_exact_at(buffer, offset).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => StoreError::SourceChanged {
            path: source.to_path_buf(),
            offset,
            end: offset + buffer.len() as u64,
        },
        _ => io_error(e),
    })
}

/// Part buffers of one upload, reused from part to part. Each freed
/// buffer of many megabytes would otherwise stay in the allocator's
/// per-thread arenas (glibc raises its mmap threshold after the first
/// free), so that resident memory grew to twice the budget.
#[derive(Default)]
struct PartPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// A part's bytes on their way to the server. Its buffer returns to the
/// pool when the request drops the body.
struct PooledPart {
    buffer: Vec<u8>,
    pool: Arc<PartPool>,
}

impl AsRef<[u8]> for PooledPart {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledPart {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.pool.free.lock().unwrap_or_else(|e| e.into_inner()).push(buffer);
    }
}

impl PartPool {
    /// Reads `length` bytes at `offset` into a pooled buffer and, when
    /// `digest` is given, checks them against the part's SHA-256 taken
    /// when they were written. The source may be the caller's own file,
    /// which could have changed since, and a server that does not check
    /// part checksums would store the changed bytes.
    fn read(
        pool: &Arc<PartPool>,
        source: &Path,
        offset: u64,
        length: usize,
        digest: Option<&[u8; 32]>,
    ) -> Result<Bytes, StoreError> {
        let mut buffer = pool.free.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        buffer.resize(length, 0);
        read_exact_at(source, offset, &mut buffer)?;
        if digest.is_some_and(|digest| Sha256::digest(&buffer).as_slice() != digest) {
            return Err(StoreError::SourceChanged {
                path: source.to_path_buf(),
                offset,
                end: offset + length as u64,
            });
        }
        Ok(Bytes::from_owner(PooledPart {
            buffer,
            pool: pool.clone(),
        }))
    }
}

/// Sends an object below the multipart threshold in one PUT.
pub(super) async fn put_single(
    location: &Location,
    key: &str,
    spool: &Path,
    sha256: &str,
    write: &WriteSpec,
    limiter: &RateLimiter,
) -> Result<(), StoreError> {
    let size = std::fs::metadata(spool)
        .map_err(|source| StoreError::Io {
            path: spool.to_path_buf(),
            source,
        })?
        .len();
    let body = read_range(spool, 0, size as usize)?;
    if hex::encode(Sha256::digest(&body)) != sha256 {
        return Err(StoreError::SourceChanged {
            path: spool.to_path_buf(),
            offset: 0,
            end: size,
        });
    }
    limiter.reserve(size).await;
    let mut request = location
        .client
        .put_object()
        .bucket(&location.bucket)
        .key(location.object_key(key))
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(base64_of_hex(sha256))
        .set_metadata(Some(write.metadata.clone()))
        .set_storage_class(location.storage_class.clone())
        .body(ByteStream::from(body));
    match write.lock {
        LockPlan::None => {}
        LockPlan::Compliance(until) => {
            request = request
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(smithy_time(until));
        }
        LockPlan::LegalHold => request = request.object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On),
    }
    request
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| remote(location.url(key), e))?;
    Ok(())
}

/// One multipart upload of a spooled object.
pub(super) struct Multipart<'a> {
    pub location: &'a Location,
    pub key: &'a str,
    pub spool: &'a Path,
    pub size: u64,
    pub sha256: &'a str,
    /// SHA-256 of each part, `part_size` bytes each but the last.
    pub parts: &'a [[u8; 32]],
    pub part_size: u64,
    pub write: &'a WriteSpec,
    pub settings: UploadSettings,
    pub catalog: Option<&'a Catalog>,
    pub limiter: &'a Arc<RateLimiter>,
}

fn catalog_error(error: crate::catalog::CatalogError) -> StoreError {
    StoreError::Remote {
        subject: "catalog".to_string(),
        retryable: error.is_retryable(),
        message: error.to_string(),
    }
}

/// The part size of an upload: the configured one, raised when the
/// object would otherwise need more than S3's 10,000 parts.
pub(super) fn part_size_for(settings: &UploadSettings, size: u64) -> u64 {
    settings.part_size.max(size.div_ceil(MAX_PARTS))
}

fn part_checksum(digest: &[u8; 32]) -> String {
    BASE64.encode(digest)
}

impl Multipart<'_> {
    /// Sends the object and completes the upload; the caller verifies.
    /// Returns whether the server confirmed every part sent in this run by
    /// echoing its SHA-256, which a server that checks part checksums does.
    pub async fn run(&self) -> Result<bool, StoreError> {
        let target = self.location.url(self.key);
        let part_size = self.part_size;
        let part_count = self.size.div_ceil(part_size).max(1) as i32;
        if self.parts.len() != part_count as usize {
            return Err(StoreError::Setting {
                message: Text::new(
                    format!(
                        "{target}：有 {} 个分片校验和，但按每片 {part_size} 字节应有 {part_count} 个分片",
                        self.parts.len()
                    ),
                    format!(
                        "{target}: {} part checksums for {part_count} parts of {part_size} bytes",
                        self.parts.len()
                    ),
                ),
            });
        }

        let (upload_id, mut done) = match self.resumable(&target, part_size).await? {
            Some(resumed) => resumed,
            None => (self.create(&target, part_size).await?, HashMap::new()),
        };

        let mut kept = 0u64;
        for number in 1..=part_count {
            let Some(part) = done.get(&number) else { continue };
            let (_, length) = self.range(number, part_size);
            if part.sha256 == part_checksum(&self.parts[number as usize - 1]) && part.bytes == length as u64 {
                kept += 1;
            } else {
                tracing::warn!(%target, part = number, "recorded part differs from the spool; sending it again");
                done.remove(&number);
            }
        }
        if kept > 0 {
            tracing::info!(%target, %upload_id, parts_kept = kept, parts = part_count, "resuming multipart upload");
        }

        let (sent, confirmed) = self.send_missing(&upload_id, part_size, part_count, &done).await?;
        done.extend(sent.into_iter().map(|p| (p.part_number, p)));

        let mut parts: Vec<&PartRow> = done.values().collect();
        parts.sort_by_key(|p| p.part_number);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.part_number)
                            .e_tag(&p.etag)
                            .checksum_sha256(&p.sha256)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.location
            .client
            .complete_multipart_upload()
            .bucket(&self.location.bucket)
            .key(self.location.object_key(self.key))
            .upload_id(&upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| remote(target.clone(), e))?;
        if let Some(catalog) = self.catalog {
            catalog
                .finish_upload(&upload_id, kept, &chrono::Utc::now().to_rfc3339())
                .map_err(catalog_error)?;
        }
        tracing::info!(%target, %upload_id, parts = part_count, parts_kept = kept, confirmed, "multipart upload complete");
        Ok(confirmed)
    }

    fn range(&self, number: i32, part_size: u64) -> (u64, usize) {
        let offset = (number as u64 - 1) * part_size;
        (offset, part_size.min(self.size - offset) as usize)
    }

    /// Finds a recorded upload of these bytes that the server still holds,
    /// with the parts it acknowledged.
    async fn resumable(
        &self,
        target: &str,
        part_size: u64,
    ) -> Result<Option<(String, HashMap<i32, PartRow>)>, StoreError> {
        let Some(catalog) = self.catalog else { return Ok(None) };
        let Some(upload) = catalog.open_upload(target, self.sha256).map_err(catalog_error)? else {
            return Ok(None);
        };
        if upload.part_size != part_size {
            tracing::info!(%target, upload_id = %upload.upload_id, "part size changed since the interrupted upload; starting anew");
            return Ok(None);
        }
        let recorded = catalog.parts(&upload.upload_id).map_err(catalog_error)?;
        if recorded.iter().any(|p| p.sha256.len() != SHA256_BASE64_LEN) {
            // Its parts carry CRC32C, which an upload created for SHA-256
            // part checksums cannot complete with.
            tracing::info!(%target, upload_id = %upload.upload_id, "interrupted upload used another part checksum; starting anew");
            let _ = self
                .location
                .client
                .abort_multipart_upload()
                .bucket(&self.location.bucket)
                .key(self.location.object_key(self.key))
                .upload_id(&upload.upload_id)
                .send()
                .await;
            catalog.forget_upload(&upload.upload_id).map_err(catalog_error)?;
            return Ok(None);
        }
        let mut listed = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let result = self
                .location
                .client
                .list_parts()
                .bucket(&self.location.bucket)
                .key(self.location.object_key(self.key))
                .upload_id(&upload.upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let page = match result {
                Ok(page) => page,
                Err(e) if e.code() == Some("NoSuchUpload") => {
                    tracing::info!(%target, upload_id = %upload.upload_id, "the server no longer knows the interrupted upload; starting anew");
                    catalog.forget_upload(&upload.upload_id).map_err(catalog_error)?;
                    return Ok(None);
                }
                Err(e) => return Err(remote(target.to_string(), e)),
            };
            for part in page.parts() {
                if let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) {
                    listed.insert(number, (etag.to_string(), part.size().unwrap_or_default() as u64));
                }
            }
            if page.is_truncated() == Some(true) {
                marker = page.next_part_number_marker().map(str::to_string);
                if marker.is_some() {
                    continue;
                }
            }
            break;
        }
        let done = recorded
            .into_iter()
            .filter(|p| listed.get(&p.part_number) == Some(&(p.etag.clone(), p.bytes)))
            .map(|p| (p.part_number, p))
            .collect();
        Ok(Some((upload.upload_id, done)))
    }

    async fn create(&self, target: &str, part_size: u64) -> Result<String, StoreError> {
        let mut request = self
            .location
            .client
            .create_multipart_upload()
            .bucket(&self.location.bucket)
            .key(self.location.object_key(self.key))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_metadata(Some(self.write.metadata.clone()))
            .set_storage_class(self.location.storage_class.clone());
        match self.write.lock {
            LockPlan::None => {}
            LockPlan::Compliance(until) => {
                request = request
                    .object_lock_mode(ObjectLockMode::Compliance)
                    .object_lock_retain_until_date(smithy_time(until));
            }
            LockPlan::LegalHold => request = request.object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On),
        }
        let output = request.send().await.map_err(|e| remote(target.to_string(), e))?;
        let upload_id = output.upload_id().unwrap_or_default().to_string();
        if upload_id.is_empty() {
            return Err(StoreError::Remote {
                subject: target.to_string(),
                message: "the server started a multipart upload without an upload id".to_string(),
                retryable: false,
            });
        }
        if let Some(catalog) = self.catalog {
            catalog
                .start_upload(
                    &upload_id,
                    target,
                    self.sha256,
                    part_size,
                    &chrono::Utc::now().to_rfc3339(),
                )
                .map_err(catalog_error)?;
        }
        tracing::info!(%target, %upload_id, part_size, "multipart upload started");
        Ok(upload_id)
    }

    /// Sends every part not yet done, at most `parallel_parts` at once:
    /// a part's buffer is read only once its permit is held, so memory
    /// stays within the budget. The first failure stops the rest; parts
    /// already acknowledged stay recorded for the next run. Also returns
    /// whether the server echoed every part's SHA-256.
    async fn send_missing(
        &self,
        upload_id: &str,
        part_size: u64,
        part_count: i32,
        done: &HashMap<i32, PartRow>,
    ) -> Result<(Vec<PartRow>, bool), StoreError> {
        let permits = Arc::new(Semaphore::new(self.settings.parallel_parts));
        let pool = Arc::new(PartPool::default());
        // Once the server has echoed a part's SHA-256, it checks every part
        // on receipt, so hashing each part here a second time would only
        // take a core from it. A part it rejects is then read again.
        let server_checks = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let mut sent = Vec::new();
        let mut confirmed = true;
        for number in (1..=part_count).filter(|n| !done.contains_key(n)) {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            while let Some(finished) = tasks.try_join_next() {
                let (part, echoed) = self.record(upload_id, finished)?;
                confirmed &= echoed;
                sent.push(part);
            }
            let (offset, length) = self.range(number, part_size);
            let spool = self.spool.to_path_buf();
            let location = self.location.clone();
            let key = self.location.object_key(self.key);
            let target = self.location.url(self.key);
            let upload_id = upload_id.to_string();
            let limiter = self.limiter.clone();
            let digest = self.parts[number as usize - 1];
            let checksum = part_checksum(&digest);
            let pool = pool.clone();
            let server_checks = server_checks.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let check_here = !server_checks.load(Ordering::Relaxed);
                let source = spool.clone();
                let bytes = tokio::task::spawn_blocking(move || {
                    PartPool::read(&pool, &source, offset, length, check_here.then_some(&digest))
                })
                .await
                .expect("reading a part does not panic")?;
                limiter.reserve(length as u64).await;
                let output = location
                    .client
                    .upload_part()
                    .bucket(&location.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .checksum_sha256(&checksum)
                    .body(ByteStream::from(bytes))
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await;
                let output = match output {
                    Ok(output) => output,
                    Err(error) => {
                        let refused_checksum = error
                            .code()
                            .is_some_and(|code| code.contains("Digest") || code.contains("Checksum"));
                        let error = remote(format!("{target} part {number}"), error);
                        if refused_checksum {
                            // Name a source that changed rather than the server's code.
                            let pool = Arc::new(PartPool::default());
                            tokio::task::spawn_blocking(move || {
                                PartPool::read(&pool, &spool, offset, length, Some(&digest)).map(|_| ())
                            })
                            .await
                            .expect("reading a part does not panic")?;
                        }
                        return Err(error);
                    }
                };
                let echoed = output.checksum_sha256() == Some(checksum.as_str());
                if echoed {
                    server_checks.store(true, Ordering::Relaxed);
                }
                let part = PartRow {
                    part_number: number,
                    bytes: length as u64,
                    sha256: checksum,
                    etag: output.e_tag().unwrap_or_default().to_string(),
                };
                Ok::<(PartRow, bool), StoreError>((part, echoed))
            });
        }
        while let Some(finished) = tasks.join_next().await {
            let (part, echoed) = self.record(upload_id, finished)?;
            confirmed &= echoed;
            sent.push(part);
        }
        Ok((sent, confirmed))
    }

    fn record(
        &self,
        upload_id: &str,
        finished: Result<Result<(PartRow, bool), StoreError>, tokio::task::JoinError>,
    ) -> Result<(PartRow, bool), StoreError> {
        let (part, echoed) = finished.expect("a part upload does not panic")?;
        if let Some(catalog) = self.catalog {
            catalog.record_part(upload_id, &part).map_err(catalog_error)?;
        }
        tracing::debug!(upload_id, part = part.part_number, echoed, "part acknowledged");
        Ok((part, echoed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_keys_are_encoded_but_keep_slashes() {
        assert_eq!(encode_key("routine/a b+c.mp4"), "routine/a%20b%2Bc.mp4");
    }

    #[test]
    fn checksums_are_base64_of_the_raw_digest() {
        assert_eq!(
            base64_of_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(part_checksum(&[0u8; 32]).len(), SHA256_BASE64_LEN);
    }

    #[test]
    fn composite_checksum_is_the_hash_of_part_hashes_with_the_count() {
        // Garage 2.5 reported this for parts of 5 MiB, 5 MiB and 1000 bytes
        // whose SHA-256s are the three digests below.
        let parts: Vec<[u8; 32]> = [
            "6XKXWi6I4SgW3g4I0WvAlY/N0nRUHhEvIUfY6L3pSrw=",
            "WCkdPwCgOgjbDvAukFLgRVJq2LmjhLufOTQcG/0JPCE=",
            "el44x6T1wNVaz86MJtoqcdcy9mviJ5COHyeyaB5vaXc=",
        ]
        .iter()
        .map(|b| BASE64.decode(b).unwrap().try_into().unwrap())
        .collect();
        assert_eq!(composite_sha256(&parts), "a/Ulr7YT9EZAgzfPBRaIQiCTjIMLpIPfmeYl3VH+WUU=-3");
    }
}
