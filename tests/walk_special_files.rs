//! Tests that a folder walk names every entry it does not process. A pipe
//! or a link to one inside a given folder is reported as skipped instead of
//! vanishing from the report.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn process_json(data_dir: &Path, input: &Path) -> (i32, Value) {
    let (output, report) = run_json(data_dir, &["process", input.to_str().unwrap()]);
    (output.status.code().unwrap_or(-1), report)
}

#[test]
fn pipes_in_folder_are_skipped() {
    let data = tempfile::tempdir().unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let footage = fixture("cases/base-10s.mp4");
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
    let (output, report) = run_json(&data.path().join("data"), &["process", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));

    let entry = &report["files"][0];
    assert_eq!(entry["status"], "failed", "{entry:#}");
    let zh = entry["reason"]["zh"].as_str().unwrap();
    assert!(zh.starts_with("无法访问：文件或目录不存在"), "{zh}");
    let en = entry["reason"]["en"].as_str().unwrap();
    assert!(en.starts_with("cannot access: No such file"), "{en}");
}
