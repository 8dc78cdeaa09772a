//! Regression tests for inputs and situations that broke the main job:
//! paths that cannot be read, uploads that change or vanish while they are
//! read, two runs on one data directory at once, and the example footage.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{
    assert_success, binary, file_entry, fixture, run, run_json, sha256_of, stored_objects,
};
use serde_json::Value;

/// Zeros appended to an upload so that its single read pass lasts long
/// enough for the test to change the file in the middle of it.
const PADDING_BYTES: usize = 256 << 20;

/// How long a test waits for the ingest to start writing its staged copy.
const STAGING_WAIT: Duration = Duration::from_secs(120);

/// Writes `source` followed by [`PADDING_BYTES`] zeros to `target`.
fn write_padded(source: &Path, target: &Path) {
    let mut file = std::fs::File::create(target).unwrap();
    file.write_all(&std::fs::read(source).unwrap()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..PADDING_BYTES / zeros.len() {
        file.write_all(&zeros).unwrap();
    }
}

fn spawn_process(data_dir: &Path, inputs: &[&Path]) -> Child {
    binary()
        .arg("--data-dir")
        .arg(data_dir)
        .arg("process")
        .args(inputs)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Waits until the store's staging folder contains a non-empty file: the
/// ingest has started to copy the upload.
fn wait_for_staging(data_dir: &Path) {
    let staging = data_dir.join("store").join(".staging");
    let started = Instant::now();
    loop {
        let writing = std::fs::read_dir(&staging)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
            })
            .unwrap_or(false);
        if writing {
            return;
        }
        assert!(
            started.elapsed() < STAGING_WAIT,
            "the ingest never started writing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn finish(child: Child) -> (std::process::Output, Value) {
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

#[test]
fn missing_input_path_fails_the_run() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-folder");
    let (output, report) = run_json(data.path(), &["process", missing.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(3), "{report:#}");
    let entry = file_entry(&report, "no-such-folder");
    assert_eq!(entry["status"], "failed");
    assert!(entry["reason"]["zh"].as_str().unwrap().contains("无法访问"));
}

#[test]
fn upload_truncated_during_ingest_is_stored_as_it_ends() {
    let data = tempfile::tempdir().unwrap();
    let upload = data.path().join("HB0631_130631001_20240501100000_0001.MP4");
    write_padded(&fixture("cases/base-10s.mp4"), &upload);

    let child = spawn_process(data.path(), &[&upload]);
    wait_for_staging(data.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&upload)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (_, report) = finish(child);

    // The read that saw the change stores nothing; the retry reads the
    // file as it is now, so the original matches the upload exactly.
    let entry = file_entry(&report, "HB0631_130631001_20240501100000_0001.MP4");
    assert_eq!(entry["bytes"], 1000, "{entry:#}");
    assert_eq!(entry["sha256"], sha256_of(&upload).as_str(), "{entry:#}");
    let original = PathBuf::from(entry["evidence_path"].as_str().unwrap());
    assert_eq!(sha256_of(&original), sha256_of(&upload));
    assert_eq!(stored_objects(data.path()), 1);
}

#[test]
fn upload_removed_after_reading_is_probed_from_the_original() {
    let data = tempfile::tempdir().unwrap();
    let upload = data.path().join("HB0631_130631001_20240501100000_0001.MP4");
    write_padded(&fixture("cases/base-10s.mp4"), &upload);
    let expected_sha256 = sha256_of(&upload);

    let child = spawn_process(data.path(), &[&upload]);
    wait_for_staging(data.path());
    std::fs::remove_file(&upload).unwrap();
    let (output, report) = finish(child);

    assert_eq!(output.status.code(), Some(0), "{report:#}");
    let entry = file_entry(&report, "HB0631_130631001_20240501100000_0001.MP4");
    assert_eq!(entry["status"], "ingested", "{entry:#}");
    assert_eq!(entry["sha256"], expected_sha256.as_str());
    assert_eq!(entry["tracks"].as_array().unwrap().len(), 2, "{entry:#}");
    let original = PathBuf::from(entry["evidence_path"].as_str().unwrap());
    assert_eq!(sha256_of(&original), expected_sha256);
}

#[test]
fn concurrent_runs_store_each_recording_once() {
    let data = tempfile::tempdir().unwrap();
    let plain = data.path().join("plain");
    let named = data.path().join("named");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&named).unwrap();
    let mut recordings = std::collections::HashSet::new();
    let cases = std::fs::read_dir(fixture("cases")).unwrap();
    let mut sources: Vec<PathBuf> = cases
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    sources.sort();
    for (i, source) in sources.iter().enumerate() {
        recordings.insert(sha256_of(source));
        std::fs::copy(source, plain.join(source.file_name().unwrap())).unwrap();
        // The same bytes under a body camera's name get another store key,
        // so only the catalog shows the two runs that they share one recording.
        let name = format!("HB0777_130000001_20240501100000_{:04}.MP4", i + 1);
        std::fs::copy(source, named.join(name)).unwrap();
    }

    let first = spawn_process(data.path(), &[&plain]);
    let second = spawn_process(data.path(), &[&named]);
    let (first_output, first_report) = finish(first);
    let (second_output, second_report) = finish(second);

    assert!(first_output.status.success(), "{first_report:#}");
    assert!(second_output.status.success(), "{second_report:#}");
    assert_eq!(stored_objects(data.path()), recordings.len());
    let mut stored_now = std::collections::HashMap::<String, usize>::new();
    for report in [&first_report, &second_report] {
        for entry in report["files"].as_array().unwrap() {
            if entry["stored_now"] == true {
                *stored_now
                    .entry(entry["sha256"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    assert!(stored_now.values().all(|&n| n == 1), "{stored_now:?}");
}

#[test]
fn example_session_chapters_start_as_named() {
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/make-fixtures.sh");
    let made = std::process::Command::new("bash")
        .arg(&script)
        .arg(out.path())
        .output()
        .unwrap();
    assert_success(&made);

    let data = tempfile::tempdir().unwrap();
    let session = out.path().join("session");
    let case = out.path().join("case.json");
    let (_, report) = run_json(
        data.path(),
        &[
            "check",
            session.to_str().unwrap(),
            "--case",
            case.to_str().unwrap(),
        ],
    );

    let starts: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2024-05-01T01:00:00Z",
            "2024-05-01T01:00:10Z",
            "2024-05-01T01:00:30Z"
        ],
        "{report:#}"
    );
    let boundaries = report["sessions"][0]["boundaries"].as_array().unwrap();
    assert_eq!(boundaries[0]["kind"], "continuous");
    assert_eq!(boundaries[1]["kind"], "gap");
    let u1 = &report["units"][0];
    assert_eq!(u1["unit_id"], "U1");
    assert!(
        (u1["covered"].as_f64().unwrap() - 15.0).abs() < 0.05,
        "{u1:#}"
    );
}

#[test]
fn unreadable_folder_fails_for_another_user() {
    // Root reads every folder, so the check runs as `nobody` through setpriv.
    let setpriv = Path::new("/usr/bin/setpriv");
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !setpriv.exists() || !is_root {
        eprintln!("SKIPPED: needs root and setpriv to run as another user");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let locked = base.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::copy(fixture("cases/base-10s.mp4"), locked.join("a.mp4")).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    let output = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_evidence"))
        .arg("--data-dir")
        .arg(base.path().join("data"))
        .args(["process", "--json"])
        .arg(&locked)
        .env("EVIDENCE_ACTOR", "tester")
        .output()
        .unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();

    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(output.status.code(), Some(3), "{report:#}");
    assert_eq!(file_entry(&report, "locked")["status"], "failed");
}

#[test]
fn odd_file_name_is_ingested_bit_exact() {
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let odd = input.join("执法 记录\n../x.mp4".replace('/', "_"));
    std::fs::copy(fixture("cases/base-10s.mp4"), &odd).unwrap();
    let output = run(data.path(), &["process", input.to_str().unwrap(), "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(output.status.success(), "{report:#}");
    let entry = &report["files"][0];
    assert_eq!(entry["status"], "ingested");
    assert_eq!(
        sha256_of(Path::new(entry["evidence_path"].as_str().unwrap())),
        sha256_of(&odd)
    );
}

#[test]
fn process_text_report_names_timeline_picture() {
    let data = tempfile::tempdir().unwrap();
    let session = fixture("cases/session");
    let case = session.join("case.json");
    for (lang, label) in [("en", "timeline picture: "), ("zh", "时间轴图: ")] {
        let output = run(
            data.path(),
            &[
                "--lang",
                lang,
                "process",
                session.to_str().unwrap(),
                "--case",
                case.to_str().unwrap(),
            ],
        );
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{text}");

        let line = text
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"));
        let picture = Path::new(line.trim_start_matches(label));
        assert!(picture.is_file(), "{line}");
        assert_eq!(std::fs::read(picture).unwrap()[..4], *b"\x89PNG");
    }
}
