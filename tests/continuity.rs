//! Continuity on real and damaged files: `evidence check`, `process`,
//! `justify` and `delay`, with the right values for every fault case.
//!
//! Tolerances: one frame (1/30 s) for times, 1 % for durations.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const FRAME: f64 = 1.0 / 30.0;

fn assert_time(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {actual}"));
    assert!(
        (actual - expected).abs() <= FRAME + 1e-9,
        "{what}: {actual} is not {expected} ± 1 frame"
    );
}

fn assert_duration(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {actual}"));
    assert!(
        (actual - expected).abs() <= expected.abs() * 0.01 + 1e-9,
        "{what}: {actual} is not {expected} ± 1 %"
    );
}

fn check(data_dir: &Path, inputs: &[&str]) -> Value {
    let mut args = vec!["check".to_string()];
    args.extend(inputs.iter().map(|i| fixture(i).display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_json_ok(data_dir, &args)
}

fn check_one(relative: &str) -> Value {
    let data = tempfile::tempdir().unwrap();
    let report = check(data.path(), &[relative]);
    let name = Path::new(relative).file_name().unwrap().to_str().unwrap();
    file_entry(&report, name).clone()
}

fn findings_of<'a>(file: &'a Value, kind: &str) -> Vec<&'a Value> {
    file["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

/// Returns the findings of `kind`, which must be one in each of the file's
/// two streams. `what` names such a finding in the failure message.
#[track_caller]
fn one_in_each_stream<'a>(file: &'a Value, kind: &str, what: &str) -> Vec<&'a Value> {
    let found = findings_of(file, kind);
    assert_eq!(
        found.len(),
        2,
        "one {what} in each stream: {}",
        file["findings"]
    );
    found
}

/// Finds the report's entry of the case unit `id`.
fn unit<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["units"]
        .as_array()
        .expect("units is an array")
        .iter()
        .find(|u| u["unit_id"] == id)
        .unwrap_or_else(|| panic!("no unit {id} in {report:#}"))
}

fn track<'a>(file: &'a Value, kind: &str) -> &'a Value {
    file["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} track in {}", file["tracks"]))
}

fn assert_no_anomaly(file: &Value) {
    assert!(
        file["findings"].as_array().unwrap().is_empty(),
        "findings: {}",
        file["findings"]
    );
}

/// Asserts that a file whose camera clock was never set (creation time
/// 1904-01-01, as in several sample files) has no finding but that one.
fn assert_only_unset_clock(file: &Value) {
    let findings = file["findings"].as_array().unwrap();
    assert!(
        findings.iter().all(|f| f["kind"] == "unreliable_clock"),
        "findings: {}",
        file["findings"]
    );
}

/// Asserts the position of a jump in both streams of the TS cases. The
/// video frame before the jump ends at 5.0 s. The audio packet before it
/// ends at 4.949 s, because 21 ms AAC frames do not line up with video
/// frames, so audio is allowed one audio frame more.
fn assert_jump_position(finding: &Value, what: &str) {
    let at = finding["at"].as_f64().unwrap();
    let tolerance = if finding["track"] == 0 {
        FRAME
    } else {
        FRAME + 0.0214
    };
    assert!(
        (at - 5.0).abs() <= tolerance + 1e-9,
        "{what}: {at} is not 5.0 ± {tolerance}"
    );
}

#[test]
fn clean_recording_has_no_anomaly() {
    let file = check_one("cases/base-10s.mp4");
    let video = track(&file, "video");
    assert_eq!(video["frames"], 300);
    assert_time(&video["start"], 0.0, "video start");
    assert_time(&video["end"], 10.0, "video end");
    assert_eq!(video["codec"], "avc1");
    assert_no_anomaly(&file);
}

#[test]
fn ts_forward_jump_is_one_gap_per_stream() {
    let file = check_one("cases/ts-gap-10s.ts");
    let gaps = one_in_each_stream(&file, "gap", "gap");
    for gap in &gaps {
        assert_jump_position(gap, "gap start");
        assert_duration(&gap["duration"], 10.0, "gap length");
    }
    let tracks: Vec<_> = gaps.iter().map(|g| g["track"].as_u64().unwrap()).collect();
    assert_eq!(tracks, vec![0, 1]);

    let video = track(&file, "video");
    assert_time(&video["start"], 0.0, "video start");
    assert_time(&video["end"], 20.0, "video end (span)");
    assert_duration(&video["missing"], 10.0, "missing of the span");
    assert!(findings_of(&file, "dropped_frames").is_empty());
}

