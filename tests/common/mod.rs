//! Helpers shared by the integration tests: run the real binary on the
//! fixtures in a fresh data directory.

#![allow(dead_code)]

pub mod appsink;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A run that takes longer than this is a hang, not a slow machine: the
/// whole fixture corpus processes in seconds.
pub const HANG_LIMIT: Duration = Duration::from_secs(300);

pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
}

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_evidence"));
    command.env_remove("EVIDENCE_DATA_DIR").env("EVIDENCE_ACTOR", "tester");
    command
}

/// Runs the binary with a data directory, failing the test on a hang.
pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    finish(binary(), data_dir, args)
}

/// Runs the binary as the person `actor` (whose roles the data
/// directory's config names), with nothing on stdin, failing on a hang.
pub fn run_as(data_dir: &Path, actor: &str, args: &[&str]) -> Output {
    let mut command = binary();
    command.env("EVIDENCE_ACTOR", actor).stdin(Stdio::null());
    finish(command, data_dir, args)
}

/// Output is read on another thread while waiting, so a large report
/// cannot fill the pipe and stall the child.
fn finish(mut command: Command, data_dir: &Path, args: &[&str]) -> Output {
    let child = command
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(HANG_LIMIT) {
        Ok(output) => output.expect("output is readable"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("evidence {args:?} did not finish within {HANG_LIMIT:?}");
        }
    }
}

/// Runs a command that prints JSON and returns the document.
pub fn run_json(data_dir: &Path, args: &[&str]) -> (Output, Value) {
    let mut full = args.to_vec();
    full.push("--json");
    let output = run(data_dir, &full);
    let text = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, json)
}

pub fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Finds the report entry of the input whose path ends with `name`.
pub fn file_entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["files"]
        .as_array()
        .expect("files is an array")
        .iter()
        .find(|f| f["path"].as_str().unwrap_or("").ends_with(name))
        .unwrap_or_else(|| panic!("no report entry for {name}"))
}

/// Counts the stored originals (manifests excluded) in the local store of
/// a data directory; reports and derived artefacts are not counted.
pub fn stored_objects(data_dir: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    count(&path)
                } else if path.to_string_lossy().ends_with(".manifest.json") {
                    0
                } else {
                    1
                }
            })
            .sum()
    }
    ["routine", "evidence", "longterm", "public"]
        .iter()
        .map(|tier| count(&data_dir.join("store").join(tier).join("originals")))
        .sum()
}

/// Fails the test unless the run exited with success, printing its exit
/// code, stderr and stdout, because a JSON report on stdout may name the cause.
#[track_caller]
pub fn assert_success(output: &Output) {
    assert_success_for(output, "");
}

/// Like `assert_success`, with a note that names the step that failed.
#[track_caller]
pub fn assert_success_for(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}{}exit {:?}\nstderr:\n{}\nstdout:\n{}",
        if what.is_empty() { "" } else { ": " },
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Runs a command that prints JSON, fails the test unless it succeeds, and
/// returns the document.
#[track_caller]
pub fn run_json_ok(data_dir: &Path, args: &[&str]) -> Value {
    let (output, json) = run_json(data_dir, args);
    assert_success(&output);
    json
}

/// Parses the JSON a successful run printed.
#[track_caller]
pub fn success_json(output: &Output) -> Value {
    assert_success(output);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The text that a refusal for a missing role contains, for each `--lang`.
pub const REFUSALS: [(&str, &str); 2] = [("zh", "无权执行"), ("en", "may not run")];

/// Runs `args` as `actor` in both languages and checks that each run is
/// refused with exit code 1, naming the person and the role it lacks.
#[track_caller]
pub fn assert_refused(data_dir: &Path, actor: &str, role: &str, args: &[&str]) {
    for (lang, needle) in REFUSALS {
        let mut full = vec!["--lang", lang];
        full.extend_from_slice(args);
        let output = run_as(data_dir, actor, &full);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?} {lang}: {stderr}");
        assert!(
            stderr.contains(actor),
            "the refusal names the person: {stderr}"
        );
        assert!(
            stderr.contains(role),
            "the refusal names the role: {stderr}"
        );
    }
}

/// Finds the report's clip of `unit`.
pub fn clip<'a>(report: &'a Value, unit: &str) -> &'a Value {
    report["clips"]
        .as_array()
        .expect("clips is an array")
        .iter()
        .find(|c| c["unit_id"] == unit)
        .unwrap_or_else(|| panic!("no clip for {unit} in {report:#}"))
}

/// Writes the session case record with U1 ending at 10:00:12 instead of
/// 10:00:14; returns its path.
pub fn moved_boundary(data: &Path) -> PathBuf {
    let record = std::fs::read_to_string(fixture("cases/session/case.json"))
        .unwrap()
        .replace(
            "\"to\": \"2024-05-01T10:00:14+08:00\"",
            "\"to\": \"2024-05-01T10:00:12+08:00\"",
        );
    let path = data.join("changed-case.json");
    std::fs::write(&path, record).unwrap();
    path
}

/// Runs `command` (`process` or `check`) on the session folder with its
/// case record, fails the test unless it succeeds, and returns the report.
#[track_caller]
pub fn on_session(data_dir: &Path, command: &str) -> Value {
    let session = fixture("cases/session");
    let case = session.join("case.json");
    run_json_ok(
        data_dir,
        &[
            command,
            session.to_str().unwrap(),
            "--case",
            case.to_str().unwrap(),
        ],
    )
}

/// Reads a JSON file the product wrote, such as a manifest or a log.
#[track_caller]
pub fn read_json(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}
