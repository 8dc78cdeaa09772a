//! Tests that `check --timeline` never replaces an existing file. Given a
//! recording's own name by mistake, it used to overwrite the footage with
//! the picture.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

fn check(data_dir: &Path, input: &Path, picture: &Path, lang: &str) -> Output {
    run(
        data_dir,
        &["--lang", lang, "check", input.to_str().unwrap(), "--timeline", picture.to_str().unwrap()],
    )
}

#[test]
fn timeline_onto_recording_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let recording = work.path().join("base-10s.mp4");
    let source = fixture("cases/base-10s.mp4");
    std::fs::copy(&source, &recording).unwrap();
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
    let source = fixture("cases/base-10s.mp4");
    let picture = work.path().join("timeline.png");

    let output = check(&work.path().join("data"), &source, &picture, "en");
    assert_success(&output);
    let bytes = std::fs::read(&picture).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG is written");
}
