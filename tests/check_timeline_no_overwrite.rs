//! Tests that `check --timeline` never replaces an existing file. Given a
//! recording's own name by mistake, it used to overwrite the footage with
//! the picture. The file has its own helpers, so it does not depend on
//! others.

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn check(data_dir: &Path, input: &Path, picture: &Path, lang: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evidence"))
        .env_remove("EVIDENCE_DATA_DIR")
        .env("EVIDENCE_ACTOR", "tester")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--lang")
        .arg(lang)
        .arg("check")
        .arg(input)
        .arg("--timeline")
        .arg(picture)
        .output()
        .expect("the binary runs")
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn timeline_onto_recording_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let recording = work.path().join("base-10s.mp4");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/base-10s.mp4");
    std::fs::copy(&fixture, &recording).unwrap();
    let before = sha256_of(&recording);

    let english = check(&data, &recording, &recording, "en");
    let text = String::from_utf8_lossy(&english.stdout);
    assert_eq!(english.status.code(), Some(3), "{text}");
    assert!(text.contains("already exists"), "{text}");
    assert_eq!(sha256_of(&recording), before, "the recording is unchanged");

    let chinese = check(&data, &recording, &recording, "zh");
    let text = String::from_utf8_lossy(&chinese.stdout);
    assert_eq!(chinese.status.code(), Some(3), "{text}");
    assert!(text.contains("已存在"), "{text}");
    assert_eq!(sha256_of(&recording), before, "the recording is unchanged");
}

#[test]
fn timeline_to_new_name_is_written() {
    let work = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/base-10s.mp4");
    let picture = work.path().join("timeline.png");

    let output = check(&work.path().join("data"), &fixture, &picture, "en");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&picture).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG is written");
}