#[test]
fn ts_backward_step_is_a_backward_jump() {
    let file = check_one("cases/ts-backwards-2s.ts");
    let jumps = one_in_each_stream(&file, "backward_jump", "jump");
    for jump in &jumps {
        assert_jump_position(jump, "jump position");
        assert_duration(&jump["duration"], -1.97, "jump size");
    }
    let video_jump = jumps.iter().find(|j| j["track"] == 0).unwrap();
    assert_time(
        &video_jump["detail"]["raw_from"],
        3604.90,
        "raw time before the jump",
    );
    assert_time(
        &video_jump["detail"]["raw_to"],
        3602.93,
        "raw time after the jump",
    );
    assert!(findings_of(&file, "timestamp_reset").is_empty());
}

#[test]
fn ts_restart_from_first_timestamp_is_a_reset() {
    let file = check_one("cases/ts-reset.ts");
    let resets = one_in_each_stream(&file, "timestamp_reset", "reset");
    for reset in &resets {
        assert_jump_position(reset, "reset position");
        assert_duration(&reset["duration"], -4.97, "reset size");
    }
    assert!(findings_of(&file, "backward_jump").is_empty());
}

#[test]
fn dropped_frames_are_counted_not_gaps() {
    let file = check_one("cases/dropped-frames.mp4");
    assert_eq!(track(&file, "video")["frames"], 245);
    let drops = findings_of(&file, "dropped_frames");
    assert_eq!(drops.len(), 1, "{}", file["findings"]);
    assert_eq!(drops[0]["detail"]["count"], 55);
    assert_eq!(drops[0]["detail"]["events"], 45);
    assert_eq!(drops[0]["detail"]["present"], 245);
    assert_eq!(drops[0]["detail"]["expected"], 300);
    assert_duration(&drops[0]["duration"], 1.83, "time missing");
    assert!(findings_of(&file, "gap").is_empty(), "{}", file["findings"]);
}

#[test]
fn empty_edit_delays_start_without_gap() {
    for input in [
        "cases/editlist-delayed-start.mp4",
        "samples/misc/delayed_start.mp4",
    ] {
        let file = check_one(input);
        assert_time(&track(&file, "video")["start"], 1.075, input);
        assert_only_unset_clock(&file);
    }
}

#[test]
fn hidden_preroll_is_not_a_gap() {
    let file = check_one("cases/cut-at-non-keyframe.mp4");
    let video = track(&file, "video");
    assert_time(&video["start"], 0.0, "presentation start");
    // The cut asked for 2.0 s; the file's own edit list shows 2.1 s of
    // video (62 frames, ffprobe agrees) and 2.02 s of audio. The hidden
    // 0.53 s of preroll must not appear anywhere.
    assert_eq!(video["frames"], 62);
    assert_time(&video["end"], 2.1, "video end");
    assert_duration(&track(&file, "audio")["end"], 2.02, "audio end");
    assert_only_unset_clock(&file);
}

#[test]
fn fragmented_recording_is_whole() {
    let file = check_one("cases/fragmented.mp4");
    let video = track(&file, "video");
    assert_eq!(video["frames"], 300);
    let length = video["end"].as_f64().unwrap() - video["start"].as_f64().unwrap();
    assert_duration(&Value::from(length), 10.0, "length");
    assert_no_anomaly(&file);
}

#[test]
fn killed_fragmented_recording_is_not_finalized() {
    let file = check_one("cases/fragmented-killed.mp4");
    let video = track(&file, "video");
    assert_eq!(video["frames"], 168);
    assert_time(&video["end"], 5.6, "end");
    let flagged = findings_of(&file, "not_finalized");
    assert_eq!(flagged.len(), 1, "{}", file["findings"]);
    assert_time(&flagged[0]["at"], 5.6, "real end");
}

