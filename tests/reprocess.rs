//! `evidence reprocess` with a disclosed clip: a moved unit boundary cuts a
//! new clip version, and the redacted copy exported from the old version
//! is made again from the new one while the old copy stays verifiable.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const CASE_ID: &str = "QY-2024-0501-001";

const U1_V1: &str = "clips/QY-2024-0501-001/U1/HB0631/v1.mp4";
const U1_V2: &str = "clips/QY-2024-0501-001/U1/HB0631/v2.mp4";

/// `tester` runs the product and files the request; `li` approves it.
const CONFIG: &str = r#"
[roles]
tester = ["operator", "auditor", "disclosure"]
li = ["approver"]

[disclosure]
watermark = "公开副本 {request}"
"#;

/// Processes the session case, then requests, approves and exports a
/// redacted copy of U1's first clip; returns the request id.
fn exported_clip(data: &Path, out: &Path) -> String {
    std::fs::write(data.join("config.toml"), CONFIG).unwrap();
    on_session(data, "process");
    assert!(data.join("store/evidence").join(U1_V1).is_file());

    export_u1_v1(data, out)
}

/// Requests, approves and exports a redacted copy of U1's first clip,
/// which is stored; returns the request id.
fn export_u1_v1(data: &Path, out: &Path) -> String {
    let spec = fixture("redact-example.json");
    let item = format!("evidence/{U1_V1}");
    let request = success_json(&run_as(
        data,
        "tester",
        &[
            "--json",
            "disclose",
            "request",
            "--purpose",
            "litigation",
            "--item",
            &item,
            "--spec",
            spec.to_str().unwrap(),
        ],
    ));
    let id = request["request_id"].as_str().unwrap().to_string();
    success_json(&run_as(
        data,
        "li",
        &["--json", "disclose", "approve", &id],
    ));
    success_json(&run_as(
        data,
        "tester",
        &[
            "--json",
            "disclose",
            "export",
            &id,
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    id
}

#[test]
fn reprocess_remakes_redacted_copy_from_new_clip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = dir.path().join("out");
    let id = exported_clip(&data, &out);
    let view = success_json(&run_as(
        &data,
        "tester",
        &["--json", "disclose", "show", &id],
    ));
    let exported = &view["exports"][0];
    let old_key = exported["key"].as_str().unwrap().to_string();
    let old_sha = exported["sha256"].as_str().unwrap().to_string();

    let record = moved_boundary(&data);
    let report = run_json_ok(
        &data,
        &[
            "reprocess",
            "--case",
            CASE_ID,
            "--record",
            record.to_str().unwrap(),
        ],
    );
    let u1 = clip(&report, "U1");
    assert_eq!(u1["version"], 2);
    assert_eq!(u1["status"], "created");
    let new_clip_sha = sha256_of(&data.join("store/evidence").join(U1_V2));

    let remade = report["redactions"].as_array().unwrap();
    assert_eq!(remade.len(), 1, "{report:#}");
    let copy = &remade[0];
    assert_eq!(copy["request_id"], id.as_str());
    assert_eq!(copy["position"], 1);
    assert_eq!(copy["clip_version"], 2);
    assert_eq!(copy["clip"], format!("evidence/{U1_V2}"));
    assert_eq!(copy["clip_sha256"], new_clip_sha.as_str());
    assert_eq!(copy["replaces"], format!("public/{old_key}"));
    assert_eq!(copy["status"], "created");
    assert!(report["redactions_failed"].as_array().unwrap().is_empty());

    // The new copy is stored with a log and a manifest that name the clip
    // version it was made from.
    let object = copy["object"].as_str().unwrap();
    let key = object.strip_prefix("evidence/").unwrap();
    assert!(
        key.starts_with("redacted/QY-2024-0501-001/U1/HB0631/v2/"),
        "{key}"
    );
    let path = data.join("store/evidence").join(key);
    assert_eq!(sha256_of(&path), copy["sha256"].as_str().unwrap());
    assert_ne!(copy["sha256"].as_str().unwrap(), old_sha);
    let log: Value = read_json(
        data.join("store/evidence")
            .join(format!("{key}.redaction.json")),
    );
    assert_eq!(log["original"]["sha256"], new_clip_sha.as_str());
    let manifest: Value = read_json(
        data.join("store/evidence")
            .join(format!("{key}.manifest.json")),
    );
    assert_eq!(manifest["artefact"], "redacted");
    assert_eq!(manifest["made_from"]["clip_version"], 2);
    assert_eq!(
        manifest["made_from"]["clip_key"],
        format!("evidence/{U1_V2}")
    );
    assert_eq!(manifest["made_from"]["clip_sha256"], new_clip_sha.as_str());
    assert_eq!(manifest["made_from"]["request_id"], id.as_str());

    let catalog = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let (clip_version, clip_sha): (u32, String) = catalog
        .query_row(
            "SELECT clip_version, clip_sha256 FROM redactions WHERE request_id = ?1",
            [&id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(clip_version, 2);
    assert_eq!(clip_sha, new_clip_sha);

    // The exported copy and the first clip stay, and both still verify.
    let old_path = data.join("store/public").join(&old_key);
    assert_eq!(sha256_of(&old_path), old_sha);
    assert!(data.join("store/evidence").join(U1_V1).is_file());
    let (_, fixity) = run_json(&data, &["verify"]);
    let status_of = |wanted: &str| {
        fixity["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["key"] == wanted)
            .map(|o| o["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&old_key).as_deref(), Some("ok"), "{fixity:#}");
    assert_eq!(status_of(key).as_deref(), Some("ok"), "{fixity:#}");
    assert_eq!(
        status_of(&format!("{key}.redaction.json")).as_deref(),
        Some("ok"),
        "{fixity:#}"
    );
    assert_eq!(status_of(U1_V1).as_deref(), Some("ok"), "{fixity:#}");
    assert_eq!(status_of(U1_V2).as_deref(), Some("ok"), "{fixity:#}");
    let (output, evidence_tier) = run_json(&data, &["verify", "--tier", "evidence"]);
    assert!(output.status.success(), "{evidence_tier:#}");

    let (output, audit) = run_json(&data, &["audit", "verify"]);
    assert_eq!(output.status.code(), Some(0), "{audit:#}");
    assert_eq!(audit["objects_missing"].as_array().unwrap().len(), 0);

    // Reprocessing again makes nothing twice.
    let (output, again) = run_json(&data, &["reprocess", "--case", CASE_ID]);
    assert_success(&output);
    assert!(
        again["redactions"].as_array().unwrap().is_empty(),
        "{again:#}"
    );

    let text = run(&data, &["--lang", "en", "reprocess", "--case", CASE_ID]);
    assert_success(&text);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("case reprocessed"), "{stdout}");
}

#[test]
fn reprocess_without_new_clip_remakes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = dir.path().join("out");
    exported_clip(&data, &out);

    let report = run_json_ok(&data, &["reprocess", "--case", CASE_ID]);
    assert!(
        report["redactions"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(!data.join("store/evidence/redacted").exists());
}

#[test]
fn reprocess_names_an_unchanged_clip_in_the_language_asked_for() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("config.toml"), CONFIG).unwrap();
    let case = fixture("cases/session/case.json");
    let session = fixture("cases/session");
    let processed = run_as(
        data.path(),
        "tester",
        &["process", session.to_str().unwrap(), "--case", case.to_str().unwrap()],
    );
    assert_success(&processed);

    for (lang, unchanged, other) in [("zh", "(未变化)", "unchanged"), ("en", "(unchanged)", "未变化")] {
        let output = run_as(
            data.path(),
            "tester",
            &["--lang", lang, "reprocess", "--case", CASE_ID],
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert_eq!(stdout.matches(unchanged).count(), 2, "{lang}: {stdout}");
        assert!(!stdout.contains(other), "{lang}: {stdout}");
    }
}

#[test]
fn remade_copy_left_by_killed_run_is_registered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = dir.path().join("out");
    exported_clip(&data, &out);
    let record = moved_boundary(&data);
    let first = run_json_ok(
        &data,
        &[
            "reprocess",
            "--case",
            CASE_ID,
            "--record",
            record.to_str().unwrap(),
        ],
    );
    let copy = &first["redactions"][0];
    let key = copy["object"]
        .as_str()
        .unwrap()
        .strip_prefix("evidence/")
        .unwrap()
        .to_string();

    // As if the run had been killed after storing the copy: no catalog
    // row and no manifest yet.
    let catalog = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    catalog.execute("DELETE FROM redactions", []).unwrap();
    let manifest = data
        .join("store/evidence")
        .join(format!("{key}.manifest.json"));
    let mut permissions = std::fs::metadata(manifest.parent().unwrap())
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(manifest.parent().unwrap(), permissions).unwrap();
    std::fs::remove_file(&manifest).unwrap();

    let again = run_json_ok(&data, &["reprocess", "--case", CASE_ID]);
    let redo = again["redactions"].as_array().unwrap();
    assert_eq!(redo.len(), 1, "{again:#}");
    assert_eq!(redo[0]["status"], "registered");
    assert_eq!(redo[0]["object"], copy["object"]);
    assert_eq!(redo[0]["sha256"], copy["sha256"]);
    let rebuilt: Value = read_json(&manifest);
    assert_eq!(rebuilt["sha256"], copy["sha256"]);
    assert_eq!(rebuilt["made_from"]["clip_version"], 2);
    let rows: i64 = catalog
        .query_row("SELECT COUNT(*) FROM redactions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn worker_remakes_copy_after_changed_case_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("config.toml"), CONFIG).unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for entry in std::fs::read_dir(fixture("cases/session")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, inbox.join(path.file_name().unwrap())).unwrap();
    }
    let worker = |data: &Path| {
        let output = run(
            data,
            &[
                "worker",
                "--watch",
                inbox.to_str().unwrap(),
                "--settle-secs",
                "1",
                "--until-idle",
            ],
        );
        assert_success(&output);
    };
    worker(&data);
    assert!(data.join("store/evidence").join(U1_V1).is_file());

    // Request, approve and export U1's first clip.
    let out = dir.path().join("out");
    let id = export_u1_v1(&data, &out);

    // The corrected record arrives in the watched folder.
    let corrected = std::fs::read(moved_boundary(&data)).unwrap();
    std::fs::write(inbox.join("case.json"), corrected).unwrap();
    worker(&data);

    assert!(data.join("store/evidence").join(U1_V2).is_file());
    let remade = data
        .join("store/evidence/redacted/QY-2024-0501-001/U1/HB0631/v2")
        .join(format!("{id}-01.mp4"));
    assert!(remade.is_file(), "{}", remade.display());
    let (_, audit) = run_json(&data, &["audit", "verify"]);
    assert_eq!(audit["intact"], true, "{audit:#}");
}
