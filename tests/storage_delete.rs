//! `storage delete` on the local store: refused before retention ends, in
//! Chinese and English, refused without the approver role, and once
//! retention has ended the object, its manifest and its separate backup
//! copy are removed and each removal is a `delete` event in the audit chain.
//! The same refusals on an S3 server with object lock are in `tests/s3.rs`.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const SAMPLE: &str = "cases/base-10s.mp4";

fn setup(config: &str) -> (tempfile::TempDir, String) {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("config.toml"), config).unwrap();
    let file = fixture(SAMPLE);
    let output = run(data.path(), &["process", file.to_str().unwrap()]);
    assert_success(&output);
    (data, sha256_of(&file))
}

fn delete(data: &Path, args: &[&str]) -> (std::process::Output, String) {
    let mut full = vec!["storage", "delete"];
    full.extend_from_slice(args);
    let output = run(data, &full);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output, stderr)
}

fn stored_path(data: &Path, sha256: &str) -> std::path::PathBuf {
    let catalog = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let (tier, key): (String, String) = catalog
        .query_row(
            "SELECT tier, key FROM recordings WHERE sha256 = ?1",
            [sha256],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    data.join("store").join(tier).join(key)
}

fn delete_events(data: &Path) -> Vec<(String, String)> {
    let catalog = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let mut statement = catalog
        .prepare(
            "SELECT object, detail_json FROM audit_events WHERE action = 'delete' ORDER BY seq",
        )
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn early_deletion_refused_in_both_languages() {
    let (data, sha256) = setup("[roles]\ntester = [\"operator\", \"approver\"]\n");
    let stored = stored_path(data.path(), &sha256);
    assert!(stored.exists(), "{}", stored.display());

    let (output, stderr) = delete(data.path(), &["--lang", "zh", "--sha256", &sha256]);
    assert!(!output.status.success());
    assert!(
        stderr.contains("不能删除") && stderr.contains("保存期限至"),
        "{stderr}"
    );
    let key = stored
        .strip_prefix(data.path().join("store").join("routine"))
        .unwrap();
    let (output, stderr) = delete(
        data.path(),
        &["--lang", "en", "--tier", "routine", key.to_str().unwrap()],
    );
    assert!(!output.status.success());
    assert!(stderr.contains("under retention until"), "{stderr}");

    assert_eq!(sha256_of(&stored), sha256, "the original is untouched");
    assert!(
        delete_events(data.path()).is_empty(),
        "nothing was deleted, nothing is logged"
    );
}

#[test]
fn deletion_needs_the_approver_role() {
    let (data, sha256) = setup("[roles]\ntester = [\"operator\", \"auditor\"]\n");
    let (output, stderr) = delete(data.path(), &["--lang", "en", "--sha256", &sha256]);
    assert!(!output.status.success());
    assert!(
        stderr.contains("storage delete") && stderr.contains("approver"),
        "{stderr}"
    );
    assert!(stored_path(data.path(), &sha256).exists());
}

#[test]
fn unknown_recording_is_named_in_both_languages() {
    let (data, _) = setup("[roles]\ntester = [\"operator\", \"approver\"]\n");
    let missing = "0".repeat(64);
    let (output, stderr) = delete(data.path(), &["--lang", "zh", "--sha256", &missing]);
    assert!(!output.status.success());
    assert!(
        stderr.contains("目录中没有") && stderr.contains(&missing),
        "{stderr}"
    );
}

#[test]
fn deletion_after_retention_removes_all_copies() {
    let backup = tempfile::tempdir().unwrap();
    let (data, sha256) = setup(&format!(
        "ingest_tier = \"evidence\"\n[roles]\ntester = [\"operator\", \"approver\", \"auditor\"]\n[store]\nevidence_retention = 0\n[store.local]\nbackup_dir = \"{}\"\n",
        backup.path().display()
    ));
    let stored = stored_path(data.path(), &sha256);
    let key = stored
        .strip_prefix(data.path().join("store").join("evidence"))
        .unwrap()
        .to_path_buf();
    let backed_up = backup.path().join("evidence").join(&key);
    assert_eq!(
        sha256_of(&backed_up),
        sha256,
        "ingest wrote the separate backup"
    );

    let mut args = vec!["storage", "delete", "--sha256", &sha256];
    args.push("--json");
    let output = run(data.path(), &args);
    assert_success(&output);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let copies: Vec<&str> = report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["copy"].as_str().unwrap())
        .collect();
    assert_eq!(copies, ["primary", "backup"]);
    assert_eq!(report["sha256"], sha256.as_str());

    for gone in [&stored, &backed_up] {
        assert!(!gone.exists(), "{} is deleted", gone.display());
        let manifest = format!("{}.manifest.json", gone.display());
        assert!(!Path::new(&manifest).exists(), "{manifest} is deleted");
    }
    let events = delete_events(data.path());
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|(object, _)| *object == sha256));
    assert!(
        events[0].1.contains("\"primary\"") && events[1].1.contains("\"backup\""),
        "{events:?}"
    );

    // Neither the fixity check nor the compliance report expects it any more.
    let (output, fixity) = run_json(data.path(), &["verify", "--tier", "evidence"]);
    assert!(output.status.success(), "{fixity}");
    assert_eq!(fixity["failed"], 0, "{fixity}");
    let (output, report) = run_json(
        data.path(),
        &["report", "--from", "2000-01-01", "--to", "2099-12-31"],
    );
    assert_success(&output);
    assert_eq!(
        report["evidence_without_backup"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );

    // The same file uploaded again is stored again, with its manifest.
    let again = run_json_ok(data.path(), &["process", fixture(SAMPLE).to_str().unwrap()]);
    assert_eq!(again["files"][0]["status"], "ingested", "{again:#}");
    assert_eq!(sha256_of(&stored), sha256);
    assert!(Path::new(&format!("{}.manifest.json", stored.display())).exists());
    assert_eq!(sha256_of(&backed_up), sha256, "the backup copy is written again");
    let fixity = run_json_ok(data.path(), &["verify", "--tier", "evidence"]);
    assert_eq!(fixity["failed"], 0, "{fixity}");
}

