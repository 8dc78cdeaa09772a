//! The worker: every upload processed once, durable jobs that survive
//! kill -9 at any stage, failures kept visible, reprocessing that adds
//! versions, and role checks.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::*;
use serde_json::Value;

const CASE_ID: &str = "QY-2024-0501-001";

/// Every point where the crash test stops a worker: claimed but nothing
/// done, and all done but the job not yet marked done.
const STALL_POINTS: &[&str] = &[
    "ingest:start",
    "ingest:end",
    "analyze:start",
    "analyze:end",
    "sessions:start",
    "sessions:end",
    "case_record:start",
    "case_record:end",
    "case:start",
    "case:end",
];

fn write_roles(data: &Path) {
    std::fs::write(
        data.join("config.toml"),
        "[roles]\ntester = [\"operator\", \"auditor\"]\nvisitor = [\"disclosure\"]\n",
    )
    .unwrap();
}

/// Makes an upload folder with the three chapters of a session and its case record.
fn session_inbox() -> tempfile::TempDir {
    let inbox = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("cases/session")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, inbox.path().join(path.file_name().unwrap())).unwrap();
    }
    inbox
}

fn worker_args(inbox: &Path) -> Vec<String> {
    vec![
        "worker".into(),
        "--watch".into(),
        inbox.display().to_string(),
        "--settle-secs".into(),
        "1".into(),
        "--until-idle".into(),
    ]
}

fn run_worker(data: &Path, inbox: &Path) -> std::process::Output {
    let args = worker_args(inbox);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(data, &args)
}

/// Starts a worker that stops at `point`, and returns once it is there.
fn stalled_worker(data: &Path, inbox: &Path, point: &str) -> Child {
    let mut child = binary()
        .arg("--data-dir")
        .arg(data)
        .args(worker_args(inbox))
        .env("EVIDENCE_WORKER_STALL", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("worker stalled at") {
                let _ = sender.send(());
            }
        }
    });
    receiver
        .recv_timeout(HANG_LIMIT)
        .unwrap_or_else(|_| panic!("the worker never reached {point}"));
    child
}

/// Lists every stored file under the store, with its SHA-256.
fn stored_files(data: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let root = data.join("store");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.starts_with(root.join(".staging")) {
                let relative = path.strip_prefix(&root).unwrap().display().to_string();
                // Manifests and pictures carry their creation time; only
                // the footage itself must be byte-identical across runs.
                if relative.ends_with(".mp4") && !relative.contains(".manifest") {
                    files.insert(relative, sha256_of(&path));
                } else {
                    files.insert(relative, String::new());
                }
            }
        }
    }
    files
}

fn status(data: &Path) -> Value {
    run_json_ok(data, &["status"])
}

fn jobs_by_status(status: &Value, wanted: &str) -> usize {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] == wanted)
        .count()
}

#[test]
fn worker_processes_each_upload_once_and_status_lists_it() {
    let data = tempfile::tempdir().unwrap();
    write_roles(data.path());
    let inbox = session_inbox();

    let output = run_worker(data.path(), inbox.path());
    assert_success(&output);

    let status = status(data.path());
    let recordings = status["recordings"].as_array().unwrap();
    assert_eq!(recordings.len(), 3);
    for entry in std::fs::read_dir(fixture("cases/session")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "MP4") {
            let sha = sha256_of(&path);
            assert!(
                recordings.iter().any(|r| r["sha256"] == sha.as_str()),
                "{} listed by its sha256",
                path.display()
            );
        }
    }
    assert_eq!(jobs_by_status(&status, "failed"), 0);
    assert_eq!(jobs_by_status(&status, "queued"), 0);
    assert_eq!(
        status["job_counts"]["done"],
        status["jobs"].as_array().unwrap().len()
    );
    // The session has one unexplained 7 s gap between chapters 2 and 3.
    assert!(status["findings"].as_u64().unwrap() >= 1);
    assert_eq!(status["deadlines"]["cases"][0]["case_id"], CASE_ID);
    assert_eq!(
        status["deadlines"]["cases"][0]["case_file_deadline"],
        "2024-05-31"
    );
    assert_eq!(status["recordings"][0]["upload_deadline"], "2024-05-07");

    let files = stored_files(data.path());
    assert!(files
        .keys()
        .any(|k| k.starts_with("evidence/clips/QY-2024-0501-001/U1/HB0631/v1")));
    assert!(files
        .keys()
        .any(|k| k.starts_with("evidence/clips/QY-2024-0501-001/U2/HB0631/v1")));

    let jobs_before = status["jobs"].as_array().unwrap().len();
    let again = run_worker(data.path(), inbox.path());
    assert_success(&again);
    assert_eq!(
        stored_files(data.path()),
        files,
        "a second worker run stores nothing new"
    );
    assert_eq!(
        self::status(data.path())["jobs"].as_array().unwrap().len(),
        jobs_before,
        "no upload is queued twice"
    );
}

