//! Tests that `redact` rejects a mask or audio range that starts after the
//! recording ends. Such an item would hide nothing while the output still
//! looks redacted.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

fn redact(data_dir: &Path, spec: &Path, output: &Path, lang: &str) -> Output {
    let input = fixture("cases/base-10s.mp4");
    run(
        data_dir,
        &[
            "--lang",
            lang,
            "redact",
            input.to_str().unwrap(),
            "--spec",
            spec.to_str().unwrap(),
            "--out",
            output.to_str().unwrap(),
        ],
    )
}

#[test]
fn items_after_recording_end_are_rejected() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let output = work.path().join("out.mp4");
    let cases = [
        (
            "masks[0].from",
            r#"{"masks":[{"shape":"rectangle","style":"solid","from":50,"to":60,
                "keyframes":[{"x":0,"y":0,"width":40,"height":40}],
                "reason":"other","author":"130631001"}]}"#,
        ),
        (
            "audio[0].from",
            r#"{"audio":[{"from":11,"to":12,"action":"mute",
                "reason":"other","author":"130631001"}]}"#,
        ),
    ];
    for (field, text) in cases {
        let spec = work.path().join("spec.json");
        std::fs::write(&spec, text).unwrap();

        let english = redact(&data, &spec, &output, "en");
        let stderr = String::from_utf8_lossy(&english.stderr);
        assert_eq!(english.status.code(), Some(1), "{field}: {stderr}");
        assert!(stderr.contains(field), "{field}: {stderr}");
        assert!(stderr.contains("would hide nothing"), "{field}: {stderr}");

        let chinese = redact(&data, &spec, &output, "zh");
        let stderr = String::from_utf8_lossy(&chinese.stderr);
        assert_eq!(chinese.status.code(), Some(1), "{field}: {stderr}");
        assert!(stderr.contains("此项不会遮盖任何内容"), "{field}: {stderr}");

        let written: Vec<_> = std::fs::read_dir(work.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|name| name.starts_with("out.mp4") || name.starts_with(".out.mp4"))
            .collect();
        assert!(written.is_empty(), "{field}: {written:?}");
    }
}

#[test]
fn mask_before_recording_end_is_kept() {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"masks":[{"shape":"rectangle","style":"solid","from":9.9,
            "keyframes":[{"x":0,"y":0,"width":40,"height":40}],
            "reason":"other","author":"130631001"}]}"#,
    )
    .unwrap();
    let output = work.path().join("out.mp4");

    let result = redact(&work.path().join("data"), &spec, &output, "en");
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(output.exists());
}
