//! Tests that processing an upload again stores its original again when
//! the stored copy has gone missing, instead of reporting it as already
//! ingested while the store lacks it. The file has its own helpers, so it
//! does not depend on others.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

fn run_json(data_dir: &Path, args: &[&str]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_evidence"))
        .env_remove("EVIDENCE_DATA_DIR")
        .env("EVIDENCE_ACTOR", "tester")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--json")
        .args(args)
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

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn missing_original_is_stored_again() {
    let data = tempfile::tempdir().unwrap();
    let upload = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/base-10s.mp4");
    let upload = upload.to_str().unwrap();

    let (code, first) = run_json(data.path(), &["process", upload]);
    assert_eq!(code, 0, "{first:#}");
    let stored = first["files"][0]["evidence_path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(&stored).unwrap();

    let (code, second) = run_json(data.path(), &["process", upload]);
    assert_eq!(code, 0, "{second:#}");
    let entry = &second["files"][0];
    assert_eq!(entry["status"], "ingested", "{entry:#}");
    assert_eq!(entry["stored_now"], true, "{entry:#}");
    assert_eq!(entry["evidence_path"], stored.as_str());
    assert_eq!(sha256_of(Path::new(&stored)), sha256_of(Path::new(upload)));

    let (code, third) = run_json(data.path(), &["process", upload]);
    assert_eq!(code, 0, "{third:#}");
    assert_eq!(third["files"][0]["status"], "already_ingested");

    let (code, fixity) = run_json(data.path(), &["verify"]);
    assert_eq!(code, 0, "{fixity:#}");
    assert_eq!(fixity["failed"], 0, "{fixity:#}");
}