/// Audit events that are reads of stored footage, and all the others.
fn audit_reads_and_others(data: &Path) -> (i64, i64) {
    let connection = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let count = |sql: &str| connection.query_row(sql, [], |row| row.get(0)).unwrap();
    (
        count("SELECT COUNT(*) FROM audit_events WHERE action = 'read'"),
        count("SELECT COUNT(*) FROM audit_events WHERE action <> 'read'"),
    )
}

#[test]
fn kill_at_each_stage_twice_loses_and_doubles_nothing() {
    let reference_data = tempfile::tempdir().unwrap();
    write_roles(reference_data.path());
    let reference_inbox = session_inbox();
    assert!(run_worker(reference_data.path(), reference_inbox.path())
        .status
        .success());
    let reference = stored_files(reference_data.path());
    let footage: BTreeMap<_, _> = reference
        .iter()
        .filter(|(_, sha)| !sha.is_empty())
        .collect();
    assert_eq!(
        footage.len(),
        5,
        "three originals and two clips: {reference:?}"
    );

    for point in STALL_POINTS {
        let data = tempfile::tempdir().unwrap();
        write_roles(data.path());
        let inbox = session_inbox();
        for _ in 0..2 {
            let mut child = stalled_worker(data.path(), inbox.path(), point);
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let output = run_worker(data.path(), inbox.path());
        assert_success_for(&output, point);

        let files = stored_files(data.path());
        let kept: BTreeMap<_, _> = files.iter().filter(|(_, sha)| !sha.is_empty()).collect();
        assert_eq!(
            kept, footage,
            "after kill -9 at {point}: the same footage, none lost, none doubled"
        );
        let status = status(data.path());
        assert_eq!(status["recordings"].as_array().unwrap().len(), 3, "{point}");
        assert_eq!(
            jobs_by_status(&status, "done"),
            status["jobs"].as_array().unwrap().len(),
            "{point}: every job completes"
        );

        let (_, audit) = run_json(data.path(), &["audit", "verify"]);
        assert_eq!(audit["intact"], true, "{point}");
        let (reads, others) = audit_reads_and_others(data.path());
        assert_eq!(
            others, 5,
            "{point}: one event per ingested recording (3) and per clip made (2)"
        );
        // A stage run again after the kill reads its originals again, and
        // each of those reads is logged.
        assert!(
            reads >= 6,
            "{point}: each original read by its probe and by the split: {reads}"
        );
    }
}

#[test]
fn failed_job_stays_visible_with_its_reason() {
    let data = tempfile::tempdir().unwrap();
    write_roles(data.path());
    let inbox = tempfile::tempdir().unwrap();
    std::fs::write(
        inbox.path().join("broken-case.json"),
        r#"{"case_id": "../x", "kind": "daily_inspection"}"#,
    )
    .unwrap();

    let output = run_worker(data.path(), inbox.path());
    assert_eq!(
        output.status.code(),
        Some(3),
        "a failed job makes exit code 3"
    );

    let status = status(data.path());
    let failed: Vec<&Value> = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["kind"], "case_record");
    assert!(!failed[0]["error"]["zh"].as_str().unwrap().is_empty());
    assert!(!failed[0]["error"]["en"].as_str().unwrap().is_empty());
    assert_eq!(failed[0]["attempts"], 1, "an invalid record is not retried");
}

