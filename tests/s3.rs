//! The S3 backend against real servers started by `scripts/s3-servers.sh`:
//! Garage for the data path (uploads, multipart resume after the server
//! stopped, backup copies, fixity, lifecycle), moto's standalone server for
//! object lock and legal hold, which Garage does not implement.
//!
//! Without the servers' variables every test here says so loudly and
//! passes without checking anything, so that a plain `cargo test` runs;
//! `scripts/test.sh` always starts the servers and sets the variables.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use common::{assert_success, assert_success_for, run, run_json, run_json_ok, sha256_of};
use serde_json::Value;

/// Garage tests run one at a time: one of them stops the server.
static GARAGE: Mutex<()> = Mutex::new(());

struct Server {
    endpoint: String,
    region: String,
    key_id: String,
    secret: String,
}

fn server(prefix: &str, region: &str) -> Option<Server> {
    let endpoint = std::env::var(format!("EVIDENCE_TEST_{prefix}_ENDPOINT")).ok()?;
    Some(Server {
        endpoint,
        region: std::env::var(format!("EVIDENCE_TEST_{prefix}_REGION")).unwrap_or_else(|_| region.to_string()),
        key_id: std::env::var(format!("EVIDENCE_TEST_{prefix}_KEY_ID")).ok()?,
        secret: std::env::var(format!("EVIDENCE_TEST_{prefix}_SECRET")).ok()?,
    })
}

fn garage() -> Option<Server> {
    let found = server("GARAGE", "garage");
    if found.is_none() {
        eprintln!("\n!!! SKIPPED: EVIDENCE_TEST_GARAGE_* not set; run scripts/test.sh (it starts Garage) !!!\n");
    }
    found
}

fn moto() -> Option<Server> {
    let found = server("MOTO", "us-east-1");
    if found.is_none() {
        eprintln!("\n!!! SKIPPED: EVIDENCE_TEST_MOTO_* not set; run scripts/test.sh (it starts moto) !!!\n");
    }
    found
}

/// One Garage test's setting: the lock held for the whole test, the
/// server, and a fresh folder holding the data directory `data`.
struct OnGarage {
    _serial: MutexGuard<'static, ()>,
    server: Server,
    dir: tempfile::TempDir,
    data: PathBuf,
}

/// Takes the Garage lock and a fresh folder, or returns `None` after
/// printing that Garage is not set up (see `garage`).
fn on_garage() -> Option<OnGarage> {
    let serial = GARAGE.lock().unwrap_or_else(|e| e.into_inner());
    let server = garage()?;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Some(OnGarage { _serial: serial, server, dir, data })
}

/// A bucket name no earlier run used.
fn bucket(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}", nanos % 1_000_000_000_000)
}

fn write_config(data_dir: &Path, server: &Server, body: &str) {
    std::fs::create_dir_all(data_dir).unwrap();
    let text = format!(
        "{}\n[store]\nbackend = \"s3\"\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        body.split("[store]").next().unwrap_or(""),
        server.endpoint,
        server.region,
        server.key_id,
        server.secret
    );
    let rest = body.split_once("[store]").map(|(_, r)| r).unwrap_or("");
    std::fs::write(data_dir.join("config.toml"), format!("{text}{rest}")).unwrap();
}

