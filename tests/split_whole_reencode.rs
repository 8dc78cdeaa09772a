//! Tests whole-track re-encoding of clips. Chapters whose video cannot be
//! spliced are re-encoded in full, and the clip must still be written and
//! decode.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn run_json_code(data_dir: &Path, args: &[&str]) -> (i32, Value) {
    let (output, report) = common::run_json(data_dir, args);
    (output.status.code().unwrap_or(-1), report)
}

#[test]
fn whole_reencode_session_clips_decode() {
    let data = tempfile::tempdir().unwrap();
    let case = fixture("cases/session/case.json");
    let session = fixture("cases/session");
    let (code, report) = run_json_code(
        data.path(),
        &[
            "split",
            "--reencode",
            "--case",
            case.to_str().unwrap(),
            session.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["clips_missing"], serde_json::json!([]), "{report:#}");

    // U1 has 14.0 s of footage and U2 16.0 s around a 6.97 s gap, so at
    // 30 frames a second they contain 420 and 480 frames.
    for (unit, frames) in [("U1", 420), ("U2", 480)] {
        let clip = report["clips"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["unit_id"] == unit)
            .unwrap_or_else(|| panic!("no clip for {unit}: {report:#}"));
        assert_eq!(clip["method"], "reencode_whole", "{unit}");
        let path = clip["path"].as_str().unwrap();

        let (code, check) = run_json_code(data.path(), &["check", "--decode", path]);
        assert_eq!(code, 0, "{unit}: {check:#}");
        let file = &check["files"][0];
        let video = file["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "video")
            .unwrap();
        assert_eq!(video["frames"], frames, "{unit}");
        let decode_errors: Vec<_> = file["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "decode_error")
            .collect();
        assert!(decode_errors.is_empty(), "{unit}: {decode_errors:?}");
    }
}
