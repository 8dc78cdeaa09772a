//! Processing an upload again stores its original again when the stored
//! copy has gone missing, instead of reporting it as already ingested while
//! the store lacks it.

mod common;

use std::path::Path;

use common::*;

/// Processes `base-10s.mp4`, deletes its stored copy (and its manifest when
/// `with_manifest`), processes it again and checks that the copy is back
/// and verifies.
fn restore_after_loss(with_manifest: bool) {
    let data = tempfile::tempdir().unwrap();
    let upload = fixture("cases/base-10s.mp4");
    let upload = upload.to_str().unwrap();

    let first = run_json_ok(data.path(), &["process", upload]);
    let stored = first["files"][0]["evidence_path"].as_str().unwrap().to_string();
    std::fs::remove_file(&stored).unwrap();
    if with_manifest {
        std::fs::remove_file(format!("{stored}.manifest.json")).unwrap();
    }

    let second = run_json_ok(data.path(), &["process", upload]);
    let entry = &second["files"][0];
    assert_eq!(entry["status"], "ingested", "{entry:#}");
    assert_eq!(entry["stored_now"], true, "{entry:#}");
    assert_eq!(entry["evidence_path"], stored.as_str());
    assert_eq!(sha256_of(Path::new(&stored)), sha256_of(Path::new(upload)));
    let manifest = read_json(Path::new(&format!("{stored}.manifest.json")));
    assert_eq!(manifest["sha256"], entry["sha256"]);

    let third = run_json_ok(data.path(), &["process", upload]);
    assert_eq!(third["files"][0]["status"], "already_ingested");

    let fixity = run_json_ok(data.path(), &["verify"]);
    assert_eq!(fixity["failed"], 0, "{fixity:#}");
}

#[test]
fn missing_original_is_stored_again() {
    restore_after_loss(false);
}

#[test]
fn missing_original_and_manifest_are_stored_again() {
    restore_after_loss(true);
}
