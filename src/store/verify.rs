//! Fixity: re-hashing stored objects against their manifests (Article 18).
//!
//! Every object of the chosen tiers is read back in full and hashed with
//! SHA-256 and SM3, in parallel, and compared with the size and both
//! digests its manifest recorded when it was stored. The separate backup
//! of the evidence tier is checked the same way. Recordings the catalog
//! places in a tier but the store no longer has are named as missing. Each
//! result is recorded in the catalog, so that a period's checks can be
//! reported later. Each object re-hashed is a read of stored footage, so
//! it gets its own audit `read` event before it is opened: a fixity run
//! then shows, object by object, what was read and by whom, the same way
//! every other read is found.

use std::collections::BTreeSet;
use std::io::Read;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sm3::Sm3;

use crate::catalog::Catalog;
use crate::i18n::{Lang, Text};

use super::retention::read_manifest;
use super::{ObjectStore, StoreError, Tier};

/// Read size while hashing: large enough for full disk or network speed.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Which copy of an object was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Copy {
    Primary,
    Backup,
}

impl Copy {
    fn as_str(self) -> &'static str {
        match self {
            Copy::Primary => "primary",
            Copy::Backup => "backup",
        }
    }
}

/// The outcome for one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Size, SHA-256 and SM3 match the manifest.
    Ok,
    /// The bytes differ from what the manifest recorded.
    Mismatch,
    /// The catalog or the primary copy says it exists; the store has no object.
    Missing,
    /// The object has no readable manifest to check it against.
    NoManifest,
    /// The object could not be read.
    Unreadable,
}

/// One checked object, as `verify --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectCheck {
    pub tier: Tier,
    pub copy: Copy,
    pub key: String,
    pub status: Status,
    pub expected_sha256: Option<String>,
    pub actual_sha256: Option<String>,
    pub expected_bytes: Option<u64>,
    pub actual_bytes: Option<u64>,
    /// When the object was stored, from its manifest.
    pub stored_at: Option<DateTime<Utc>>,
    /// Why it failed, in both languages; absent when it passed.
    pub message: Option<Text>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FixityReport {
    pub checked_at: DateTime<Utc>,
    pub tiers: Vec<Tier>,
    pub since: Option<DateTime<Utc>>,
    pub checked: usize,
    pub passed: usize,
    pub failed: usize,
    pub objects: Vec<ObjectCheck>,
}

impl FixityReport {
    pub fn failures(&self) -> impl Iterator<Item = &ObjectCheck> {
        self.objects.iter().filter(|o| o.status != Status::Ok)
    }

    /// The report for people: totals, then each failure by name.
    pub fn render_text(&self, lang: Lang) -> String {
        let mut out = format!(
            "{} {}，{} {}，{} {}\n",
            lang.pick("已核验", "checked"),
            self.checked,
            lang.pick("通过", "passed"),
            self.passed,
            lang.pick("失败", "failed"),
            self.failed
        );
        if lang == Lang::En {
            out = format!(
                "checked {}, passed {}, failed {}\n",
                self.checked, self.passed, self.failed
            );
        }
        for failure in self.failures() {
            let message = failure
                .message
                .as_ref()
                .map(|m| m.get(lang).to_string())
                .unwrap_or_default();
            out.push_str(&format!(
                "  {} {}/{} [{}]: {message}\n",
                lang.pick("失败", "FAILED"),
                failure.tier.as_str(),
                failure.key,
                failure.copy.as_str()
            ));
        }
        out
    }
}

/// Reads `--since`: a date (`YYYY-MM-DD`, the start of that day in the
/// bureau's time zone) or an RFC 3339 instant.
pub fn parse_since(text: &str, timezone: chrono_tz::Tz) -> Result<DateTime<Utc>, Text> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .and_then(|start| start.and_local_timezone(timezone).earliest())
        .map(|start| start.with_timezone(&Utc))
        .ok_or_else(|| {
            Text::new(
                format!("--since {text:?} 不是日期（YYYY-MM-DD）或 RFC 3339 时刻"),
                format!("--since {text:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant"),
            )
        })
}

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// One tier, or every tier when absent.
    pub tier: Option<Tier>,
    /// Only objects stored at or after this instant.
    pub since: Option<DateTime<Utc>>,
}

struct Item<'a> {
    store: &'a dyn ObjectStore,
    tier: Tier,
    copy: Copy,
    key: String,
    /// Known to be absent from the store: listed elsewhere only.
    is_absent: bool,
}

