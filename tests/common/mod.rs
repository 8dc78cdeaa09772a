//! Helpers shared by the integration tests: run the real binary on the
//! fixtures in a fresh data directory.

#![allow(dead_code)]

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
/// Output is read on another thread while waiting, so a large report
/// cannot fill the pipe and stall the child.
pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    let child = binary()
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
