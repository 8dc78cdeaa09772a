//! The main job end to end: `evidence process` on real files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

#[test]
fn session_is_ingested_with_hashes_tracks_and_origin() {
    let data = tempfile::tempdir().unwrap();
    let session = fixture("cases/session");
    let report = run_json_ok(data.path(), &["process", session.to_str().unwrap()]);

    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 4, "three chapters and the case record");
    let case_entry = file_entry(&report, "case.json");
    assert_eq!(case_entry["status"], "skipped", "a case record is not footage");
    assert!(case_entry["sha256"].is_null(), "the case record is not stored: {case_entry}");
    assert_eq!(stored_objects(data.path()), 3, "only the three chapters are stored");

    let name = "HB0631_130631001_20240501100000_0001.MP4";
    let entry = file_entry(&report, name);
    let source = session.join(name);
    assert_eq!(entry["status"], "ingested");
    assert_eq!(entry["sha256"], sha256_of(&source).as_str());
    assert_eq!(entry["bytes"], std::fs::metadata(&source).unwrap().len());
    assert_eq!(entry["sm3"].as_str().unwrap().len(), 64);
    assert_eq!(entry["device"], "HB0631");
    assert_eq!(entry["officer"], "130631001");
    assert_eq!(entry["start"], "2024-05-01T02:00:00Z");
    assert_eq!(entry["start_source"], "container");
    let kinds: Vec<_> = entry["findings"].as_array().unwrap().iter().map(|f| f["kind"].clone()).collect();
    assert_eq!(kinds, vec!["late_upload"], "a clean chapter, uploaded long after its deadline");

    let stored = Path::new(entry["evidence_path"].as_str().unwrap());
    assert!(stored.starts_with(data.path()));
    assert_eq!(sha256_of(stored), sha256_of(&source), "the original is bit-exact");
    let mode = std::fs::metadata(stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "the original is read-only on disk");
    assert!(stored
        .to_string_lossy()
        .ends_with(&format!("routine/originals/2024/05/01/HB0631/{}.mp4", sha256_of(&source))));

    let manifest: serde_json::Value = read_json(format!("{}.manifest.json", stored.display()));
    assert_eq!(manifest["sha256"], entry["sha256"]);
    assert_eq!(manifest["sm3"], entry["sm3"]);
    assert_eq!(manifest["actor"], "tester");
    assert_eq!(manifest["source"]["file_name"], name);
    assert!(manifest["tools"]["gstreamer"].as_str().unwrap().contains("GStreamer"));

    let tracks = entry["tracks"].as_array().unwrap();
    let video = tracks.iter().find(|t| t["kind"] == "video").expect("a video track");
    assert_eq!(video["codec"], "avc1");
    assert!(tracks.iter().any(|t| t["kind"] == "audio"));
}

#[test]
fn rerun_recognizes_recordings_and_writes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let session = fixture("cases/session");
    run_json(data.path(), &["process", session.to_str().unwrap()]);
    let objects = stored_objects(data.path());

    let report = run_json_ok(data.path(), &["process", session.to_str().unwrap()]);
    for file in report["files"].as_array().unwrap() {
        let expected = if file["path"].as_str().unwrap().ends_with("case.json") {
            "skipped"
        } else {
            "already_ingested"
        };
        assert_eq!(file["status"], expected, "{}", file["path"]);
        assert_eq!(file["stored_now"], false);
    }
    assert_eq!(stored_objects(data.path()), objects);
}

#[test]
fn unfinalized_recording_is_kept_and_called_unreadable() {
    let data = tempfile::tempdir().unwrap();
    for name in ["unfinalized-killed.mp4", "unfinalized-truncated.mp4"] {
        let source = fixture(&format!("cases/{name}"));
        let report = run_json_ok(data.path(), &["process", source.to_str().unwrap()]);
        let entry = file_entry(&report, name);
        assert_eq!(entry["status"], "unreadable", "{name}");
        assert!(entry["reason"]["en"].as_str().unwrap().contains("not finalized"), "{name}: {}", entry["reason"]);
        assert!(entry["reason"]["zh"].as_str().unwrap().contains("未正常结束"));
        let kinds: Vec<_> = entry["findings"].as_array().unwrap().iter().map(|f| f["kind"].clone()).collect();
        assert!(kinds.contains(&"not_finalized".into()), "{name}: {kinds:?}");
        let stored = Path::new(entry["evidence_path"].as_str().unwrap());
        assert_eq!(sha256_of(stored), sha256_of(&source), "{name} kept bit-exact");
    }
}