/// Purpose of the audit `read` event of each object re-hashed.
const READ_PURPOSE: &str = "fixity check";

/// The catalog that takes a run's results and `read` events, and the
/// person who runs it.
#[derive(Clone, Copy)]
pub struct Records<'a> {
    pub catalog: &'a Catalog,
    pub actor: &'a str,
}

/// An object whose manifest was read and which is to be re-hashed.
struct ToHash<'i, 'a> {
    item: &'i Item<'a>,
    result: ObjectCheck,
    manifest: super::Manifest,
}

/// Checks the stored objects and records each result, and each read, in
/// the catalog.
pub fn verify(
    store: &dyn ObjectStore,
    records: Records<'_>,
    options: &VerifyOptions,
) -> Result<FixityReport, StoreError> {
    let catalog = records.catalog;
    let checked_at = Utc::now();
    let tiers: Vec<Tier> = match options.tier {
        Some(tier) => vec![tier],
        None => Tier::ALL.to_vec(),
    };

    let mut items = Vec::new();
    for &tier in &tiers {
        // Audit anchors carry no manifest: `audit verify` checks them by key.
        let listed: BTreeSet<String> = store
            .list(tier, "")?
            .into_iter()
            .filter(|key| !crate::audit::anchor::is_anchor(key))
            .collect();
        let recordings = catalog
            .recordings()
            .map_err(StoreError::catalog)?;
        // A recording deleted after its retention ended is no longer expected.
        let deleted = catalog
            .deleted_keys(tier.as_str())
            .map_err(StoreError::catalog)?;
        let expected: BTreeSet<String> = recordings
            .into_iter()
            .filter(|r| r.tier == tier.as_str() && !deleted.contains(&r.key))
            .map(|r| r.key)
            .collect();
        for key in listed.union(&expected) {
            items.push(Item {
                store,
                tier,
                copy: Copy::Primary,
                key: key.clone(),
                is_absent: !listed.contains(key),
            });
        }
        if let (Tier::Evidence, Some(backup)) = (tier, store.backup()) {
            let in_backup: BTreeSet<String> = backup
                .list(tier, "")?
                .into_iter()
                .filter(|key| !crate::audit::anchor::is_anchor(key))
                .collect();
            for key in in_backup.union(&listed) {
                items.push(Item {
                    store: backup,
                    tier,
                    copy: Copy::Backup,
                    key: key.clone(),
                    is_absent: !in_backup.contains(key),
                });
            }
        }
    }

    let prepared: Vec<Result<ToHash, ObjectCheck>> = items.par_iter().filter_map(|item| prepare(item, options.since)).collect();
    let mut objects = Vec::new();
    let mut to_hash = Vec::new();
    for step in prepared {
        match step {
            Ok(next) => {
                let read = log_read(records, &next)?;
                to_hash.push((next, read));
            }
            Err(done) => objects.push(done),
        }
    }
    objects.par_extend(to_hash.into_par_iter().map(|(next, read)| check_content(next, &read)));
    objects.sort_by(|a, b| (a.tier as u8, &a.key, a.copy as u8).cmp(&(b.tier as u8, &b.key, b.copy as u8)));

    for object in &objects {
        let status = serde_json::to_value(object.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if let Err(error) = catalog.record_fixity(
            object.tier.as_str(),
            object.copy.as_str(),
            &object.key,
            &checked_at.to_rfc3339(),
            &status,
            object.expected_sha256.as_deref(),
            object.actual_sha256.as_deref(),
        ) {
            tracing::warn!(key = %object.key, %error, "fixity result not recorded in the catalog");
        }
    }
    for failure in objects.iter().filter(|o| o.status != Status::Ok) {
        tracing::error!(tier = failure.tier.as_str(), copy = failure.copy.as_str(), key = %failure.key, status = ?failure.status, "fixity check failed");
    }

    let passed = objects.iter().filter(|o| o.status == Status::Ok).count();
    Ok(FixityReport {
        checked_at,
        tiers,
        since: options.since,
        checked: objects.len(),
        passed,
        failed: objects.len() - passed,
        objects,
    })
}

/// Appends the `read` event of one object about to be re-hashed; the run
/// stops when it cannot be logged, as no read may go unlogged.
fn log_read(records: Records<'_>, next: &ToHash<'_, '_>) -> Result<crate::audit::LoggedRead, StoreError> {
    let read = crate::audit::StoredRead {
        tier: next.item.tier,
        key: &next.item.key,
        sha256: Some(&next.manifest.sha256),
        purpose: READ_PURPOSE,
        extra: Some(("copy", next.item.copy.as_str())),
    };
    crate::audit::log_read(records.catalog, records.actor, &read).map_err(StoreError::catalog)
}

/// Reads one object's manifest: `Err` with the outcome when the object
/// cannot be re-hashed, `None` when it was stored before `since`.
fn prepare<'i, 'a>(item: &'i Item<'a>, since: Option<DateTime<Utc>>) -> Option<Result<ToHash<'i, 'a>, ObjectCheck>> {
    let mut result = ObjectCheck {
        tier: item.tier,
        copy: item.copy,
        key: item.key.clone(),
        status: Status::Ok,
        expected_sha256: None,
        actual_sha256: None,
        expected_bytes: None,
        actual_bytes: None,
        stored_at: None,
        message: None,
    };
    let fail = |mut result: ObjectCheck, status, message: Text| {
        result.status = status;
        result.message = Some(message);
        Some(Err(result))
    };

    // A backup copy is checked against the manifest stored beside it,
    // which was written to both copies.
    let manifest = read_manifest(item.store, item.tier, &item.key);
    let manifest = match manifest {
        Ok(manifest) => manifest,
        Err(_) if item.is_absent => {
            return fail(
                result,
                Status::Missing,
                Text::new(
                    format!("对象缺失：{}/{}", item.tier.as_str(), item.key),
                    format!("object missing: {}/{}", item.tier.as_str(), item.key),
                ),
            )
        }
        Err(error) => {
            return fail(
                result,
                Status::NoManifest,
                Text::new(
                    format!("无法读取清单：{error}"),
                    format!("manifest cannot be read: {error}"),
                ),
            )
        }
    };
    if since.is_some_and(|since| manifest.created_at < since) {
        return None;
    }
    result.expected_sha256 = Some(manifest.sha256.clone());
    result.expected_bytes = Some(manifest.bytes);
    result.stored_at = Some(manifest.created_at);
    if item.is_absent {
        return fail(
            result,
            Status::Missing,
            Text::new(
                format!("对象缺失（清单仍在）：{}/{}", item.tier.as_str(), item.key),
                format!(
                    "object missing (its manifest remains): {}/{}",
                    item.tier.as_str(),
                    item.key
                ),
            ),
        );
    }

    Some(Ok(ToHash {
        item,
        result,
        manifest,
    }))
}

/// Re-hashes one object through its logged read and compares it with its
/// manifest.
fn check_content(next: ToHash<'_, '_>, read: &crate::audit::LoggedRead) -> ObjectCheck {
    let ToHash {
        item,
        mut result,
        manifest,
    } = next;
    let fail = |mut result: ObjectCheck, status, message: Text| {
        result.status = status;
        result.message = Some(message);
        result
    };
    let hashed = read.open(item.store).and_then(|reader| {
        hash(reader).map_err(|source| StoreError::Io {
            path: item.key.clone().into(),
            source,
        })
    });
    let (sha256, sm3, bytes) = match hashed {
        Ok(hashed) => hashed,
        Err(StoreError::NotFound { .. }) => {
            return fail(
                result,
                Status::Missing,
                Text::new(
                    format!("对象缺失：{}/{}", item.tier.as_str(), item.key),
                    format!("object missing: {}/{}", item.tier.as_str(), item.key),
                ),
            )
        }
        Err(error) => {
            return fail(
                result,
                Status::Unreadable,
                Text::new(
                    format!("无法读取对象：{error}"),
                    format!("object cannot be read: {error}"),
                ),
            )
        }
    };
    result.actual_sha256 = Some(sha256.clone());
    result.actual_bytes = Some(bytes);
    if sha256 != manifest.sha256 || bytes != manifest.bytes || (!manifest.sm3.is_empty() && sm3 != manifest.sm3) {
        return fail(
            result,
            Status::Mismatch,
            Text::new(
                format!(
                    "内容与清单不符：{}/{}（清单 SHA-256 {}，{} 字节；实际 {}，{} 字节）",
                    item.tier.as_str(),
                    item.key,
                    manifest.sha256,
                    manifest.bytes,
                    sha256,
                    bytes
                ),
                format!(
                    "content differs from its manifest: {}/{} (manifest sha256 {}, {} bytes; found {}, {} bytes)",
                    item.tier.as_str(),
                    item.key,
                    manifest.sha256,
                    manifest.bytes,
                    sha256,
                    bytes
                ),
            ),
        );
    }
    result
}

fn hash(mut reader: Box<dyn Read + Send>) -> std::io::Result<(String, String, u64)> {
    let mut sha256 = Sha256::new();
    let mut sm3 = Sm3::new();
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        sha256.update(&buffer[..n]);
        sm3.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hex::encode(sha256.finalize()), hex::encode(sm3.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocalStore, Manifest, Source, ToolVersions};
    use std::os::unix::fs::PermissionsExt;

    /// Opens a catalog beside the store.
    fn catalog_in(dir: &std::path::Path) -> Catalog {
        Catalog::open(&dir.join("catalog.sqlite")).unwrap()
    }

    fn records(catalog: &Catalog) -> Records<'_> {
        Records { catalog, actor: "checker" }
    }

    fn stored(store: &LocalStore, tier: Tier, key: &str, bytes: &[u8]) {
        store.put_small(tier, key, bytes).unwrap();
        Manifest {
            artefact: "original".into(),
            tier,
            key: key.into(),
            sha256: hex::encode(Sha256::digest(bytes)),
            sm3: hex::encode(Sm3::digest(bytes)),
            bytes: bytes.len() as u64,
            source: Source {
                path: key.into(),
                file_name: key.into(),
                modified: None,
                recordings: Vec::new(),
            },
            tools: ToolVersions {
                evidence: "t".into(),
                gstreamer: "t".into(),
            },
            created_at: Utc::now(),
            actor: "op".into(),
        }
        .store(store)
        .unwrap();
    }

    #[test]
    fn changed_object_is_named_and_intact_ones_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("store")).unwrap();
        let catalog = catalog_in(dir.path());
        stored(&store, Tier::Routine, "a.mp4", b"first recording");
        stored(&store, Tier::Routine, "b.mp4", b"second recording");
        let path = store.path_of(Tier::Routine, "b.mp4");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"second recordinG").unwrap();

        let report = verify(&store, records(&catalog), &VerifyOptions::default()).unwrap();
        assert_eq!((report.checked, report.passed, report.failed), (2, 1, 1));
        let failure = report.failures().next().unwrap();
        assert_eq!(failure.key, "b.mp4");
        assert_eq!(failure.status, Status::Mismatch);
        assert_eq!(
            failure.expected_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(b"second recording")).as_str())
        );
    }

    #[test]
    fn since_skips_older_objects_and_tier_limits_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("store")).unwrap();
        let catalog = catalog_in(dir.path());
        stored(&store, Tier::Routine, "a.mp4", b"a");
        stored(&store, Tier::Evidence, "e.mp4", b"e");
        let only_evidence = VerifyOptions {
            tier: Some(Tier::Evidence),
            since: None,
        };
        assert_eq!(verify(&store, records(&catalog), &only_evidence).unwrap().checked, 1);
        let later = VerifyOptions {
            tier: None,
            since: Some(Utc::now() + chrono::Duration::hours(1)),
        };
        assert_eq!(verify(&store, records(&catalog), &later).unwrap().checked, 0);
    }

    #[test]
    fn rehashed_objects_are_logged_as_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("store")).unwrap();
        let catalog = catalog_in(dir.path());
        stored(&store, Tier::Routine, "a.mp4", b"a");
        stored(&store, Tier::Evidence, "e.mp4", b"e");
        store.put_small(Tier::Public, "x.mp4", b"x").unwrap();

        verify(&store, records(&catalog), &VerifyOptions::default()).unwrap();
        let reads: Vec<_> = catalog
            .audit_events()
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "read")
            .collect();
        let mut objects: Vec<&str> = reads.iter().map(|e| e.object.as_str()).collect();
        objects.sort_unstable();
        let mut expected = vec![hex::encode(Sha256::digest(b"a")), hex::encode(Sha256::digest(b"e"))];
        expected.sort_unstable();
        assert_eq!(objects, expected, "the object without a manifest is not re-hashed, so not read");
        assert!(reads.iter().all(|e| e.actor == "checker" && e.detail_json.contains("fixity check")));
    }

    #[test]
    fn since_date_starts_at_local_midnight() {
        let since = parse_since("2024-05-01", chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(since.to_rfc3339(), "2024-04-30T16:00:00+00:00");
        assert!(parse_since("May 1", chrono_tz::Asia::Shanghai).is_err());
    }

    #[test]
    fn object_without_manifest_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("store")).unwrap();
        let catalog = catalog_in(dir.path());
        store.put_small(Tier::Public, "x.mp4", b"x").unwrap();
        let report = verify(&store, records(&catalog), &VerifyOptions::default()).unwrap();
        assert_eq!(report.objects[0].status, Status::NoManifest);
    }
}
