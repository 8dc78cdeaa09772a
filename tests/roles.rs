//! Roles on every command that reads or changes stored footage or records,
//! the single-person default without `[roles]`, and the audit `read` event
//! of every read of stored footage (Article 16).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use common::*;
use serde_json::Value;

/// One person per role, and no person with two, so that each refusal is
/// about exactly one missing role.
const CONFIG: &str = r#"
[roles]
wang = ["operator"]
zhao = ["auditor"]
li = ["approver"]
zhang = ["disclosure"]
"#;

const CHAPTERS: [&str; 3] = [
    "HB0631_130631001_20240501100000_0001.MP4",
    "HB0631_130631001_20240501100010_0002.MP4",
    "HB0631_130631001_20240501100027_0003.MP4",
];

/// The gap between the session's second and third chapter.
const SESSION_GAP: &str = "HB0631@2024-05-01T10:00:20";

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn chapter(name: &str) -> String {
    fixture(&format!("cases/session/{name}"))
        .display()
        .to_string()
}

fn case_record() -> String {
    fixture("cases/session/case.json").display().to_string()
}

/// Makes a data directory with `[roles]` and the session's three chapters
/// ingested by the operator, without splitting them.
fn session_data() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("config.toml"), CONFIG).unwrap();
    let mut args = vec!["process".to_string()];
    args.extend(CHAPTERS.iter().map(|name| chapter(name)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_success_for(&run_as(data.path(), "wang", &args), "process");
    data
}

/// Lists every file under the data directory with its size and
/// modification time, which a refused command must leave as they were.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                files.insert(entry.path(), (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    files
}

/// Rows of every table of the catalog.
fn row_counts(data: &Path) -> BTreeMap<String, i64> {
    let connection = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables
        .into_iter()
        .map(|table| {
            let count = connection
                .query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |row| {
                    row.get(0)
                })
                .unwrap();
            (table, count)
        })
        .collect()
}

