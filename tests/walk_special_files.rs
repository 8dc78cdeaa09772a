//! Tests that a folder walk names every entry it does not process. A pipe
//! or a link to one inside a given folder is reported as skipped instead of
//! vanishing from the report. The file has its own helpers, so it does not
//! depend on others.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn process_json(data_dir: &Path, input: &Path) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_evidence"))
        .env_remove("EVIDENCE_DATA_DIR")
        .env("EVIDENCE_ACTOR", "tester")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--json")
        .arg("process")
        .arg(input)
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), json)
}

#[test]
fn pipes_in_folder_are_skipped() {
    let data = tempfile::tempdir().unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let footage = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/base-10s.mp4");
    std::fs::copy(&footage, uploads.path().join("base-10s.mp4")).unwrap();
    let status = Command::new("mkfifo")
        .arg(uploads.path().join("pipe.mp4"))
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("pipe.mp4", uploads.path().join("link-to-pipe.mp4")).unwrap();

    let (code, report) = process_json(data.path(), uploads.path());
    assert_eq!(code, 0, "{report:#}");

    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{report:#}");
    for name in ["pipe.mp4", "link-to-pipe.mp4"] {
        let entry = files
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("{name} is missing from the report: {report:#}"));
        assert_eq!(entry["status"], "skipped", "{name}");
        assert_eq!(entry["reason"]["en"], "not a regular file", "{name}");
        assert_eq!(entry["reason"]["zh"], "不是普通文件", "{name}");
    }
    let ingested: Vec<_> = files.iter().filter(|f| f["status"] == "ingested").collect();
    assert_eq!(ingested.len(), 1, "{report:#}");
}

#[test]
fn missing_input_reason_is_in_chinese() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-upload.mp4");
    let output = Command::new(env!("CARGO_BIN_EXE_evidence"))
        .env_remove("EVIDENCE_DATA_DIR")
        .env("EVIDENCE_ACTOR", "tester")
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .arg("--json")
        .arg("process")
        .arg(&missing)
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(3));

    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let entry = &report["files"][0];
    assert_eq!(entry["status"], "failed", "{entry:#}");
    let zh = entry["reason"]["zh"].as_str().unwrap();
    assert!(zh.starts_with("无法访问：文件或目录不存在"), "{zh}");
    let en = entry["reason"]["en"].as_str().unwrap();
    assert!(en.starts_with("cannot access: No such file"), "{en}");
}