fn client(server: &Server) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(server.region.clone()))
        .endpoint_url(&server.endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(&server.key_id, &server.secret, None, None, "test"))
        .build();
    Client::from_conf(config)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `bytes` of pseudo-random data (xorshift: incompressible and
/// reproducible, so a test's file is the same on every run).
fn footage(dir: &Path, name: &str, bytes: usize, seed: u64) -> PathBuf {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(bytes + 8);
    while data.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(bytes);
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn stored_key(report: &Value) -> String {
    report["files"][0]["evidence_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key in report: {report}"))
        .to_string()
}

fn init(data_dir: &Path) -> Value {
    let (output, json) = run_json(data_dir, &["storage", "init"]);
    assert_success_for(&output, "storage init failed");
    json
}

fn process(data_dir: &Path, file: &Path) -> Value {
    let (output, json) = run_json(data_dir, &["process", file.to_str().unwrap()]);
    assert_success_for(&output, "process failed");
    json
}

async fn sha256_of_object(client: &Client, bucket: &str, key: &str) -> String {
    use sha2::Digest;
    let object = client.get_object().bucket(bucket).key(key).send().await.unwrap();
    let bytes = object.body.collect().await.unwrap().into_bytes();
    hex::encode(sha2::Sha256::digest(&bytes))
}

#[test]
fn recording_is_stored_with_custody_metadata_and_verified() {
    let Some(OnGarage { _serial, server, dir, data }) = on_garage() else { return };
    let name = bucket("small");
    write_config(&data, &server, &format!("[store]\nbucket = \"{name}\"\n"));
    init(&data);
    let file = footage(dir.path(), "HB0631_20240501100000.mp4", 1 << 20, 1);

    let report = process(&data, &file);
    let key = stored_key(&report);
    let head = runtime()
        .block_on(
            client(&server)
                .head_object()
                .bucket(&name)
                .key(format!("routine/{key}"))
                .send(),
        )
        .unwrap();
    let metadata = head.metadata().unwrap();
    assert_eq!(metadata["sha256"], sha256_of(&file));
    assert_eq!(metadata["tier"], "routine");
    assert_eq!(metadata["sm3"].len(), 64);
    let until = chrono::DateTime::parse_from_rfc3339(&metadata["retention"]).unwrap();
    let days = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!(
        (364..=366).contains(&days),
        "routine retention is one year, got {days} days"
    );
    assert_eq!(head.content_length(), Some(1 << 20));
}

#[test]
fn large_recording_goes_up_in_parts_and_reads_back_identical() {
    let Some(OnGarage { _serial, server, dir, data }) = on_garage() else { return };
    let name = bucket("parts");
    write_config(
        &data,
        &server,
        &format!("[store]\nbucket = \"{name}\"\n[store.multipart]\nthreshold_mib = 8\npart_size_mib = 5\nconcurrency = 3\nmemory_budget_mib = 15\n"),
    );
    init(&data);
    let file = footage(dir.path(), "HB0631_20240501110000.mp4", 23 << 20, 2);

    let report = process(&data, &file);
    let key = stored_key(&report);
    let stored = runtime().block_on(sha256_of_object(&client(&server), &name, &format!("routine/{key}")));
    assert_eq!(stored, sha256_of(&file));
    let catalog = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let (parts, completed): (i64, Option<String>) = catalog
        .query_row(
            "SELECT (SELECT COUNT(*) FROM multipart_parts p WHERE p.upload_id = u.upload_id), completed_at FROM multipart_uploads u",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(parts, 5, "23 MiB in 5 MiB parts");
    assert!(completed.is_some());
}

/// The composite checksum S3 reports for parts of `part_bytes` with
/// SHA-256 part checksums: base64 of the SHA-256 of the part digests, `-N`.
fn composite_sha256(bytes: &[u8], part_bytes: usize) -> String {
    use base64::Engine;
    use sha2::Digest;
    let mut outer = sha2::Sha256::new();
    let mut count = 0;
    for part in bytes.chunks(part_bytes) {
        outer.update(sha2::Sha256::digest(part));
        count += 1;
    }
    format!(
        "{}-{count}",
        base64::engine::general_purpose::STANDARD.encode(outer.finalize())
    )
}

/// Runs `process -v --json` and returns its report and log.
fn process_logged(data_dir: &Path, file: &Path) -> (Value, String) {
    let (output, report) = run_json(data_dir, &["-v", "process", file.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "process failed: {report}\n{log}");
    (report, log)
}

#[test]
fn garage_multipart_verified_by_part_checksums() {
    let Some(OnGarage { _serial, server, dir, data }) = on_garage() else { return };
    let name = bucket("checksums");
    write_config(
        &data,
        &server,
        &format!("[store]\nbucket = \"{name}\"\n[store.multipart]\nthreshold_mib = 8\npart_size_mib = 5\nconcurrency = 2\nmemory_budget_mib = 10\n"),
    );
    init(&data);
    let file = footage(dir.path(), "HB0631_20240501113000.mp4", (12 << 20) + 1234, 9);

    let (report, log) = process_logged(&data, &file);
    assert!(
        log.contains("server_part_checksums") && !log.contains("read_back"),
        "Garage checks each part's SHA-256 and stores the composite, so nothing is read back: {log}"
    );
    let bytes = std::fs::read(&file).unwrap();
    let key = format!("routine/{}", stored_key(&report));
    let head = runtime()
        .block_on(
            client(&server)
                .head_object()
                .bucket(&name)
                .key(&key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send(),
        )
        .unwrap();
    assert_eq!(head.checksum_sha256(), Some(composite_sha256(&bytes, 5 << 20).as_str()));
    assert_eq!(head.metadata().unwrap()["sha256"], sha256_of(&file));
}

fn servers_script(action: &str) {
    let script = std::env::var("EVIDENCE_TEST_S3_SCRIPT").expect("scripts/test.sh sets EVIDENCE_TEST_S3_SCRIPT");
    let status = Command::new("bash")
        .arg(script)
        .arg(action)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "s3-servers.sh {action} failed");
}

#[test]
fn upload_interrupted_by_a_stopped_server_resumes_the_same_upload() {
    let Some(OnGarage { _serial, server, dir, data }) = on_garage() else { return };
    let name = bucket("resume");
    // One 5 MiB part at a time at 4 MiB/s: 50 MiB take about 12 seconds,
    // long enough to stop the server in the middle even on a loaded machine
    // where stopping it takes a few seconds.
    write_config(
        &data,
        &server,
        &format!("[store]\nbucket = \"{name}\"\n[store.multipart]\nthreshold_mib = 8\npart_size_mib = 5\nconcurrency = 1\nmemory_budget_mib = 5\nmax_mib_per_second = 4\n"),
    );
    init(&data);
    let file = footage(dir.path(), "HB0631_20240501120000.mp4", 50 << 20, 3);

    let child = common::binary()
        .arg("--data-dir")
        .arg(&data)
        .args(["process", "--json", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let catalog_path = data.join("catalog.sqlite");
    let started = Instant::now();
    let parts_before_stop = loop {
        let parts: i64 = rusqlite::Connection::open(&catalog_path)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM multipart_parts", [], |r| r.get(0)))
            .unwrap_or(0);
        if parts >= 2 {
            break parts;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no part was acknowledged within a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    servers_script("stop-garage");
    let interrupted = child.wait_with_output().unwrap();
    servers_script("start-garage");
    assert!(!interrupted.status.success(), "the run whose server stopped must fail");

    let catalog = rusqlite::Connection::open(&catalog_path).unwrap();
    let first_upload: String = catalog
        .query_row(
            "SELECT upload_id FROM multipart_uploads WHERE completed_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();

    let report = process(&data, &file);
    let key = stored_key(&report);
    let (upload_id, resumed, uploads): (String, i64, i64) = catalog
        .query_row(
            "SELECT upload_id, resumed_parts, (SELECT COUNT(*) FROM multipart_uploads) FROM multipart_uploads WHERE completed_at IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(upload_id, first_upload, "the rerun continues the interrupted upload");
    assert_eq!(uploads, 1);
    assert!(
        resumed >= parts_before_stop,
        "parts sent before the stop are not sent again ({resumed} < {parts_before_stop})"
    );
    let stored = runtime().block_on(sha256_of_object(&client(&server), &name, &format!("routine/{key}")));
    assert_eq!(stored, sha256_of(&file));
}

#[test]
fn object_changed_behind_the_products_back_is_named_by_verify() {
    let Some(OnGarage { _serial, server, dir, data }) = on_garage() else { return };
    let name = bucket("fixity");
    write_config(&data, &server, &format!("[store]\nbucket = \"{name}\"\n"));
    init(&data);
    let kept = footage(dir.path(), "HB0631_20240501130000.mp4", 300_000, 4);
    let changed = footage(dir.path(), "HB0631_20240501131000.mp4", 300_000, 5);
    process(&data, &kept);
    let changed_key = stored_key(&process(&data, &changed));

    let (output, clean) = run_json(&data, &["verify"]);
    assert!(output.status.success(), "{clean}");
    assert_eq!(
        (clean["checked"].as_u64(), clean["failed"].as_u64()),
        (Some(2), Some(0))
    );

    let mut bytes = std::fs::read(&changed).unwrap();
    bytes[1000] ^= 0x01;
    runtime()
        .block_on(
            client(&server)
                .put_object()
                .bucket(&name)
                .key(format!("routine/{changed_key}"))
                .body(ByteStream::from(bytes))
                .send(),
        )
        .unwrap();

    let (output, report) = run_json(&data, &["verify", "--tier", "routine"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        (report["checked"].as_u64(), report["failed"].as_u64()),
        (Some(2), Some(1))
    );
    let failed: Vec<&Value> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] != "ok")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["key"], changed_key.as_str());
    assert_eq!(failed[0]["status"], "mismatch");
    assert_eq!(failed[0]["expected_sha256"], sha256_of(&changed).as_str());
}

#[test]
fn storage_init_installs_routine_expiry_and_says_garage_has_no_lock() {
    let Some(OnGarage { _serial, server, dir: _dir, data }) = on_garage() else { return };
    let name = bucket("init");
    write_config(&data, &server, &format!("[store]\nbucket = \"{name}\"\n"));

    let report = init(&data);
    let bucket_report = &report["buckets"][0];
    assert_eq!(bucket_report["created"], true);
    assert_eq!(bucket_report["object_lock"], false);
    assert_eq!(bucket_report["lifecycle"], true);
    let notes = bucket_report["notes"].to_string();
    assert!(notes.contains("no object lock"), "{notes}");

    let lifecycle = runtime()
        .block_on(
            client(&server)
                .get_bucket_lifecycle_configuration()
                .bucket(&name)
                .send(),
        )
        .unwrap();
    let rule = lifecycle
        .rules()
        .iter()
        .find(|r| r.id() == Some("evidence-routine-expiry"))
        .expect("routine expiry rule installed");
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(366));
    assert_eq!(rule.filter().and_then(|f| f.prefix()), Some("routine/"));
}

#[test]
fn evidence_is_written_and_verified_in_a_separate_backup_bucket() {
    let Some(OnGarage { _serial, server, dir, data }) = on_garage() else { return };
    let (name, backup) = (bucket("primary"), bucket("backup"));
    write_config(
        &data,
        &server,
        &format!("ingest_tier = \"evidence\"\n[store]\nbucket = \"{name}\"\nevidence_retention = 30\n[store.backup]\nbucket = \"{backup}\"\n"),
    );
    init(&data);
    let file = footage(dir.path(), "HB0631_20240501140000.mp4", 400_000, 6);
    let key = stored_key(&process(&data, &file));

    let client = client(&server);
    for (bucket, prefix) in [(&name, "evidence/"), (&backup, "evidence/")] {
        let stored = runtime().block_on(sha256_of_object(&client, bucket, &format!("{prefix}{key}")));
        assert_eq!(stored, sha256_of(&file), "copy in {bucket}");
    }
    runtime()
        .block_on(
            client
                .put_object()
                .bucket(&backup)
                .key(format!("evidence/{key}"))
                .body(ByteStream::from_static(b"overwritten"))
                .send(),
        )
        .unwrap();
    let (output, report) = run_json(&data, &["verify", "--tier", "evidence"]);
    assert_eq!(output.status.code(), Some(3));
    let failed: Vec<&Value> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] != "ok")
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["copy"], "backup");
    assert_eq!(failed[0]["key"], key.as_str());
}

fn moto_setup(dir: &Path, server: &Server, extra: &str) -> (PathBuf, String) {
    let data = dir.join("data");
    let name = bucket("locked");
    write_config(
        &data,
        server,
        &format!("{extra}\n[store]\nbucket = \"{name}\"\nevidence_retention = 10\n"),
    );
    let report = init(&data);
    assert_eq!(
        report["buckets"][0]["object_lock"], true,
        "moto supports object lock: {report}"
    );
    (data, name)
}

#[test]
fn evidence_is_locked_in_compliance_mode_and_deletion_is_refused() {
    let Some(server) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (data, name) = moto_setup(dir.path(), &server, "ingest_tier = \"evidence\"");
    let file = footage(dir.path(), "HB0631_20240501150000.mp4", 200_000, 7);
    let key = stored_key(&process(&data, &file));
    let object_key = format!("evidence/{key}");

    let client = client(&server);
    // HEAD carries the lock, because moto returns the object body for GetObjectRetention.
    let head = runtime()
        .block_on(client.head_object().bucket(&name).key(&object_key).send())
        .unwrap();
    assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"));
    let retention = head;
    let until = retention.object_lock_retain_until_date().unwrap().secs();
    let years = (until - chrono::Utc::now().timestamp()) as f64 / (365.25 * 86400.0);
    assert!(
        (9.9..=10.1).contains(&years),
        "retained {years} years, expected the configured 10"
    );

    let config = evidence::config::Config::load(&data).unwrap();
    let store = evidence::store::s3::S3Store::open(&config.store, &data, None).unwrap();
    use evidence::store::ObjectStore;
    let refusal = store.delete(evidence::store::Tier::Evidence, &key).unwrap_err();
    assert!(
        matches!(refusal, evidence::store::StoreError::Retained { .. }),
        "{refusal}"
    );

    let version = runtime()
        .block_on(client.head_object().bucket(&name).key(&object_key).send())
        .unwrap()
        .version_id()
        .expect("object lock implies versioning")
        .to_string();
    let direct = runtime().block_on(
        client
            .delete_object()
            .bucket(&name)
            .key(&object_key)
            .version_id(version)
            .send(),
    );
    assert!(direct.is_err(), "the server itself refuses to delete a locked version");
    assert_eq!(
        runtime().block_on(sha256_of_object(&client, &name, &object_key)),
        sha256_of(&file)
    );
}

#[test]
fn promotion_copies_under_legal_hold() {
    let Some(server) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (data, name) = moto_setup(dir.path(), &server, "");
    let file = footage(dir.path(), "HB0631_20240501160000.mp4", 200_000, 8);
    let report = process(&data, &file);
    let key = stored_key(&report);
    let sha = sha256_of(&file);

    let refused = run(&data, &["promote", &sha, "--trigger", "other"]);
    assert!(!refused.status.success(), "`other` without a note is refused");

    let (output, promotion) = run_json(&data, &["promote", &sha, "--trigger", "media_presence"]);
    assert_success(&output);
    assert_eq!(promotion["copied"], true);
    assert_eq!(promotion["from_tier"], "routine");

    let client = client(&server);
    let hold = runtime()
        .block_on(
            client
                .get_object_legal_hold()
                .bucket(&name)
                .key(format!("longterm/{key}"))
                .send(),
        )
        .unwrap();
    assert_eq!(
        hold.legal_hold().and_then(|h| h.status()).map(|s| s.as_str()),
        Some("ON")
    );
    let head = runtime()
        .block_on(client.head_object().bucket(&name).key(format!("longterm/{key}")).send())
        .unwrap();
    assert_eq!(head.metadata().unwrap()["trigger"], "media_presence");
    assert_eq!(head.metadata().unwrap()["retention"], "permanent");
    assert_eq!(
        runtime().block_on(sha256_of_object(&client, &name, &format!("routine/{key}"))),
        sha
    );
    assert_eq!(
        runtime().block_on(sha256_of_object(&client, &name, &format!("longterm/{key}"))),
        sha
    );

    let (output, fixity) = run_json(&data, &["verify", "--tier", "longterm"]);
    assert!(output.status.success(), "{fixity}");
    assert_eq!(fixity["checked"], 1);
}

/// Hands the store a file to send from, as ingest does, changes the
/// file's bytes from `changed_from` on after they were written and hashed,
/// and commits.
fn commit_after_the_source_changed(
    server: &Server,
    bytes: usize,
    changed_from: usize,
    multipart: &str,
) -> (String, evidence::store::StoreError) {
    use evidence::store::{ObjectStore, Tier};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let name = bucket("changed");
    write_config(&data, server, &format!("[store]\nbucket = \"{name}\"\n{multipart}"));
    init(&data);
    let file = footage(dir.path(), "HB0631_20240501160000.mp4", bytes, 21);
    let original = std::fs::read(&file).unwrap();

    let config = evidence::config::Config::load(&data).unwrap();
    let store = evidence::store::s3::S3Store::open(&config.store, &data, None).unwrap();
    let mut staged = store.stage().unwrap();
    staged.read_from(&file);
    staged.write_all(&original).unwrap();
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(&original));
    let sm3 = hex::encode(sm3::Sm3::digest(&original));
    staged.set_digests(&sha256, &sm3);
    // Same size, other bytes: a copy into the incoming folder that went on.
    let other = std::fs::read(footage(dir.path(), "other.mp4", bytes, 22)).unwrap();
    let mut changed = original.clone();
    changed[changed_from..].copy_from_slice(&other[changed_from..]);
    std::fs::write(&file, changed).unwrap();

    let key = format!("originals/2024/05/01/HB0631/{sha256}.mp4");
    let error = staged.commit(Tier::Routine, &key, &sha256).unwrap_err();
    assert!(
        store.head(Tier::Routine, &key).unwrap().is_none(),
        "nothing is visible under the key after a refused commit"
    );
    (name, error)
}

#[test]
fn changed_source_refused_without_server_checks() {
    let Some(server) = moto() else { return };
    // moto 5 neither checks nor echoes part checksums: only the product's
    // own check of each part against its digest stands in the way.
    let (_, error) = commit_after_the_source_changed(
        &server,
        (12 << 20) + 77,
        0,
        "[store.multipart]\nthreshold_mib = 8\npart_size_mib = 5\nconcurrency = 2\nmemory_budget_mib = 10\n",
    );
    match error {
        evidence::store::StoreError::SourceChanged { offset, end, .. } => {
            assert_eq!((offset % (5 << 20), end - offset), (0, 5 << 20), "a whole part is named")
        }
        other => panic!("expected SourceChanged, got {other}"),
    }
}

#[test]
fn upload_source_changed_after_hashing_is_refused_in_one_put() {
    let Some(server) = moto() else { return };
    let (_, error) = commit_after_the_source_changed(&server, 300_000, 0, "");
    assert!(
        matches!(error, evidence::store::StoreError::SourceChanged { offset: 0, end: 300_000, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("changed after it was hashed"), "{error}");
}

/// The multipart tables as catalogs made before the part checksum column
/// was renamed have them, with one recorded part.
const OLD_MULTIPART_TABLES: &str = "
CREATE TABLE multipart_uploads (
    upload_id TEXT PRIMARY KEY, target TEXT NOT NULL, sha256 TEXT NOT NULL,
    part_size INTEGER NOT NULL, started_at TEXT NOT NULL, completed_at TEXT,
    resumed_parts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE multipart_parts (
    upload_id TEXT NOT NULL REFERENCES multipart_uploads(upload_id),
    part_number INTEGER NOT NULL, bytes INTEGER NOT NULL, crc32c TEXT NOT NULL,
    etag TEXT NOT NULL, PRIMARY KEY (upload_id, part_number)
);
INSERT INTO multipart_uploads (upload_id, target, sha256, part_size, started_at)
    VALUES ('u1', 'http://s3/b/k', 'ab', 5242880, '2024-05-01T00:00:00Z');
INSERT INTO multipart_parts (upload_id, part_number, bytes, crc32c, etag)
    VALUES ('u1', 1, 5242880, '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=', '\"e1\"');
";

fn assert_old_part_kept(catalog: &evidence::catalog::Catalog) {
    let parts = catalog.parts("u1").unwrap();
    assert_eq!(parts.len(), 1, "the recorded part survives the rename");
    assert_eq!(parts[0].sha256, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    assert_eq!((parts[0].part_number, parts[0].bytes, parts[0].etag.as_str()), (1, 5 << 20, "\"e1\""));
}

#[test]
fn sqlite_part_column_renamed_keeping_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    rusqlite::Connection::open(&path).unwrap().execute_batch(OLD_MULTIPART_TABLES).unwrap();

    let catalog = evidence::catalog::Catalog::open(&path).unwrap();
    assert_old_part_kept(&catalog);
    drop(catalog);
    let columns: Vec<String> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT name FROM pragma_table_info('multipart_parts')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(columns.contains(&"part_sha256".to_string()), "{columns:?}");
    assert!(!columns.contains(&"crc32c".to_string()), "{columns:?}");
    // Opening again finds nothing left to rename.
    assert_old_part_kept(&evidence::catalog::Catalog::open(&path).unwrap());
}

#[test]
fn postgres_part_column_renamed_keeping_rows() {
    let Ok(admin_url) = std::env::var("EVIDENCE_TEST_POSTGRES_URL") else {
        eprintln!("\n!!! SKIPPED: EVIDENCE_TEST_POSTGRES_URL not set; run scripts/test.sh (it starts PostgreSQL) !!!\n");
        return;
    };
    let name = format!("evidence_rename_{}", std::process::id());
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = match admin_url.split_once('?') {
        Some((base, query)) => format!("{}/{name}?{query}", base.rsplit_once('/').unwrap().0),
        None => format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0),
    };
    postgres::Client::connect(&url, postgres::NoTls)
        .unwrap()
        .batch_execute(OLD_MULTIPART_TABLES)
        .unwrap();

    let result = std::panic::catch_unwind(|| {
        assert_old_part_kept(&evidence::catalog::Catalog::open_postgres(&url).unwrap());
        let catalog = evidence::catalog::Catalog::open_postgres(&url).unwrap();
        assert_old_part_kept(&catalog);
        // The deletions table of the same schema, written twice for one copy.
        for _ in 0..2 {
            catalog
                .record_deletion("evidence", "originals/a.mp4", "primary", Some("ab"), "2024-05-01T00:00:00Z", "li")
                .unwrap();
        }
        catalog
            .record_deletion("evidence", "originals/b.mp4", "backup", None, "2024-05-01T00:00:00Z", "li")
            .unwrap();
        let deleted: Vec<String> = catalog.deleted_keys("evidence").unwrap().into_iter().collect();
        assert_eq!(deleted, ["originals/a.mp4"], "only primary copies count");
    });
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn delete_refused_for_locked_object() {
    let Some(server) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (data, name) = moto_setup(
        dir.path(),
        &server,
        "ingest_tier = \"evidence\"\n[roles]\ntester = [\"operator\", \"approver\"]\n",
    );
    let file = footage(dir.path(), "HB0631_20240501170000.mp4", 200_000, 8);
    let key = stored_key(&process(&data, &file));
    let sha = sha256_of(&file);

    let refused = run(&data, &["--lang", "zh", "storage", "delete", "--sha256", &sha]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("不能删除"), "{stderr}");
    assert!(stderr.contains("保存期限至"), "{stderr}");

    // The long-term copy is permanent and under legal hold on a server with lock.
    let (output, _) = run_json(&data, &["promote", &sha, "--trigger", "media_presence"]);
    assert_success(&output);
    let refused = run(&data, &["--lang", "en", "storage", "delete", "--tier", "longterm", &key]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("under legal hold"), "{stderr}");

    let client = client(&server);
    for prefix in ["evidence/", "longterm/"] {
        assert_eq!(
            runtime().block_on(sha256_of_object(&client, &name, &format!("{prefix}{key}"))),
            sha,
            "{prefix} copy kept"
        );
    }
}

#[test]
fn changed_late_part_refused_by_server() {
    let _serial = GARAGE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(server) = garage() else { return };
    // Parts 1 and 2 go first and are echoed by Garage, so part 3 is no
    // longer hashed before sending: Garage refuses it, and the product
    // names the changed source.
    let (_, error) = commit_after_the_source_changed(
        &server,
        (12 << 20) + 77,
        10 << 20,
        "[store.multipart]\nthreshold_mib = 8\npart_size_mib = 5\nconcurrency = 2\nmemory_budget_mib = 10\n",
    );
    match error {
        evidence::store::StoreError::SourceChanged { offset, end, .. } => {
            assert_eq!((offset, end), (10 << 20, (12 << 20) + 77), "the last part is named")
        }
        other => panic!("expected SourceChanged, got {other}"),
    }
}

#[test]
fn storage_delete_after_retention_removes_both_buckets_copies() {
    let Some(OnGarage { _serial, server, dir, data }) = on_garage() else { return };
    let (name, backup) = (bucket("delete"), bucket("delete-backup"));
    write_config(
        &data,
        &server,
        &format!("ingest_tier = \"evidence\"\n[roles]\ntester = [\"operator\", \"approver\"]\n[store]\nbucket = \"{name}\"\nevidence_retention = 0\n[store.backup]\nbucket = \"{backup}\"\n"),
    );
    init(&data);
    let file = footage(dir.path(), "HB0631_20240501180000.mp4", 300_000, 12);
    let key = stored_key(&process(&data, &file));

    let report = run_json_ok(&data, &["storage", "delete", "--sha256", &sha256_of(&file)]);
    let copies: Vec<&str> = report["deleted"].as_array().unwrap().iter().map(|d| d["copy"].as_str().unwrap()).collect();
    assert_eq!(copies, ["primary", "backup"], "{report}");
    let client = client(&server);
    for bucket in [&name, &backup] {
        for object in [format!("evidence/{key}"), format!("evidence/{key}.manifest.json")] {
            let found = runtime().block_on(client.head_object().bucket(bucket.as_str()).key(&object).send());
            assert!(found.is_err(), "{bucket}/{object} is deleted");
        }
    }
}