/// `read` events of the audit log: (actor, object, detail).
fn read_events(data: &Path) -> Vec<(String, String, Value)> {
    let connection = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let mut statement = connection
        .prepare("SELECT actor, object, detail_json FROM audit_events WHERE action = 'read' ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| {
            let detail: String = row.get(2)?;
            Ok((
                row.get(0)?,
                row.get(1)?,
                serde_json::from_str(&detail).unwrap(),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn reads_for(data: &Path, purpose: &str) -> Vec<(String, String, Value)> {
    read_events(data)
        .into_iter()
        .filter(|(_, _, detail)| detail["purpose"] == purpose)
        .collect()
}

fn chain_is_intact(data: &Path) {
    let output = run_as(data, "zhao", &["--json", "audit", "verify"]);
    assert_success_for(&output, "audit verify");
    assert_eq!(json_of(&output)["intact"], true);
}

/// Returns the path of a chapter's original inside the local store.
fn stored_original(data: &Path, sha256: &str) -> PathBuf {
    let connection = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let (tier, key): (String, String) = connection
        .query_row(
            "SELECT tier, key FROM recordings WHERE sha256 = ?1",
            [sha256],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    data.join("store").join(tier).join(key)
}

/// A guarded command: its arguments, its name in the refusal, the role
/// the refusal names, who lacks it and who holds it.
struct Guarded {
    args: Vec<String>,
    command: &'static str,
    role: &'static str,
    refused: &'static str,
    allowed: &'static str,
}

fn guarded_commands(data: &Path, scratch: &Path) -> Vec<Guarded> {
    let first = fixture(&format!("cases/session/{}", CHAPTERS[0]));
    let sha = sha256_of(&first);
    let original = stored_original(data, &sha);
    let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let operator = |args: Vec<String>, command| Guarded {
        args,
        command,
        role: "operator",
        refused: "zhao",
        allowed: "wang",
    };
    let checker = |args: Vec<String>, command| Guarded {
        args,
        command,
        role: "auditor",
        refused: "li",
        allowed: "zhao",
    };
    vec![
        operator(
            owned(&["process", fixture("cases/base-10s.mp4").to_str().unwrap()]),
            "process",
        ),
        operator(owned(&["split", "--case", &case_record()]), "split"),
        operator(
            owned(&[
                "redact",
                original.to_str().unwrap(),
                "--spec",
                fixture("redact-example.json").to_str().unwrap(),
                "--out",
                scratch.join("redacted.mp4").to_str().unwrap(),
            ]),
            "redact",
        ),
        operator(
            owned(&[
                "justify",
                SESSION_GAP,
                "--reason",
                "secret_or_privacy",
                "--basis",
                "当事人要求保护商业秘密，经带队负责人同意",
            ]),
            "justify",
        ),
        operator(
            owned(&["delay", &sha, "--reason", "外出执法，设备未能按时送回"]),
            "delay",
        ),
        operator(
            owned(&["promote", &sha, "--trigger", "media_presence"]),
            "promote",
        ),
        operator(owned(&["storage", "init"]), "storage init"),
        checker(owned(&["verify"]), "verify"),
        checker(owned(&["check", &chapter(CHAPTERS[0])]), "check"),
        Guarded {
            args: owned(&["disclose", "list"]),
            command: "disclose list",
            role: "approver",
            refused: "wang",
            allowed: "li",
        },
    ]
}

#[test]
fn guarded_command_refuses_and_writes_nothing() {
    let data = session_data();
    let scratch = tempfile::tempdir().unwrap();
    for guarded in guarded_commands(data.path(), scratch.path()) {
        for (lang, refusal) in REFUSALS {
            let files = snapshot(data.path());
            let rows = row_counts(data.path());
            let mut args = vec!["--lang", lang];
            args.extend(guarded.args.iter().map(String::as_str));
            let output = run_as(data.path(), guarded.refused, &args);

            let what = format!("{} as {} ({lang})", guarded.command, guarded.refused);
            assert_eq!(output.status.code(), Some(1), "{what}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(refusal), "{what}: {stderr}");
            assert!(
                stderr.contains(guarded.refused),
                "{what} names the person: {stderr}"
            );
            assert!(
                stderr.contains(&format!("`{}`", guarded.command)),
                "{what} names the command: {stderr}"
            );
            assert!(
                stderr.contains(guarded.role),
                "{what} names the role: {stderr}"
            );
            assert_eq!(
                snapshot(data.path()),
                files,
                "{what} changed the data directory"
            );
            assert_eq!(row_counts(data.path()), rows, "{what} wrote to the catalog");
        }
    }
    assert!(
        !scratch.path().join("redacted.mp4").exists(),
        "a refused redaction writes no copy"
    );
}

#[test]
fn guarded_command_runs_with_its_role() {
    let data = session_data();
    let scratch = tempfile::tempdir().unwrap();
    for guarded in guarded_commands(data.path(), scratch.path()) {
        let args: Vec<&str> = guarded.args.iter().map(String::as_str).collect();
        let output = run_as(data.path(), guarded.allowed, &args);
        assert_success_for(
            &output,
            &format!("{} as {}", guarded.command, guarded.allowed),
        );
        assert!(
            !String::from_utf8_lossy(&output.stderr).contains("[roles]"),
            "with [roles] configured, no single-person notice is printed"
        );
    }
    assert!(scratch.path().join("redacted.mp4").is_file());
    chain_is_intact(data.path());
}

#[test]
fn no_roles_means_operator_and_auditor_only() {
    let data = tempfile::tempdir().unwrap();
    let input = fixture("cases/base-10s.mp4");
    let output = run_as(
        data.path(),
        "solo",
        &["--lang", "en", "process", input.to_str().unwrap()],
    );
    assert_success_for(&output, "process without [roles]");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("single-person installation").count(),
        1,
        "the default is printed once: {stderr}"
    );
    assert!(stderr.contains("solo"), "{stderr}");

    let zh = run_as(data.path(), "solo", &["--lang", "zh", "verify"]);
    assert_success_for(&zh, "verify without [roles]");
    assert!(String::from_utf8_lossy(&zh.stderr).contains("单人安装"));
    assert_success_for(
        &run_as(data.path(), "solo", &["audit", "verify"]),
        "audit verify",
    );

    let sha = sha256_of(&input);
    let request = run_as(
        data.path(),
        "solo",
        &[
            "--lang",
            "en",
            "disclose",
            "request",
            "--purpose",
            "litigation",
            "--item",
            &sha,
            "--spec",
            fixture("redact-example.json").to_str().unwrap(),
        ],
    );
    assert_eq!(request.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&request.stderr);
    assert!(
        stderr.contains("may not run `disclose request`") && stderr.contains("disclosure"),
        "disclosure work needs a configured role: {stderr}"
    );
}

#[test]
fn listed_roles_are_the_only_roles() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("config.toml"), CONFIG).unwrap();
    let input = fixture("cases/base-10s.mp4");
    let output = run_as(
        data.path(),
        "solo",
        &["--lang", "en", "process", input.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("solo may not run `process`"), "{stderr}");
    assert_eq!(stored_objects(data.path()), 0);
}

#[test]
fn split_logs_one_read_per_source() {
    let data = session_data();
    assert!(
        reads_for(data.path(), "split").is_empty(),
        "ingest alone reads no stored footage"
    );
    assert_success_for(
        &run_as(data.path(), "wang", &["split", "--case", &case_record()]),
        "split",
    );

    let reads = reads_for(data.path(), "split");
    let mut objects: Vec<&str> = reads.iter().map(|(_, object, _)| object.as_str()).collect();
    objects.sort_unstable();
    let mut expected: Vec<String> = CHAPTERS
        .iter()
        .map(|name| sha256_of(&fixture(&format!("cases/session/{name}"))))
        .collect();
    expected.sort_unstable();
    assert_eq!(objects, expected, "one read per source recording");
    for (actor, _, detail) in &reads {
        assert_eq!(actor, "wang");
        assert_eq!(detail["tier"], "routine", "{detail}");
        assert!(
            detail["key"].as_str().is_some_and(|k| !k.is_empty()),
            "{detail}"
        );
    }
    chain_is_intact(data.path());
}

#[test]
fn verify_logs_one_read_per_rehashed_object() {
    let data = session_data();
    let output = run_as(data.path(), "zhao", &["--json", "verify"]);
    assert_success_for(&output, "verify");
    let report = json_of(&output);
    let mut rehashed: Vec<String> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["actual_sha256"].as_str().map(str::to_string))
        .collect();
    assert!(rehashed.len() >= CHAPTERS.len(), "{report:#}");

    let reads = reads_for(data.path(), "fixity check");
    let mut objects: Vec<String> = reads.iter().map(|(_, object, _)| object.clone()).collect();
    objects.sort_unstable();
    rehashed.sort_unstable();
    assert_eq!(objects, rehashed, "one read per object re-hashed");
    assert!(reads.iter().all(|(actor, _, _)| actor == "zhao"));
    chain_is_intact(data.path());
}

#[test]
fn redacting_stored_original_logs_read() {
    let data = session_data();
    let sha = sha256_of(&fixture(&format!("cases/session/{}", CHAPTERS[0])));
    let original = stored_original(data.path(), &sha);
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("redacted.mp4");
    let spec = fixture("redact-example.json");
    assert_success_for(
        &run_as(
            data.path(),
            "wang",
            &[
                "redact",
                original.to_str().unwrap(),
                "--spec",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        ),
        "redact",
    );
    let reads = reads_for(data.path(), "redact");
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(
        (reads[0].0.as_str(), reads[0].1.as_str()),
        ("wang", sha.as_str())
    );

    // A copy kept outside the store is not stored footage.
    let copy = scratch.path().join("copy.mp4");
    std::fs::copy(&original, &copy).unwrap();
    assert_success_for(
        &run_as(
            data.path(),
            "wang",
            &[
                "redact",
                copy.to_str().unwrap(),
                "--spec",
                spec.to_str().unwrap(),
                "--out",
                scratch.path().join("again.mp4").to_str().unwrap(),
            ],
        ),
        "redact of a copy",
    );
    assert_eq!(reads_for(data.path(), "redact").len(), 1);
    chain_is_intact(data.path());
}

#[test]
fn disclosure_request_logs_read_of_clip() {
    let data = session_data();
    assert_success_for(
        &run_as(data.path(), "wang", &["split", "--case", &case_record()]),
        "split",
    );
    let connection = rusqlite::Connection::open(data.path().join("catalog.sqlite")).unwrap();
    let item: String = connection
        .query_row("SELECT tier || '/' || key FROM clips LIMIT 1", [], |row| {
            row.get(0)
        })
        .unwrap();
    drop(connection);

    let spec = fixture("redact-example.json");
    assert_success_for(
        &run_as(
            data.path(),
            "zhang",
            &[
                "disclose",
                "request",
                "--purpose",
                "litigation",
                "--item",
                &item,
                "--spec",
                spec.to_str().unwrap(),
            ],
        ),
        "disclose request",
    );
    let reads = reads_for(data.path(), "disclose request");
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(
        (reads[0].0.as_str(), reads[0].1.as_str()),
        ("zhang", item.as_str())
    );
    chain_is_intact(data.path());
}

/// Checks that the audit log's reader is the one way into stored footage,
/// so a new reader cannot skip the `read` event. Only the audit log and
/// the store itself call `open` on a store, except for records kept
/// beside an object (a manifest, a redaction log).
#[test]
fn only_audit_log_opens_stored_footage() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            // The store opens its own objects to copy and read them back;
            // the audit log opens its anchors.
            let is_store_backend =
                path.starts_with(src.join("store")) && path != src.join("store/verify.rs");
            let is_audit_log = path == src.join("audit.rs") || path.starts_with(src.join("audit"));
            if is_store_backend || is_audit_log || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            for pattern in ["store.open(", "store().open(", "backup().open("] {
                for (at, _) in text.match_indices(pattern) {
                    let arguments = &text[at + pattern.len()..];
                    let arguments = &arguments[..arguments.find(')').unwrap_or(arguments.len())];
                    // A key built with a suffix names a record kept
                    // beside an object (a manifest, a redaction log).
                    let is_record = arguments.contains("manifest") || arguments.contains("_SUFFIX");
                    if !is_record {
                        offenders.push(format!("{}: {pattern}{arguments})", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "stored footage is opened through audit::read_stored: {offenders:?}"
    );
}

#[test]
fn decision_without_approver_writes_nothing() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("config.toml"), CONFIG).unwrap();
    let decisions: [(&str, &[&str]); 2] = [
        ("disclose approve", &["disclose", "approve", "1"]),
        ("disclose reject", &["disclose", "reject", "1", "--reason", "不符合公开条件"]),
    ];
    for (command, decision) in decisions {
        for (lang, refusal) in REFUSALS {
            let mut args = vec!["--lang", lang];
            args.extend_from_slice(decision);
            let output = run_as(data.path(), "wang", &args);
            let what = format!("{command} as wang ({lang})");
            assert_eq!(output.status.code(), Some(1), "{what}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(refusal), "{what}: {stderr}");
            assert!(
                stderr.contains(&format!("`{command}`")) && stderr.contains("approver"),
                "{what} names the command and the role: {stderr}"
            );
            let left: Vec<_> = std::fs::read_dir(data.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .collect();
            assert_eq!(left, ["config.toml"], "{what} made no catalog or store");
        }
    }
}
