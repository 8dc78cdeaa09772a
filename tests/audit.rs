//! The audit chain: ingests are logged, and `audit verify` names an event
//! that was changed, removed or reordered behind the product's back; the
//! auditor role guards it and the compliance report.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn write_roles(data: &Path) {
    std::fs::write(
        data.join("config.toml"),
        "[roles]\ntester = [\"operator\", \"auditor\"]\nclerk = [\"operator\"]\n",
    )
    .unwrap();
}

/// Makes a data directory with three ingested chapters and two clips: five audit events.
fn logged_data() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    write_roles(data.path());
    let output = run(data.path(), &process_args());
    assert_success(&output);
    data
}

/// The three chapters of the session with their case record.
fn process_args() -> Vec<&'static str> {
    let mut args = vec!["process"];
    for name in [
        "HB0631_130631001_20240501100000_0001.MP4",
        "HB0631_130631001_20240501100010_0002.MP4",
        "HB0631_130631001_20240501100027_0003.MP4",
    ] {
        args.push(Box::leak(
            fixture(&format!("cases/session/{name}"))
                .display()
                .to_string()
                .into_boxed_str(),
        ));
    }
    args.push("--case");
    args.push(Box::leak(
        fixture("cases/session/case.json")
            .display()
            .to_string()
            .into_boxed_str(),
    ));
    args
}

fn tamper(data: &Path, sql: &str) {
    let connection = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    connection.execute_batch(sql).unwrap();
}

fn verify(data: &Path) -> (std::process::Output, Value) {
    run_json(data, &["audit", "verify"])
}

fn only_problem(report: &Value) -> &Value {
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report:#}");
    &problems[0]
}

#[test]
fn every_ingest_is_logged_and_the_chain_verifies() {
    let data = logged_data();
    let (output, report) = verify(data.path());
    assert_success(&output);
    assert_eq!(report["intact"], true);
    // One event per ingested chapter (3), per read of a chapter by the
    // split (3) and per clip cut for a unit (2).
    assert_eq!(report["checked"], 8);

    let again = run(data.path(), &process_args());
    assert_success(&again);
    assert_eq!(
        verify(data.path()).1["checked"],
        11,
        "an upload seen again is not a new ingest, an unchanged clip not a new clip; \
         only the split's three reads are new"
    );
}

#[test]
fn changed_event_is_named() {
    let data = logged_data();
    tamper(
        data.path(),
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2",
    );
    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3));
    let problem = only_problem(&report);
    assert_eq!(problem["seq"], 2);
    assert_eq!(problem["kind"], "changed");
}

#[test]
fn removed_event_is_named() {
    let data = logged_data();
    tamper(data.path(), "DELETE FROM audit_events WHERE seq = 2");
    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3));
    let problem = only_problem(&report);
    assert_eq!(problem["seq"], 3);
    assert_eq!(problem["kind"], "removed");
    assert!(problem["message"]["en"]
        .as_str()
        .unwrap()
        .contains("after #1"));
}

#[test]
fn reordered_events_are_named() {
    let data = logged_data();
    tamper(
        data.path(),
        "UPDATE audit_events SET seq = 100 WHERE seq = 2;
         UPDATE audit_events SET seq = 2 WHERE seq = 3;
         UPDATE audit_events SET seq = 3 WHERE seq = 100;",
    );
    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3));
    let problems = report["problems"].as_array().unwrap();
    assert!(!problems.is_empty());
    assert!(
        problems.iter().all(|p| p["kind"] == "reordered"),
        "{report:#}"
    );
    assert_eq!(
        problems[0]["seq"], 2,
        "the event moved ahead is named first"
    );
}

#[test]
fn audit_and_report_refuse_people_without_the_auditor_role() {
    let data = logged_data();
    let cases: [&[&str]; 2] = [
        &["audit", "verify"],
        &["report", "--from", "2024-05-01", "--to", "2024-05-31"],
    ];
    for args in cases {
        assert_refused(data.path(), "clerk", "auditor", args);
    }
}

