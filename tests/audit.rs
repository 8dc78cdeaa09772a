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
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    assert!(output.status.success());
    assert_eq!(report["intact"], true);
    // One event per ingested chapter (3), per read of a chapter by the
    // split (3) and per clip cut for a unit (2).
    assert_eq!(report["checked"], 8);

    let again = run(data.path(), &process_args());
    assert!(again.status.success());
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
        for (lang, needle) in [("zh", "无权执行"), ("en", "may not run")] {
            let output = binary()
                .env("EVIDENCE_ACTOR", "clerk")
                .arg("--data-dir")
                .arg(data.path())
                .args(["--lang", lang])
                .args(args)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(1), "{args:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(needle), "{args:?} {lang}: {stderr}");
            assert!(
                stderr.contains("clerk"),
                "the refusal names the person: {stderr}"
            );
            assert!(
                stderr.contains("auditor"),
                "the refusal names the role: {stderr}"
            );
        }
    }
}

#[test]
fn compliance_report_counts_the_period() {
    let data = logged_data();
    let out = tempfile::tempdir().unwrap();
    let (output, report) = run_json(
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
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
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
    for (lang, needle) in [("zh", "无权执行"), ("en", "may not run")] {
        let output = binary()
            .env("EVIDENCE_ACTOR", "clerk")
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "--lang",
                lang,
                "disclose",
                "request",
                "--purpose",
                "litigation",
                "--item",
                &sha,
                "--spec",
            ])
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{lang}: {stderr}");
        assert!(
            stderr.contains("disclosure"),
            "the refusal names the role: {stderr}"
        );
    }
}