#[test]
fn deletion_names_each_copy_in_chinese() {
    let backup = tempfile::tempdir().unwrap();
    let (data, sha256) = setup(&format!(
        "ingest_tier = \"evidence\"\n[roles]\ntester = [\"operator\", \"approver\"]\n[store]\nevidence_retention = 0\n[store.local]\nbackup_dir = \"{}\"\n",
        backup.path().display()
    ));
    let output = run(data.path(), &["--lang", "zh", "storage", "delete", "--sha256", &sha256]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("已删除 ") && lines[0].ends_with("（主副本）"),
        "{stdout}"
    );
    assert!(lines[1].ends_with("（备份副本）"), "{stdout}");
}

#[test]
fn tier_without_key_asks_for_the_key_only() {
    let data = tempfile::tempdir().unwrap();
    let (output, stderr) = delete(data.path(), &["--tier", "evidence"]);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("<KEY>"), "{stderr}");
    assert!(!stderr.contains("--sha256"), "{stderr}");
}

#[test]
fn object_without_manifest_and_bad_key_are_refused_in_chinese_only() {
    let (data, _) = setup("[roles]\ntester = [\"operator\", \"approver\"]\n");
    let anchors = data.path().join("store/evidence/audit/head");
    let anchor = std::fs::read_dir(&anchors)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let key = format!("audit/head/{}", anchor.to_string_lossy());
    let (output, stderr) = delete(data.path(), &["--lang", "zh", "--tier", "evidence", &key]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("没有清单，无法确定保存期限"), "{stderr}");
    assert!(!stderr.contains("unknown"), "{stderr}");
    assert!(anchors.join(&anchor).exists(), "the anchor is kept");

    let (output, stderr) = delete(data.path(), &["--lang", "zh", "--tier", "evidence", "../x"]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("不允许"), "{stderr}");
    assert!(!stderr.contains("not allowed"), "{stderr}");
}
