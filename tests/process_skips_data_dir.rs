//! Tests that `process` on a folder that contains the data directory
//! leaves the catalog and the store alone. Before, `process .` beside the
//! default `./evidence-data` stored them as footage, more on every run.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn process_json(data_dir: &Path, input: &Path) -> (i32, Value) {
    let (output, report) = run_json(data_dir, &["process", input.to_str().unwrap()]);
    (output.status.code().unwrap_or(-1), report)
}

fn count_originals(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            count += count_originals(&path);
        } else if !path.to_string_lossy().ends_with(".manifest.json") {
            count += 1;
        }
    }
    count
}

#[test]
fn data_dir_inside_input_is_skipped() {
    let uploads = tempfile::tempdir().unwrap();
    let footage = fixture("cases/base-10s.mp4");
    std::fs::copy(&footage, uploads.path().join("base-10s.mp4")).unwrap();
    let data = uploads.path().join("evidence-data");

    for (run, expected) in [(1, "ingested"), (2, "already_ingested")] {
        let (code, report) = process_json(&data, uploads.path());
        assert_eq!(code, 0, "run {run}: {report:#}");
        let files = report["files"].as_array().unwrap();
        assert_eq!(files.len(), 2, "run {run}: {report:#}");
        assert_eq!(files[0]["status"], expected, "run {run}: {report:#}");
        assert!(
            files[1]["path"]
                .as_str()
                .unwrap()
                .ends_with("evidence-data"),
            "run {run}: {report:#}"
        );
        assert_eq!(files[1]["status"], "skipped", "run {run}");
    }

    let originals = data.join("store/routine/originals");
    assert_eq!(count_originals(&originals), 1);

    let (code, report) = process_json(&data, &data);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["files"][0]["status"], "skipped", "{report:#}");
    assert_eq!(count_originals(&originals), 1);
}
