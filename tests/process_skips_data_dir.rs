//! Tests that `process` on a folder that contains the data directory
//! leaves the catalog and the store alone. Before, `process .` beside the
//! default `./evidence-data` stored them as footage, more on every run.
//! The file has its own helpers, so it does not depend on others.

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
    let footage = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/base-10s.mp4");
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
