//! A process killed during ingest leaves no partial evidence object, and a
//! rerun completes.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Large enough that ingest is still writing when the test kills it.
const UPLOAD_BYTES: u64 = 256 << 20;

#[test]
fn kill_during_ingest_leaves_no_partial_object() {
    let data = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let upload = inbox.path().join("HB0631_130631001_20240501100000_0009.MP4");
    let mut bytes = std::fs::read(fixture("cases/base-10s.mp4")).unwrap();
    bytes.resize(UPLOAD_BYTES as usize, 0x5a);
    std::fs::write(&upload, &bytes).unwrap();
    drop(bytes);

    let mut child = binary()
        .arg("--data-dir")
        .arg(data.path())
        .args(["process", upload.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let staging = data.path().join("store/.staging");
    let started = Instant::now();
    loop {
        let partial = std::fs::read_dir(&staging)
            .map(|entries| entries.flatten().any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false)))
            .unwrap_or(false);
        if partial {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "ingest never started writing");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(stored_objects(data.path()), 0, "no object becomes visible before it is complete");

    let report = run_json_ok(data.path(), &["process", upload.to_str().unwrap()]);
    let entry = file_entry(&report, "_0009.MP4");
    assert_eq!(entry["status"], "ingested");
    assert_eq!(entry["bytes"], UPLOAD_BYTES);
    let stored = std::path::Path::new(entry["evidence_path"].as_str().unwrap());
    assert_eq!(sha256_of(stored), sha256_of(&upload));
    assert_eq!(stored_objects(data.path()), 1);
    let leftovers = std::fs::read_dir(&staging).unwrap().count();
    assert_eq!(leftovers, 0, "the killed write's staging file is removed");
}