#[test]
fn recordings_without_moov_are_not_finalized() {
    for input in [
        "cases/unfinalized-truncated.mp4",
        "cases/unfinalized-killed.mp4",
    ] {
        let file = check_one(input);
        assert_eq!(
            findings_of(&file, "not_finalized").len(),
            1,
            "{input}: {}",
            file["findings"]
        );
        assert_eq!(file["readable"], false, "{input}");
    }
}

#[test]
fn unset_camera_clock_is_unreliable() {
    for input in ["cases/clock-unset-1904.mp4", "cases/clock-unset-1970.mp4"] {
        let file = check_one(input);
        assert_eq!(
            findings_of(&file, "unreliable_clock").len(),
            1,
            "{input}: {}",
            file["findings"]
        );
        assert_ne!(file["start_source"], "container", "{input}");
    }
}

#[test]
fn real_camera_files_have_no_anomaly() {
    for (input, frames, seconds) in [
        ("samples/gopro/karma.mp4", 362, 12.08),
        ("samples/gopro/max-heromode.mp4", 315, 10.51),
        ("samples/misc/counter.mp4", 30, 3.0),
    ] {
        let file = check_one(input);
        let video = track(&file, "video");
        assert_eq!(video["frames"], frames, "{input}");
        let length = video["end"].as_f64().unwrap() - video["start"].as_f64().unwrap();
        assert_duration(&Value::from(length), seconds, input);
        if input.contains("gopro") {
            assert_no_anomaly(&file);
        } else {
            assert_only_unset_clock(&file);
        }
    }
}

#[test]
fn audio_longer_than_video_shows_both_ends() {
    let file = check_one("samples/misc/in1.mp4");
    let (video, audio) = (track(&file, "video"), track(&file, "audio"));
    assert_time(&video["start"], 0.0, "video start");
    assert_time(&audio["start"], 0.0, "audio start");
    assert_duration(&video["end"], 6.97, "video end");
    assert_duration(&audio["end"], 7.03, "audio end");
    assert_only_unset_clock(&file);
}

#[test]
fn session_boundaries_units_and_deadlines() {
    let data = tempfile::tempdir().unwrap();
    let report = on_session(data.path(), "check");

    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{}", report["sessions"]);
    let only = &sessions[0];
    assert_eq!(only["device"], "HB0631");
    assert_eq!(only["files"].as_array().unwrap().len(), 3);
    let boundaries = only["boundaries"].as_array().unwrap();
    assert_eq!(boundaries.len(), 2);

    assert_eq!(boundaries[0]["kind"], "continuous");
    assert_eq!(
        boundaries[0]["after"],
        "HB0631_130631001_20240501100000_0001.MP4"
    );
    assert_eq!(
        boundaries[0]["before"],
        "HB0631_130631001_20240501100010_0002.MP4"
    );
    assert_time(
        &boundaries[0]["duration"],
        -0.03,
        "overlap of chapters 1 and 2",
    );

    assert_eq!(boundaries[1]["kind"], "gap");
    assert_duration(
        &boundaries[1]["duration"],
        6.97,
        "gap between chapters 2 and 3",
    );
    assert_eq!(
        boundaries[1]["from"].as_str().unwrap().get(..19),
        Some("2024-05-01T02:00:20")
    );
    assert_eq!(
        boundaries[1]["to"].as_str().unwrap().get(..19),
        Some("2024-05-01T02:00:27")
    );
    assert_eq!(boundaries[1]["gap_id"], "HB0631@2024-05-01T10:00:20");
    assert!(boundaries[1]["justification"].is_null());

    let units = report["units"].as_array().unwrap();
    assert_eq!(units.len(), 2, "{}", report["units"]);
    let u1 = units.iter().find(|u| u["unit_id"] == "U1").unwrap();
    assert_eq!(u1["device"], "HB0631");
    assert_duration(&u1["covered"], 14.0, "U1 covered");
    assert!(u1["gaps"].as_array().unwrap().is_empty(), "{}", u1["gaps"]);

    let u2 = units.iter().find(|u| u["unit_id"] == "U2").unwrap();
    assert_duration(&u2["covered"], 16.0, "U2 covered");
    let u2_gaps = u2["gaps"].as_array().unwrap();
    assert_eq!(u2_gaps.len(), 1, "{}", u2["gaps"]);
    assert_duration(&u2_gaps[0]["duration"], 6.97, "U2 gap");
    assert_eq!(u2_gaps[0]["kind"], "gap");
    assert_eq!(u2_gaps[0]["justified"], false);
    assert_eq!(u2["unexplained_gaps"], 1);
    assert_eq!(report["unexplained_gaps"].as_array().unwrap().len(), 1);
    assert!(report["justified_gaps"].as_array().unwrap().is_empty());

    let deadlines = report["deadlines"]["recordings"].as_array().unwrap();
    assert_eq!(deadlines.len(), 3);
    for deadline in deadlines {
        assert_eq!(deadline["recorded_on"], "2024-05-01");
        assert_eq!(
            deadline["upload_deadline"], "2024-05-07",
            "Labour Day holiday is skipped"
        );
        assert_eq!(deadline["calendar_complete"], true);
    }
    assert_eq!(
        report["deadlines"]["case_file"]["case_file_deadline"],
        "2024-05-31"
    );
}