#[test]
fn compliance_report_counts_the_period() {
    let data = logged_data();
    let out = tempfile::tempdir().unwrap();
    let report = run_json_ok(
        data.path(),
        &[
            "report",
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-31",
            "--out",
            out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(report["totals"]["recordings"], 3);
    // Uploaded years after May 2024, each chapter is late and has no filing.
    assert_eq!(report["totals"]["late_uploads"], 3);
    assert_eq!(report["totals"]["late_uploads_without_filing"], 3);
    // The 7 s stop between chapters 2 and 3 (CASES.md: session).
    assert_eq!(report["totals"]["unexplained_gaps"], 1);
    let gap = report["unexplained_gaps"][0]["duration"].as_f64().unwrap();
    assert!((gap - 6.97).abs() < 0.05, "gap {gap}");
    assert_eq!(
        report["fixity"]["never_checked"].as_array().unwrap().len(),
        3
    );
    assert!(out
        .path()
        .join("compliance-2024-05-01_2024-05-31.json")
        .is_file());
    assert!(out
        .path()
        .join("coverage-2024-05-01_2024-05-31.png")
        .is_file());

    let (_, outside) = run_json(
        data.path(),
        &["report", "--from", "2024-06-01", "--to", "2024-06-30"],
    );
    assert_eq!(outside["totals"]["recordings"], 0);
}

#[test]
fn disclosure_request_refuses_people_without_the_role() {
    let data = logged_data();
    let sha = sha256_of(&fixture(
        "cases/session/HB0631_130631001_20240501100000_0001.MP4",
    ));
    let spec = fixture("redact-example.json");
    assert_refused(
        data.path(),
        "clerk",
        "disclosure",
        &[
            "disclose",
            "request",
            "--purpose",
            "litigation",
            "--item",
            &sha,
            "--spec",
            spec.to_str().unwrap(),
        ],
    );
}

/// Finds the stored files (manifests excluded) under `prefix` of every tier.
fn stored_files_under(data: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for tier in ["routine", "evidence", "longterm", "public"] {
        let mut stack = vec![data.join("store").join(tier).join(prefix)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !path.to_string_lossy().ends_with(".manifest.json") {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    found
}

/// Makes a read-only stored file and its folder writable, as someone with
/// shell access to the store would.
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for target in [path.parent().unwrap(), path] {
        let mut permissions = std::fs::metadata(target).unwrap().permissions();
        permissions.set_mode(permissions.mode() | 0o200);
        std::fs::set_permissions(target, permissions).unwrap();
    }
}

#[test]
fn untouched_store_verifies_with_anchors_and_objects() {
    let data = logged_data();
    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["intact"], true);
    assert!(report["anchors"].as_u64().unwrap() >= 3, "{report:#}");
    assert_eq!(
        report["anchor"]["seq"], report["checked"],
        "the newest anchor vouches for the last event"
    );
    assert_eq!(report["anchor"]["hash"], report["head_hash"]);
    assert!(report["missing_tail"].is_null());
    // Three originals (ingest) and two clips (derive).
    assert_eq!(report["objects_checked"], 5);
    assert_eq!(report["objects_missing"].as_array().unwrap().len(), 0);
    assert_eq!(report["objects_changed"].as_array().unwrap().len(), 0);

    let (output, fixity) = run_json(data.path(), &["verify"]);
    assert!(
        output.status.success(),
        "anchors do not disturb the fixity check: {fixity:#}"
    );
}

#[test]
fn events_cut_off_the_end_are_named() {
    let data = logged_data();
    let (_, before) = verify(data.path());
    let last = before["checked"].as_i64().unwrap();
    let cut = last - 1;
    tamper(
        data.path(),
        &format!("DELETE FROM audit_events WHERE seq >= {cut}"),
    );

    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    assert_eq!(report["intact"], false);
    assert_eq!(report["checked"], cut - 1);
    assert_eq!(
        report["problems"].as_array().unwrap().len(),
        0,
        "the chain that is left is whole: {report:#}"
    );
    let tail = &report["missing_tail"];
    assert_eq!(tail["from_seq"], cut);
    assert_eq!(tail["to_seq"], last);
    assert_eq!(tail["anchor_hash"], before["head_hash"]);
    assert!(tail["anchor_object"].as_str().is_some(), "{tail:#}");
    let en = tail["message"]["en"].as_str().unwrap();
    assert!(
        en.contains(&format!("events #{cut}..#{last} are missing")),
        "{en}"
    );
    assert!(
        en.contains(&format!("the chain ends at #{}", cut - 1)),
        "{en}"
    );
    let zh = tail["message"]["zh"].as_str().unwrap();
    assert!(zh.contains(&format!("事件 #{cut}..#{last} 缺失")), "{zh}");

    let text = run(data.path(), &["--lang", "zh", "audit", "verify"]);
    assert_eq!(text.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!("事件 #{cut}..#{last} 缺失")));
}

#[test]
fn last_event_cut_and_replaced_is_named() {
    let data = logged_data();
    let (_, before) = verify(data.path());
    let last = before["checked"].as_i64().unwrap();
    tamper(
        data.path(),
        &format!("DELETE FROM audit_events WHERE seq = {last}"),
    );
    // A later command appends a new event under the freed number.
    let output = run(
        data.path(),
        &["report", "--from", "2024-05-01", "--to", "2024-05-31"],
    );
    assert_success(&output);

    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    assert!(report["missing_tail"].is_null(), "{report:#}");
    let problem = only_problem(&report);
    assert_eq!(problem["seq"], last);
    assert_eq!(problem["kind"], "changed");
    assert!(problem["message"]["en"]
        .as_str()
        .unwrap()
        .contains("the chain was rewritten from here on"));
}

#[test]
fn original_deleted_behind_the_products_back_is_named() {
    let data = logged_data();
    let originals = stored_files_under(data.path(), "originals");
    assert_eq!(originals.len(), 3, "{originals:?}");
    let gone = &originals[1];
    make_writable(gone);
    std::fs::remove_file(gone).unwrap();

    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    assert_eq!(report["intact"], false);
    assert!(report["problems"].as_array().unwrap().is_empty());
    let missing = report["objects_missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{report:#}");
    assert_eq!(missing[0]["action"], "ingest");
    let key = missing[0]["key"].as_str().unwrap();
    assert!(gone.to_string_lossy().ends_with(key), "{key}");
    assert_eq!(
        missing[0]["sha256"].as_str().unwrap(),
        gone.file_stem().unwrap().to_string_lossy(),
        "the original's key is its SHA-256"
    );
    assert!(missing[0]["message"]["en"]
        .as_str()
        .unwrap()
        .contains("missing from the store"));
    assert!(missing[0]["message"]["zh"]
        .as_str()
        .unwrap()
        .contains("已不在存储中"));
}

#[test]
fn clip_changed_behind_the_products_back_is_named() {
    let data = logged_data();
    let clips = stored_files_under(data.path(), "clips");
    assert_eq!(clips.len(), 2, "{clips:?}");
    let changed = &clips[0];
    make_writable(changed);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(changed)
        .unwrap();
    std::io::Write::write_all(&mut file, b"appended").unwrap();
    drop(file);

    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    assert!(report["objects_missing"].as_array().unwrap().is_empty());
    let changed_objects = report["objects_changed"].as_array().unwrap();
    assert_eq!(changed_objects.len(), 1, "{report:#}");
    assert_eq!(changed_objects[0]["action"], "derive");
    let found = changed_objects[0]["found_bytes"].as_u64().unwrap();
    assert_eq!(found, std::fs::metadata(changed).unwrap().len());
    assert!(changed_objects[0]["message"]["en"]
        .as_str()
        .unwrap()
        .contains("its manifest records"));

    let (output, chain_only) = run_json(data.path(), &["audit", "verify", "--no-objects"]);
    assert_eq!(output.status.code(), Some(0), "{chain_only:#}");
    assert!(chain_only["objects_checked"].is_null());
}

#[test]
fn reads_at_the_end_of_a_command_are_anchored() {
    let data = logged_data();
    let (_, first) = verify(data.path());
    // Processing the same footage again stores nothing new but reads the
    // originals, and those reads end the chain.
    assert_success(&run(data.path(), &process_args()));
    let (_, second) = verify(data.path());
    let last = second["checked"].as_i64().unwrap();
    assert!(last > first["checked"].as_i64().unwrap(), "{second:#}");
    assert_eq!(second["anchor"]["seq"], last, "{second:#}");

    tamper(
        data.path(),
        &format!("DELETE FROM audit_events WHERE seq = {last}"),
    );
    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    assert_eq!(report["missing_tail"]["from_seq"], last);
    assert_eq!(report["missing_tail"]["to_seq"], last);
    assert!(report["missing_tail"]["message"]["en"]
        .as_str()
        .unwrap()
        .contains(&format!("event #{last} is missing")));
}

/// Makes a data directory with the base fixture ingested and a redacted
/// copy of it exported; returns it with the request id.
fn exported_data() -> (tempfile::TempDir, String) {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("config.toml"),
        "[roles]\ntester = [\"operator\", \"auditor\", \"disclosure\"]\nli = [\"approver\"]\n",
    )
    .unwrap();
    let input = fixture("cases/base-10s.mp4");
    let (output, _) = run_json(data.path(), &["process", input.to_str().unwrap()]);
    assert_success(&output);
    let spec = fixture("redact-example.json");
    let (output, request) = run_json(
        data.path(),
        &[
            "disclose",
            "request",
            "--purpose",
            "litigation",
            "--item",
            &sha256_of(&input),
            "--spec",
            spec.to_str().unwrap(),
        ],
    );
    assert_success(&output);
    let id = request["request_id"].as_str().unwrap().to_string();
    let approved = run_as(data.path(), "li", &["disclose", "approve", &id]);
    assert_success(&approved);
    let out = data.path().join("out");
    let exported = run(
        data.path(),
        &["disclose", "export", &id, "--out", out.to_str().unwrap()],
    );
    assert_success(&exported);
    (data, id)
}

#[test]
fn exported_copies_are_looked_up() {
    let (data, id) = exported_data();
    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    // The original (ingest) and its public copy (export).
    assert_eq!(report["objects_checked"], 2);

    tamper(
        data.path(),
        &format!("DELETE FROM disclosure_exports WHERE request_id = '{id}'"),
    );
    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    let missing = report["objects_missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{report:#}");
    assert_eq!(missing[0]["action"], "export");
    assert!(missing[0]["message"]["en"]
        .as_str()
        .unwrap()
        .contains(&format!("for request {id} is no longer located")));
}

#[test]
fn anchors_in_s3_store_reveal_cut_tail() {
    let vars = ["ENDPOINT", "KEY_ID", "SECRET"]
        .map(|name| std::env::var(format!("EVIDENCE_TEST_MOTO_{name}")));
    let [Ok(endpoint), Ok(key_id), Ok(secret)] = vars else {
        eprintln!("\n!!! SKIPPED: EVIDENCE_TEST_MOTO_* not set; run scripts/test.sh (it starts moto) !!!\n");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::fs::write(
        data.path().join("config.toml"),
        format!(
            "[roles]\ntester = [\"operator\", \"auditor\"]\n\n[store]\nbackend = \"s3\"\n\
             endpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"{key_id}\"\n\
             secret_access_key = \"{secret}\"\nbucket = \"anchors-{}\"\n",
            nanos % 1_000_000_000_000
        ),
    )
    .unwrap();
    assert_success(&run(data.path(), &["storage", "init"]));
    assert_success(&run(data.path(), &process_args()));
    let (output, before) = verify(data.path());
    assert_eq!(output.status.code(), Some(0), "{before:#}");
    assert_eq!(before["anchor"]["seq"], before["checked"]);
    assert_eq!(before["objects_checked"], 5);

    let last = before["checked"].as_i64().unwrap();
    tamper(
        data.path(),
        &format!("DELETE FROM audit_events WHERE seq = {last}"),
    );
    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    assert_eq!(report["missing_tail"]["to_seq"], last);
    assert_eq!(report["missing_tail"]["anchor_hash"], before["head_hash"]);
}

#[test]
fn anchors_in_local_backup_reveal_cut_tail() {
    let data = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("config.toml"),
        format!(
            "[roles]\ntester = [\"operator\", \"auditor\"]\n[store.local]\nbackup_dir = {:?}\n",
            backup.path().display().to_string()
        ),
    )
    .unwrap();
    let output = run(data.path(), &process_args());
    assert_success(&output);
    let (_, before) = verify(data.path());
    let last = before["checked"].as_i64().unwrap();
    assert!(last > 4, "{before:#}");

    // Cut the chain and delete the anchors the primary store holds, as
    // someone with shell access to this machine's store could.
    tamper(data.path(), "DELETE FROM audit_events WHERE seq > 3");
    let anchors = data.path().join("store/evidence/audit");
    let chmod = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&anchors)
        .status()
        .unwrap();
    assert!(chmod.success());
    std::fs::remove_dir_all(&anchors).unwrap();

    let (output, report) = verify(data.path());
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    assert_eq!(report["intact"], false);
    let tail = &report["missing_tail"];
    assert_eq!(tail["from_seq"], 4, "{report:#}");
    assert!(
        tail["to_seq"].as_i64().unwrap() >= last,
        "the backup's anchors reach the cut events: {report:#}"
    );
}
