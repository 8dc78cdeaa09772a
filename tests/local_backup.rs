//! The local store's separate backup of the evidence tier (Article 12,
//! `[store.local] backup_dir`): every evidence object is copied there and
//! verified, `verify` checks both copies and names a changed backup, and
//! the compliance report names evidence whose backup copy is missing.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const SAMPLE: &str = "cases/base-10s.mp4";

/// Processes the sample into the evidence tier of a store with a backup
/// directory; returns the data directory, the backup directory and the
/// stored key.
fn backed_up() -> (tempfile::TempDir, tempfile::TempDir, String) {
    let data = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("config.toml"),
        format!(
            "ingest_tier = \"evidence\"\n[roles]\ntester = [\"operator\", \"auditor\"]\n[store.local]\nbackup_dir = \"{}\"\n",
            backup.path().display()
        ),
    )
    .unwrap();
    let report = run_json_ok(data.path(), &["process", fixture(SAMPLE).to_str().unwrap()]);
    let key = report["files"][0]["evidence_key"]
        .as_str()
        .unwrap()
        .to_string();
    (data, backup, key)
}

fn backup_copy(backup: &Path, key: &str) -> PathBuf {
    backup.join("evidence").join(key)
}

fn failed_objects(report: &Value) -> Vec<Value> {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] != "ok")
        .cloned()
        .collect()
}

#[test]
fn local_backup_copied_and_verified() {
    let (data, backup, key) = backed_up();
    let copy = backup_copy(backup.path(), &key);
    assert_eq!(sha256_of(&copy), sha256_of(&fixture(SAMPLE)));
    assert!(
        Path::new(&format!("{}.manifest.json", copy.display())).exists(),
        "the manifest is backed up too"
    );

    let (output, report) = run_json(data.path(), &["verify", "--tier", "evidence"]);
    assert!(output.status.success(), "{report}");
    let copies: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["key"] == key.as_str())
        .map(|o| o["copy"].as_str().unwrap())
        .collect();
    assert_eq!(copies, ["primary", "backup"], "{report}");

    let mut permissions = std::fs::metadata(&copy).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&copy, permissions).unwrap();
    std::fs::write(&copy, b"changed behind the product's back").unwrap();
    let (output, report) = run_json(data.path(), &["verify", "--tier", "evidence"]);
    assert_eq!(output.status.code(), Some(3), "{report}");
    let failed = failed_objects(&report);
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(
        (failed[0]["copy"].as_str(), failed[0]["key"].as_str()),
        (Some("backup"), Some(key.as_str()))
    );
}

#[test]
fn compliance_report_names_evidence_whose_local_backup_is_missing() {
    let (data, backup, key) = backed_up();
    let report_of = |data: &Path| {
        let (output, report) = run_json(
            data,
            &["report", "--from", "2000-01-01", "--to", "2099-12-31"],
        );
        assert_success(&output);
        report
    };
    let report = report_of(data.path());
    assert_eq!(
        report["evidence_without_backup"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );

    std::fs::remove_file(backup_copy(backup.path(), &key)).unwrap();
    let report = report_of(data.path());
    let missing = report["evidence_without_backup"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{report}");
    assert_eq!(missing[0]["key"], key.as_str());
}

#[test]
fn backup_directory_inside_the_store_is_refused() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("config.toml"),
        "ingest_tier = \"evidence\"\n[store.local]\nbackup_dir = \"store/evidence/copy\"\n",
    )
    .unwrap();
    let output = run(data.path(), &["process", fixture(SAMPLE).to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("backup_dir") && stderr.contains("another directory"),
        "{stderr}"
    );
    assert!(
        !data.path().join("store/evidence/copy").exists(),
        "a refused backup_dir makes no folders inside the evidence tier"
    );

    let output = run(data.path(), &["--lang", "zh", "process", fixture(SAMPLE).to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("备份必须是另一个目录"), "{stderr}");
    assert!(!stderr.contains("another directory"), "no English in the Chinese message: {stderr}");
}

#[test]
fn backup_dir_holding_store_makes_nothing() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("config.toml"),
        "ingest_tier = \"evidence\"\n[store.local]\nbackup_dir = \".\"\n",
    )
    .unwrap();
    let output = run(data.path(), &["process", fixture(SAMPLE).to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another directory"), "{stderr}");
    for made in [".staging", "routine", "evidence", "longterm", "public"] {
        assert!(
            !data.path().join(made).exists(),
            "{made} was made in the data directory"
        );
    }
}