/// Checks a recording whose container clock was never set, copied under a
/// body camera's name for 2027-01-04 so that its start comes from the
/// name, with `calendar` (TOML) as the configured calendar file if given.
fn check_2027_recording(calendar: Option<&str>) -> Value {
    let data = tempfile::tempdir().unwrap();
    if let Some(calendar) = calendar {
        std::fs::write(data.path().join("calendar.toml"), calendar).unwrap();
        std::fs::write(
            data.path().join("config.toml"),
            "calendar_file = \"calendar.toml\"\n",
        )
        .unwrap();
    }
    let inputs = tempfile::tempdir().unwrap();
    let recording = inputs.path().join("HB0631_130631001_20270104100000_0001.MP4");
    std::fs::copy(fixture("cases/clock-unset-1970.mp4"), &recording).unwrap();
    run_json_ok(data.path(), &["check", recording.to_str().unwrap()])
}

#[test]
fn deadline_beyond_builtin_calendar_uses_weekdays_with_warning() {
    let report = check_2027_recording(None);

    let deadline = &report["deadlines"]["recordings"][0];
    assert_eq!(deadline["recorded_on"], "2027-01-04");
    assert_eq!(
        deadline["upload_deadline"], "2027-01-06",
        "Tuesday and Wednesday"
    );
    assert_eq!(deadline["calendar_complete"], false);
    assert!(
        deadline["warnings"][0]["en"]
            .as_str()
            .unwrap()
            .contains("2027"),
        "{}",
        deadline["warnings"]
    );
}