#[test]
fn reprocess_with_a_changed_record_adds_versions_and_keeps_old_ones() {
    let data = tempfile::tempdir().unwrap();
    write_roles(data.path());
    let inbox = session_inbox();
    assert_success(&run_worker(data.path(), inbox.path()));
    let before = stored_files(data.path());

    let unchanged = run_json_ok(data.path(), &["reprocess", "--case", CASE_ID]);
    assert!(unchanged["clips"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "unchanged"));

    let changed = moved_boundary(data.path());
    let report = run_json_ok(
        data.path(),
        &[
            "reprocess",
            "--case",
            CASE_ID,
            "--record",
            changed.to_str().unwrap(),
        ],
    );
    let u1 = clip(&report, "U1");
    assert_eq!(u1["version"], 2);
    assert_eq!(u1["status"], "created");

    let after = stored_files(data.path());
    for (key, sha) in &before {
        assert_eq!(after.get(key), Some(sha), "{key} is kept");
    }
    assert!(after
        .keys()
        .any(|k| k.starts_with("evidence/clips/QY-2024-0501-001/U1/HB0631/v2")));
}

#[test]
fn commands_refuse_people_without_the_role() {
    let data = tempfile::tempdir().unwrap();
    write_roles(data.path());
    let inbox = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 3] = [
        &[
            "worker",
            "--watch",
            inbox.path().to_str().unwrap(),
            "--until-idle",
        ],
        &["reprocess", "--case", CASE_ID],
        &["status"],
    ];
    for args in cases {
        assert_refused(data.path(), "visitor", "operator", args);
    }
}

/// Reads the Garage server of `scripts/s3-servers.sh`, or prints SKIPPED.
fn garage() -> Option<[String; 4]> {
    let variable = |name: &str| std::env::var(format!("EVIDENCE_TEST_GARAGE_{name}")).ok();
    let found = (|| {
        Some([
            variable("ENDPOINT")?,
            variable("REGION").unwrap_or_else(|| "garage".into()),
            variable("KEY_ID")?,
            variable("SECRET")?,
        ])
    })();
    if found.is_none() {
        eprintln!("\n!!! SKIPPED: EVIDENCE_TEST_GARAGE_* not set; run scripts/test.sh (it starts Garage) !!!\n");
    }
    found
}

#[test]
fn s3_incoming_uploads_are_ingested_once() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};

    let Some([endpoint, region, key_id, secret]) = garage() else {
        return;
    };
    let bucket = format!(
        "incoming-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000_000
    );
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .credentials_provider(Credentials::new(&key_id, &secret, None, None, "test"))
            .build(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names = [
        "HB0631_130631001_20240501100000_0001.MP4",
        "HB0631_130631001_20240501100010_0002.MP4",
    ];
    runtime.block_on(async {
        client.create_bucket().bucket(&bucket).send().await.unwrap();
        for name in names {
            let body = aws_sdk_s3::primitives::ByteStream::from(
                std::fs::read(fixture(&format!("cases/session/{name}"))).unwrap(),
            );
            client
                .put_object()
                .bucket(&bucket)
                .key(format!("station-01/{name}"))
                .body(body)
                .send()
                .await
                .unwrap();
        }
    });

    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("config.toml"),
        format!(
            "[roles]\ntester = [\"operator\", \"auditor\"]\n\n[store]\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\naccess_key_id = \"{key_id}\"\nsecret_access_key = \"{secret}\"\nbucket = \"{bucket}\"\n"
        ),
    )
    .unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let mut args = worker_args(inbox.path());
    args.extend(["--s3-incoming".to_string(), "station-01/".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..2 {
        let output = run(data.path(), &args);
        assert_success(&output);
    }

    let status = status(data.path());
    let recordings = status["recordings"].as_array().unwrap();
    assert_eq!(recordings.len(), 2);
    for name in names {
        let sha = sha256_of(&fixture(&format!("cases/session/{name}")));
        let found = recordings.iter().find(|r| r["sha256"] == sha.as_str());
        assert!(found.is_some(), "{name} ingested with its SHA-256");
        assert_eq!(
            found.unwrap()["file_name"],
            name,
            "the object's file name is kept"
        );
    }
    let ingests = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "ingest")
        .count();
    assert_eq!(ingests, 2, "each object is queued once over two runs");
    let spool = data.path().join("spool");
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "spooled copies are removed");
}
