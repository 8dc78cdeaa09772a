//! Two workers share one PostgreSQL catalog, as on two machines: each
//! has its own data directory, and they share the upload folder and the
//! store (a folder both see, as a network share would be). Every upload
//! is processed once and every job runs once.
//!
//! Needs `EVIDENCE_TEST_POSTGRES_URL` (printed by `scripts/postgres.sh
//! start`); without it the tests print SKIPPED and check nothing.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};

use common::*;
use serde_json::Value;

/// Footage for two workers: the session's chapters and other distinct
/// recordings of the fixtures, so that there is work to share.
const UPLOADS: &[&str] = &[
    "cases/session/HB0631_130631001_20240501100000_0001.MP4",
    "cases/session/HB0631_130631001_20240501100010_0002.MP4",
    "cases/session/HB0631_130631001_20240501100027_0003.MP4",
    "cases/session/case.json",
    "cases/base-10s.mp4",
    "cases/dropped-frames.mp4",
    "cases/editlist-delayed-start.mp4",
    "cases/fragmented.mp4",
    "cases/hevc-hev1.mp4",
    "cases/ts-gap-10s.ts",
    "cases/ts-reset.ts",
    "cases/unfinalized-killed.mp4",
];

/// A fresh database on the test server, dropped when the test ends.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    fn create(label: &str) -> Option<Database> {
        let Ok(admin_url) = std::env::var("EVIDENCE_TEST_POSTGRES_URL") else {
            eprintln!("SKIPPED: EVIDENCE_TEST_POSTGRES_URL is not set; run `eval \"$(scripts/postgres.sh start)\"` first");
            return None;
        };
        let name = format!("evidence_{label}_{}", std::process::id());
        let mut client = postgres::Client::connect(&admin_url, postgres::NoTls)
            .expect("the test server answers");
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = replace_database(&admin_url, &name);
        Some(Database {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Replaces the database name in `scheme://auth@host/DB?query`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map(|(b, q)| (b, Some(q)))
        .unwrap_or((url, None));
    let slash = base.rfind('/').expect("the URL names a database");
    let mut replaced = format!("{}/{name}", &base[..slash]);
    if let Some(query) = query {
        replaced.push('?');
        replaced.push_str(query);
    }
    replaced
}

fn machine(store: &Path) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("config.toml"),
        "[roles]\ntester = [\"operator\", \"auditor\"]\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(store, data.path().join("store")).unwrap();
    data
}

fn spawn_worker(data: &Path, inbox: &Path, url: &str) -> Child {
    binary()
        .env("EVIDENCE_CATALOG_URL", url)
        .arg("--data-dir")
        .arg(data)
        .args([
            "--json",
            "worker",
            "--watch",
            inbox.to_str().unwrap(),
            "--settle-secs",
            "1",
            "--until-idle",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn json_of(command: &mut std::process::Command) -> Value {
    success_json(&command.output().unwrap())
}

#[test]
fn two_workers_share_the_work_without_doing_anything_twice() {
    let Some(database) = Database::create("share") else {
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    for upload in UPLOADS {
        let source = fixture(upload);
        std::fs::copy(&source, inbox.path().join(source.file_name().unwrap())).unwrap();
    }
    let first = machine(store.path());
    let second = machine(store.path());

    let workers = [
        spawn_worker(first.path(), inbox.path(), &database.url),
        spawn_worker(second.path(), inbox.path(), &database.url),
    ];
    let mut done = Vec::new();
    for worker in workers {
        let output = worker.wait_with_output().unwrap();
        assert_success(&output);
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        done.push(summary["jobs_done"].as_u64().unwrap());
    }
    assert!(
        done.iter().all(|&n| n > 0),
        "both workers took jobs: {done:?}"
    );

    let status = json_of(
        binary()
            .env("EVIDENCE_CATALOG_URL", &database.url)
            .arg("--data-dir")
            .arg(first.path())
            .args(["--json", "status"]),
    );
    let jobs = status["jobs"].as_array().unwrap();
    assert!(jobs.iter().all(|j| j["status"] == "done"), "{jobs:#?}");
    // Sessions and cases run again when new footage arrives; an upload's
    // own jobs run exactly once.
    let per_upload = jobs
        .iter()
        .filter(|j| j["kind"] == "ingest" || j["kind"] == "analyze");
    assert!(per_upload.clone().all(|j| j["attempts"] == 1), "{jobs:#?}");
    assert!(done.iter().sum::<u64>() as usize >= jobs.len());
    let recordings = UPLOADS.iter().filter(|u| !u.ends_with(".json")).count();
    assert_eq!(status["recordings"].as_array().unwrap().len(), recordings);
    assert_eq!(
        jobs.iter().filter(|j| j["kind"] == "ingest").count(),
        recordings,
        "each upload queued once"
    );
    let owners: std::collections::BTreeSet<&str> = jobs
        .iter()
        .filter_map(|j| j["lease_owner"].as_str())
        .collect();
    assert!(owners.is_empty(), "no lease is left behind");

    let audit = json_of(
        binary()
            .env("EVIDENCE_CATALOG_URL", &database.url)
            .arg("--data-dir")
            .arg(second.path())
            .args(["--json", "audit", "verify"]),
    );
    assert_eq!(audit["intact"], true);
    let mut client = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    let others: i64 = client
        .query_one("SELECT COUNT(*) FROM audit_events WHERE action <> 'read'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        others,
        recordings as i64 + 2,
        "one event per ingested recording and per clip (2), besides the reads"
    );

    let clips: Vec<_> = walk(store.path())
        .into_iter()
        .filter(|p| p.contains("/clips/") && p.ends_with(".mp4"))
        .collect();
    assert_eq!(clips.len(), 2, "one clip per unit, none twice: {clips:?}");
    assert!(
        clips.iter().all(|c| c.ends_with("/v1.mp4")),
        "no second version of an unchanged clip: {clips:?}"
    );
}

#[test]
fn a_hung_workers_job_is_taken_over_when_its_lease_runs_out() {
    let Some(database) = Database::create("takeover") else {
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let source = fixture(UPLOADS[0]);
    std::fs::copy(&source, inbox.path().join(source.file_name().unwrap())).unwrap();
    let first = machine(store.path());
    let second = machine(store.path());

    let mut stalled = binary()
        .env("EVIDENCE_CATALOG_URL", &database.url)
        .env("EVIDENCE_WORKER_STALL", "analyze:start")
        .arg("--data-dir")
        .arg(first.path())
        .args([
            "worker",
            "--watch",
            inbox.path().to_str().unwrap(),
            "--settle-secs",
            "1",
            "--lease-secs",
            "3",
            "--until-idle",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = stalled.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("worker stalled at"))));

    // The first worker hangs with its job claimed and no longer renews
    // the lease, as a frozen machine would. The second takes the job
    // over once the 3 s lease has run out.
    let output = spawn_worker(second.path(), inbox.path(), &database.url)
        .wait_with_output()
        .unwrap();
    stalled.kill().unwrap();
    stalled.wait().unwrap();
    assert_success(&output);
    let status = json_of(
        binary()
            .env("EVIDENCE_CATALOG_URL", &database.url)
            .arg("--data-dir")
            .arg(second.path())
            .args(["--json", "status"]),
    );
    let analyze = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "analyze")
        .unwrap();
    assert_eq!(analyze["status"], "done");
    assert_eq!(
        analyze["attempts"], 2,
        "claimed by the hung worker, then by the other"
    );
    assert_eq!(status["recordings"].as_array().unwrap().len(), 1);
}

fn walk(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}