#[test]
fn deadline_beyond_builtin_calendar_uses_calendar_file() {
    let report =
        check_2027_recording(Some("[[year]]\nyear = 2027\nholidays = [\"2027-01-05\"]\n"));

    let deadline = &report["deadlines"]["recordings"][0];
    assert_eq!(
        deadline["upload_deadline"], "2027-01-07",
        "the listed holiday is skipped"
    );
    assert_eq!(deadline["calendar_complete"], true);
    assert!(deadline["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn broken_calendar_file_warns_instead_of_failing() {
    let report =
        check_2027_recording(Some("[[year]]\nyear = 2027\nholidays = [\"2027-02-30\"]\n"));

    assert_eq!(
        report["deadlines"]["recordings"][0]["upload_deadline"],
        "2027-01-06"
    );
    assert!(report["deadlines"]["warnings"][0]["en"]
        .as_str()
        .unwrap()
        .contains("calendar file"));
}

#[test]
fn check_stores_nothing() {
    let data = tempfile::tempdir().unwrap();
    check(data.path(), &["cases/base-10s.mp4", "cases/ts-gap-10s.ts"]);
    assert!(!data.path().join("catalog.sqlite").exists());
    assert_eq!(stored_objects(data.path()), 0);
}

#[test]
fn process_stores_findings_and_reports_sessions() {
    let data = tempfile::tempdir().unwrap();
    let report = on_session(data.path(), "process");

    let boundaries = report["sessions"][0]["boundaries"].as_array().unwrap();
    assert_eq!(boundaries[1]["kind"], "gap");
    assert_duration(
        &boundaries[1]["duration"],
        6.97,
        "gap between chapters 2 and 3",
    );
    let u2 = unit(&report, "U2");
    assert_eq!(u2["unexplained_gaps"], 1);

    let timeline = Path::new(report["timeline"].as_str().expect("a timeline is stored"));
    assert!(timeline.starts_with(data.path()), "{}", timeline.display());
    assert!(image::open(timeline).is_ok());

    let chapter = file_entry(&report, "HB0631_130631001_20240501100000_0001.MP4");
    let late = chapter["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "late_upload");
    assert!(
        late.is_some(),
        "recorded in 2024, uploaded later: {}",
        chapter["findings"]
    );
    assert_eq!(late.unwrap()["detail"]["delay_filed"], false);
}

#[test]
fn process_stores_ts_gap_findings_in_catalog() {
    let data = tempfile::tempdir().unwrap();
    let input = fixture("cases/ts-gap-10s.ts");
    let report = run_json_ok(data.path(), &["process", input.to_str().unwrap()]);
    let file = file_entry(&report, "ts-gap-10s.ts");
    assert_eq!(findings_of(file, "gap").len(), 2, "{}", file["findings"]);

    let connection = rusqlite::Connection::open(data.path().join("catalog.sqlite")).unwrap();
    let stored: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM findings WHERE stage = 'continuity' AND kind = 'gap'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 2);
}

#[test]
fn justified_gap_is_reported_apart() {
    let data = tempfile::tempdir().unwrap();
    let session = fixture("cases/session");
    let case = session.join("case.json");
    on_session(data.path(), "process");

    let justification = run_json_ok(
        data.path(),
        &[
            "justify",
            "HB0631@2024-05-01T10:00:20",
            "--reason",
            "secret_or_privacy",
            "--basis",
            "当事人要求保护商业秘密，经带队负责人同意",
        ],
    );
    assert_eq!(justification["reason"], "secret_or_privacy");
    assert_eq!(justification["actor"], "tester");

    let (_, report) = run_json(
        data.path(),
        &[
            "check",
            session.to_str().unwrap(),
            "--case",
            case.to_str().unwrap(),
        ],
    );
    assert!(report["unexplained_gaps"].as_array().unwrap().is_empty());
    let justified = report["justified_gaps"].as_array().unwrap();
    assert_eq!(justified.len(), 1);
    assert_eq!(
        justified[0]["justification"]["basis"],
        "当事人要求保护商业秘密，经带队负责人同意"
    );
    let u2 = unit(&report, "U2");
    assert_eq!(u2["justified_gaps"], 1);
    assert_eq!(u2["unexplained_gaps"], 0);
    assert_eq!(u2["complete"], true);
}

#[test]
fn justify_unknown_gap_is_rejected_in_both_languages() {
    let data = tempfile::tempdir().unwrap();
    for (lang, words) in [("zh", "目录库中没有中断"), ("en", "is not in the catalog")] {
        let output = run(
            data.path(),
            &[
                "--lang",
                lang,
                "justify",
                "HB0631@2024-05-01T09:00:00",
                "--reason",
                "other",
                "--basis",
                "x",
            ],
        );
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(words), "{stderr}");
    }
    let output = run(
        data.path(),
        &[
            "justify",
            "HB0631@2024-05-01T09:00:00",
            "--reason",
            "picnic",
            "--basis",
            "x",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown reason is a usage error"
    );
}

#[test]
fn delay_filing_is_shown_with_late_upload() {
    let data = tempfile::tempdir().unwrap();
    let session = fixture("cases/session");
    let chapter = session.join("HB0631_130631001_20240501100000_0001.MP4");
    run_json_ok(data.path(), &["process", session.to_str().unwrap()]);

    let filing = run_json_ok(
        data.path(),
        &[
            "delay",
            chapter.to_str().unwrap(),
            "--reason",
            "外出执法，设备未能按时送回",
        ],
    );
    assert_eq!(filing["sha256"], sha256_of(&chapter).as_str());

    let (_, report) = run_json(data.path(), &["process", session.to_str().unwrap()]);
    let deadline = report["deadlines"]["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["file_name"] == "HB0631_130631001_20240501100000_0001.MP4")
        .unwrap();
    assert_eq!(deadline["late"], true);
    assert_eq!(
        deadline["delay_filing"]["reason"],
        "外出执法，设备未能按时送回"
    );
    let entry = file_entry(&report, "HB0631_130631001_20240501100000_0001.MP4");
    let late = entry["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "late_upload")
        .unwrap();
    assert_eq!(late["detail"]["delay_filed"], true);
}

#[test]
fn delay_for_unknown_recording_is_rejected() {
    let data = tempfile::tempdir().unwrap();
    let output = run(
        data.path(),
        &["delay", &"ab".repeat(32), "--reason", "late"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not ingested"));
}

#[test]
fn timeline_picture_marks_gap_in_red() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("timeline.png");
    let session = fixture("cases/session");
    let case = session.join("case.json");
    let output = run(
        data.path(),
        &[
            "check",
            session.to_str().unwrap(),
            "--case",
            case.to_str().unwrap(),
            "--timeline",
            out.to_str().unwrap(),
        ],
    );
    assert_success(&output);

    let picture = image::open(&out).unwrap().to_rgb8();
    let count = |colour: [u8; 3]| picture.pixels().filter(|p| p.0 == colour).count();
    let red = count([215, 38, 38]);
    let green = count([46, 139, 87]);
    assert!(red > 500, "the 6.97 s gap is drawn in red ({red} pixels)");
    assert!(
        green > red,
        "footage outweighs the gap ({green} green, {red} red)"
    );
}

#[test]
fn full_decode_of_clean_file_finds_nothing() {
    let data = tempfile::tempdir().unwrap();
    let input = fixture("cases/base-10s.mp4");
    let report = run_json_ok(data.path(), &["check", "--decode", input.to_str().unwrap()]);
    assert_no_anomaly(file_entry(&report, "base-10s.mp4"));
}

#[test]
fn full_decode_finds_damaged_frames() {
    let data = tempfile::tempdir().unwrap();
    let damaged = data.path().join("damaged.mp4");
    let mut bytes = std::fs::read(fixture("cases/base-10s.mp4")).unwrap();
    // Overwrite the middle of the file, inside the media data, with noise
    // that no decoder accepts; the sample tables stay intact.
    let middle = bytes.len() / 2;
    for (i, byte) in bytes[middle..middle + 20_000].iter_mut().enumerate() {
        *byte = (i * 7919 % 251) as u8;
    }
    std::fs::write(&damaged, bytes).unwrap();

    let report = run_json_ok(
        data.path(),
        &["check", "--decode", damaged.to_str().unwrap()],
    );
    let file = file_entry(&report, "damaged.mp4");
    assert_eq!(
        findings_of(file, "decode_error").len(),
        1,
        "{}",
        file["findings"]
    );
}

#[test]
fn camera_recording_at_other_times_is_not_measured_on_units() {
    let inbox = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("cases/session")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, inbox.path().join(path.file_name().unwrap())).unwrap();
    }
    let elsewhere = inbox.path().join("HB0777_130631002_20240501150000_0001.MP4");
    std::fs::copy(fixture("cases/clock-unset-1970.mp4"), &elsewhere).unwrap();

    let data = tempfile::tempdir().unwrap();
    let case = inbox.path().join("case.json");
    let report = run_json_ok(
        data.path(),
        &["check", inbox.path().to_str().unwrap(), "--case", case.to_str().unwrap()],
    );
    let devices: Vec<&str> = report["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, vec!["HB0631", "HB0631"], "one row per unit, only the camera that was there");
}

#[test]
fn clock_far_from_file_name_is_flagged() {
    let file = check_one("samples/dashcam-fuzz/PA20191130-121556-000135.MP4");
    assert_eq!(file["start_source"], "container");
    let flagged = findings_of(&file, "unreliable_clock");
    assert_eq!(flagged.len(), 1, "{}", file["findings"]);
    assert_eq!(flagged[0]["detail"]["creation_time"], "2014-11-14T07:34:24+00:00");
    assert_eq!(flagged[0]["detail"]["name_time"], "2019-11-30T04:15:56+00:00");
    let zh = flagged[0]["message"]["zh"].as_str().unwrap();
    assert!(zh.contains("相差约 1841 天"), "{zh}");
}