#[test]
fn unset_camera_clock_falls_back_and_is_flagged() {
    let data = tempfile::tempdir().unwrap();
    for name in ["clock-unset-1904.mp4", "clock-unset-1970.mp4"] {
        let source = fixture(&format!("cases/{name}"));
        let (_, report) = run_json(data.path(), &["process", source.to_str().unwrap()]);
        let entry = file_entry(&report, name);
        assert_eq!(entry["start_source"], "upload_time", "{name}");
        let clock = entry["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "unreliable_clock")
            .unwrap_or_else(|| panic!("{name}: no unreliable_clock finding"));
        let year = if name.contains("1904") { "1904" } else { "1970" };
        assert!(clock["detail"]["creation_time"].as_str().unwrap().starts_with(year));
    }
}

#[test]
fn clock_unset_with_named_file_takes_start_from_name() {
    let data = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let named = inbox.path().join("HB0999_130699001_20240502080000_0001.MP4");
    std::fs::copy(fixture("cases/clock-unset-1970.mp4"), &named).unwrap();
    let (_, report) = run_json(data.path(), &["process", named.to_str().unwrap()]);
    let entry = file_entry(&report, "_0001.MP4");
    assert_eq!(entry["start_source"], "file_name");
    assert_eq!(entry["start"], "2024-05-02T00:00:00Z", "08:00 Shanghai is 00:00 UTC");
}

#[test]
fn gopro_telemetry_track_is_listed_by_type_code() {
    let data = tempfile::tempdir().unwrap();
    let source = fixture("samples/gopro/karma.mp4");
    let (_, report) = run_json(data.path(), &["process", source.to_str().unwrap()]);
    let entry = file_entry(&report, "karma.mp4");
    let tracks = entry["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 5);
    let codecs: Vec<_> = tracks.iter().map(|t| t["codec"].as_str().unwrap()).collect();
    for codec in ["avc1", "mp4a", "tmcd", "gpmd", "fdsc"] {
        assert!(codecs.contains(&codec), "{codec} missing from {codecs:?}");
    }
    let video = tracks.iter().find(|t| t["codec"] == "avc1").unwrap();
    assert_eq!(video["frames"], 362);
    let telemetry = tracks.iter().find(|t| t["codec"] == "gpmd").unwrap();
    assert_eq!(telemetry["kind"], "metadata");
}

#[test]
fn rotation_and_hevc_sample_entries_are_recorded() {
    let data = tempfile::tempdir().unwrap();
    let rotated = fixture("samples/misc/video_rotation_90.mp4");
    let (_, report) = run_json(data.path(), &["process", rotated.to_str().unwrap()]);
    let video = &file_entry(&report, "video_rotation_90.mp4")["tracks"][0];
    assert_eq!(video["rotation"], 90);

    for entry_name in ["hev1", "hvc1"] {
        let source = fixture(&format!("cases/hevc-{entry_name}.mp4"));
        let (_, report) = run_json(data.path(), &["process", source.to_str().unwrap()]);
        let tracks = file_entry(&report, &format!("hevc-{entry_name}.mp4"))["tracks"].clone();
        let video = tracks.as_array().unwrap().iter().find(|t| t["kind"] == "video").unwrap().clone();
        assert_eq!(video["sample_entry"], entry_name);
        assert_eq!(video["frames"], 30);
    }
}

#[test]
fn every_sample_and_case_ends_with_a_clear_status() {
    let data = tempfile::tempdir().unwrap();
    let samples = fixture("samples");
    let cases = fixture("cases");
    let report = run_json_ok(data.path(), &["process", samples.to_str().unwrap(), cases.to_str().unwrap()]);

    let files = report["files"].as_array().unwrap();
    assert!(files.len() > 60, "every fixture is processed, got {}", files.len());
    for file in files {
        let status = file["status"].as_str().unwrap();
        if file["path"].as_str().unwrap().ends_with("case.json") {
            assert_eq!(status, "skipped", "a case record is not footage");
            continue;
        }
        assert!(
            ["ingested", "already_ingested", "unreadable"].contains(&status),
            "{} ended as {status}",
            file["path"]
        );
        if status == "unreadable" {
            assert!(!file["reason"]["en"].as_str().unwrap().is_empty());
            assert!(!file["reason"]["zh"].as_str().unwrap().is_empty());
        }
        let stored = Path::new(file["evidence_path"].as_str().unwrap());
        assert_eq!(sha256_of(stored), file["sha256"].as_str().unwrap(), "{}", file["path"]);
    }
    let one_byte = file_entry(&report, "NO20191130-123556-000155.MP4");
    assert_eq!(one_byte["status"], "unreadable");
    assert_eq!(one_byte["bytes"], 1);
}

#[test]
fn malformed_case_record_is_rejected_with_its_field() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("case.json");
    let text = std::fs::read_to_string(fixture("cases/session/case.json"))
        .unwrap()
        .replace("\"U2\"", "\"../../etc\"");
    std::fs::write(&case, text).unwrap();
    let output = run(
        data.path(),
        &["--lang", "en", "process", fixture("cases/base-10s.mp4").to_str().unwrap(), "--case", case.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("units[1].unit_id"), "{stderr}");
    assert_eq!(stored_objects(data.path()), 0, "nothing is stored for a rejected case");
}

#[test]
fn folder_walk_does_not_follow_links_outside() {
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.mp4");
    std::fs::copy(fixture("cases/base-10s.mp4"), &secret).unwrap();
    std::fs::copy(fixture("cases/hevc-hev1.mp4"), inbox.path().join("inside.mp4")).unwrap();
    std::os::unix::fs::symlink(&secret, inbox.path().join("link-out.mp4")).unwrap();
    std::os::unix::fs::symlink(outside.path(), inbox.path().join("dir-out")).unwrap();
    std::os::unix::fs::symlink(inbox.path().join("inside.mp4"), inbox.path().join("link-in.mp4")).unwrap();

    let (_, report) = run_json(data.path(), &["process", inbox.path().to_str().unwrap()]);
    assert_eq!(file_entry(&report, "link-out.mp4")["status"], "skipped");
    assert_eq!(file_entry(&report, "dir-out")["status"], "skipped");
    assert_eq!(file_entry(&report, "inside.mp4")["status"], "ingested");
    assert_eq!(file_entry(&report, "link-in.mp4")["status"], "already_ingested");
    assert!(!report.to_string().contains("secret.mp4"));
}

#[test]
fn text_report_is_in_the_chosen_language() {
    let data = tempfile::tempdir().unwrap();
    let source = fixture("cases/unfinalized-killed.mp4");
    let zh = run(data.path(), &["--lang", "zh", "process", source.to_str().unwrap()]);
    let zh = String::from_utf8_lossy(&zh.stdout);
    assert!(zh.contains("状态") && zh.contains("未正常结束"), "{zh}");
    let en = run(data.path(), &["--lang", "en", "process", source.to_str().unwrap()]);
    let en = String::from_utf8_lossy(&en.stdout);
    assert!(en.contains("status") && en.contains("not finalized"), "{en}");
}

#[test]
fn data_dir_from_environment_is_used() {
    let data = tempfile::tempdir().unwrap();
    let output = binary()
        .env("EVIDENCE_DATA_DIR", data.path())
        .args(["process", "--json", fixture("cases/base-10s.mp4").to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&output);
    assert!(data.path().join("catalog.sqlite").exists());
    assert_eq!(stored_objects(data.path()), 1);
}

#[test]
fn fixity_check_passes_on_everything_process_stored() {
    let data = tempfile::tempdir().unwrap();
    on_session(data.path(), "process");

    let (output, report) = run_json(data.path(), &["verify"]);
    let objects = report["objects"].as_array().unwrap();
    let failures: Vec<_> = objects.iter().filter(|o| o["status"] != "ok").collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_success(&output);
    let keys: Vec<&str> = objects.iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert!(keys.iter().any(|k| k.starts_with("clips/")), "clips are checked: {keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".png")), "the timeline is checked: {keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("originals/")), "originals are checked: {keys:?}");
}

#[test]
fn process_text_lists_clips_of_case() {
    let data = tempfile::tempdir().unwrap();
    let session = fixture("cases/session");
    let case = session.join("case.json");
    let output = run(
        data.path(),
        &["--lang", "en", "process", session.to_str().unwrap(), "--case", case.to_str().unwrap()],
    );
    assert_success(&output);
    let text = String::from_utf8_lossy(&output.stdout);
    for unit in ["U1", "U2"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{unit} ")) && l.contains("method"))
            .unwrap_or_else(|| panic!("no clip line for {unit}:\n{text}"));
        assert!(line.contains("v1 (created)"), "{line}");
    }
    assert!(text.contains("/U1/"), "clip paths are shown:\n{text}");
    assert!(text.contains("v1.mp4"), "clip paths are shown:\n{text}");
    assert_eq!(text.matches("method ").count(), 2, "each clip is listed once:\n{text}");
}
