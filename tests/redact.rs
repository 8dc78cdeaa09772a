//! Redaction end to end: `evidence redact` on real files, with the output
//! decoded by GStreamer and compared with the original pixel by pixel.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use evidence::media::index::{read_index, TrackKind};
use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::Value;

/// Chapter 2 of the session: 640x360 SMPTE bars with a field of noise at
/// the bottom right (x 480–640, y 270–360), so a mask there hides detail.
const TEXTURED: &str = "cases/session/HB0631_130631001_20240501100010_0002.MP4";

/// The mask used on the textured fixture: inside the noise field.
const MASK: (usize, usize, usize, usize) = (496, 280, 128, 64);

/// Largest mean absolute luma difference outside the masks that counts as
/// encoder noise at CRF 20 (8-bit levels).
const ENCODER_NOISE: f64 = 3.0;

/// One decoded frame: presentation time and its 8-bit luma plane.
struct Frame {
    pts: u64,
    width: usize,
    luma: Vec<u8>,
}

fn decode_luma(path: &Path) -> Vec<Frame> {
    let (pipeline, sink) = appsink::playing(
        "filesrc name=src ! decodebin ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=sink sync=false",
        path,
    );
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let caps = sample.caps().unwrap().structure(0).unwrap().to_owned();
        let width = caps.get::<i32>("width").unwrap() as usize;
        let height = caps.get::<i32>("height").unwrap() as usize;
        let buffer = sample.buffer().unwrap();
        let map = buffer.map_readable().unwrap();
        // GRAY8 rows are padded to 4 bytes.
        let stride = map.len() / height;
        let mut luma = Vec::with_capacity(width * height);
        for y in 0..height {
            luma.extend_from_slice(&map[y * stride..y * stride + width]);
        }
        frames.push(Frame {
            pts: buffer.pts().unwrap().nseconds(),
            width,
            luma,
        });
    }
    pipeline.set_state(gst::State::Null).unwrap();
    frames
}

fn decode_audio(path: &Path) -> (u32, Vec<(f64, f32)>) {
    let (pipeline, sink) = appsink::playing(
        "filesrc name=src ! decodebin ! audioconvert ! audio/x-raw,format=F32LE,channels=1,layout=interleaved ! appsink name=sink sync=false",
        path,
    );
    let mut samples = Vec::new();
    let mut rate = 0;
    while let Ok(sample) = sink.pull_sample() {
        rate = sample
            .caps()
            .unwrap()
            .structure(0)
            .unwrap()
            .get::<i32>("rate")
            .unwrap() as u32;
        let buffer = sample.buffer().unwrap();
        let start = buffer.pts().unwrap().nseconds() as f64 / 1e9;
        let map = buffer.map_readable().unwrap();
        for (i, chunk) in map.chunks_exact(4).enumerate() {
            let value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            samples.push((start + i as f64 / f64::from(rate), value));
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (rate, samples)
}

fn rms(samples: &[(f64, f32)], from: f64, to: f64) -> f64 {
    let inside: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, v)| f64::from(*v))
        .collect();
    assert!(!inside.is_empty(), "no audio between {from} and {to}");
    (inside.iter().map(|v| v * v).sum::<f64>() / inside.len() as f64).sqrt()
}

fn region(frame: &Frame, x0: usize, y0: usize, w: usize, h: usize) -> Vec<f64> {
    let mut values = Vec::new();
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            values.push(f64::from(frame.luma[y * frame.width + x]));
        }
    }
    values
}

fn variance(values: &[f64]) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
}

/// Mean absolute difference outside the box grown by `margin` pixels.
fn difference_outside(
    a: &Frame,
    b: &Frame,
    (x, y, w, h): (usize, usize, usize, usize),
    margin: usize,
) -> f64 {
    let height = a.luma.len() / a.width;
    let mut sum = 0.0;
    let mut count = 0usize;
    for row in 0..height {
        for column in 0..a.width {
            let near = column + margin >= x
                && column < x + w + margin
                && row + margin >= y
                && row < y + h + margin;
            if !near {
                sum += (f64::from(a.luma[row * a.width + column])
                    - f64::from(b.luma[row * b.width + column]))
                .abs();
                count += 1;
            }
        }
    }
    sum / count as f64
}

fn write_spec(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("spec.json");
    std::fs::write(&path, body).unwrap();
    path
}

fn redact(dir: &Path, input: &Path, spec: &Path, extra: &[&str]) -> (PathBuf, Value) {
    let out = dir.join("out.mp4");
    let mut args = vec![
        "redact",
        input.to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (output, log) = run_json(&dir.join("data"), &args);
    assert_success(&output);
    let stored: Value = read_json(dir.join("out.mp4.redaction.json"));
    assert_eq!(
        stored["output"]["sha256"], log["output"]["sha256"],
        "the stored log is the printed one"
    );
    (out, log)
}

fn mask_spec(style: &str, extra: &str) -> String {
    let (x, y, w, h) = MASK;
    format!(
        r#"{{"masks":[{{"shape":"rectangle","style":"{style}"{extra},
            "keyframes":[{{"at":0,"x":{x},"y":{y},"width":{w},"height":{h}}}],
            "reason":"personal_privacy","author":"130631001"}}]}}"#
    )
}

fn check_masked_frames(original: &Path, redacted: &Path, cell: Option<usize>) {
    let before = decode_luma(original);
    let after = decode_luma(redacted);
    assert_eq!(before.len(), after.len());
    let (x, y, w, h) = MASK;
    for index in [0, before.len() / 2, before.len() - 1] {
        let (a, b) = (&before[index], &after[index]);
        assert_eq!(a.pts, b.pts, "frame {index} keeps its time");
        let inside_before = region(a, x + 2, y + 2, w - 4, h - 4);
        let inside_after = region(b, x + 2, y + 2, w - 4, h - 4);
        assert!(
            variance(&inside_before) > 500.0,
            "the fixture has detail under the mask"
        );
        let changed = inside_before
            .iter()
            .zip(&inside_after)
            .filter(|(p, q)| (*p - *q).abs() > 8.0)
            .count();
        assert!(
            changed > inside_before.len() / 2,
            "frame {index}: pixels under the mask differ from the original"
        );
        match cell {
            None => assert!(
                variance(&inside_after) < 4.0,
                "frame {index}: a solid mask is flat"
            ),
            Some(cell) => {
                for cy in 0..h / cell {
                    for cx in 0..w / cell {
                        let values =
                            region(b, x + cx * cell + 3, y + cy * cell + 3, cell - 6, cell - 6);
                        assert!(
                            variance(&values) < 4.0,
                            "frame {index}: cell ({cx},{cy}) has detail"
                        );
                    }
                }
            }
        }
        let outside = difference_outside(a, b, MASK, 8);
        assert!(
            outside < ENCODER_NOISE,
            "frame {index}: outside the mask the picture changed by {outside}"
        );
    }
}

#[test]
fn solid_mask_hides_region_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(TEXTURED);
    let spec = write_spec(dir.path(), &mask_spec("solid", ""));
    let (out, log) = redact(dir.path(), &input, &spec, &["--full"]);
    assert_eq!(log["method"], "full");
    assert_eq!(log["original"]["sha256"], sha256_of(&input).as_str());
    assert_eq!(log["masks"][0]["reason"], "personal_privacy");
    assert_eq!(log["masks"][0]["author"], "130631001");
    check_masked_frames(&input, &out, None);
}

#[test]
fn pixelated_cells_are_flat_after_smart_render() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(TEXTURED);
    let spec = write_spec(dir.path(), &mask_spec("pixelate", r#","cell":16"#));
    let (out, log) = redact(dir.path(), &input, &spec, &[]);
    assert_eq!(log["method"], "smart");
    check_masked_frames(&input, &out, Some(16));
}

#[test]
fn smart_render_reencodes_only_touched_gops() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("cases/base-10s.mp4");
    let spec = write_spec(
        dir.path(),
        r#"{"masks":[{"shape":"ellipse","style":"blur","from":4.0,"to":5.0,
            "keyframes":[{"at":4,"x":100,"y":80,"width":120,"height":80}],
            "reason":"trade_secret","author":"a"}]}"#,
    );
    let (out, log) = redact(dir.path(), &input, &spec, &[]);
    assert_eq!(log["method"], "smart");
    assert_eq!(log["fallback_reason"], Value::Null);
    // GOP 30 at 30 fps: the mask from 4.0 to 5.0 s lies in one GOP.
    let spans = log["reencoded"].as_array().unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["frames"], 30);
    assert!((spans[0]["from"].as_f64().unwrap() - 4.0).abs() < 1e-6);
    assert_eq!(log["frames_masked"], 30);

    // Samples outside the re-encoded GOP are copied byte for byte.
    let before = read_index(&input).unwrap();
    let after = read_index(&out).unwrap();
    let video = |i: &evidence::media::index::ContainerIndex| {
        i.tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .unwrap()
            .clone()
    };
    let (a, b) = (video(&before), video(&after));
    let read = |path: &Path, s: &evidence::media::index::Sample| {
        let bytes = std::fs::read(path).unwrap();
        bytes[s.offset as usize..s.offset as usize + s.size as usize].to_vec()
    };
    assert_eq!(read(&input, &a.samples[0]), read(&out, &b.samples[0]));
    assert_eq!(read(&input, &a.samples[299]), read(&out, &b.samples[299]));
    assert_ne!(read(&input, &a.samples[120]), read(&out, &b.samples[120]));
}

#[test]
fn frame_count_and_timestamps_match_the_input() {
    for (name, extra) in [
        ("cases/base-10s.mp4", &[][..]),
        ("cases/dropped-frames.mp4", &["--full"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let input = fixture(name);
        let spec = write_spec(
            dir.path(),
            &std::fs::read_to_string(fixture("redact-example.json")).unwrap(),
        );
        let (out, _) = redact(dir.path(), &input, &spec, extra);
        let video = |path: &Path| {
            read_index(path)
                .unwrap()
                .tracks
                .into_iter()
                .find(|t| t.kind == TrackKind::Video)
                .unwrap()
        };
        let (a, b) = (video(&input), video(&out));
        assert_eq!(a.samples.len(), b.samples.len(), "{name}: frame count");
        let (ta, tb) = (a.presentation_times(), b.presentation_times());
        for (x, y) in ta.iter().zip(&tb) {
            assert!(
                (x - y).abs() < 0.001,
                "{name}: frame at {x} s moved to {y} s"
            );
        }
    }
}

#[test]
fn muted_range_is_silent_and_the_rest_keeps_its_level() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("cases/base-10s.mp4");
    let spec = write_spec(
        dir.path(),
        r#"{"audio":[{"from":3.0,"to":5.0,"action":"mute","reason":"personal_privacy","author":"a"}]}"#,
    );
    let (out, log) = redact(dir.path(), &input, &spec, &[]);
    assert_eq!(log["method"], "full", "audio edits re-encode the recording");
    assert!(log["fallback_reason"]["en"]
        .as_str()
        .unwrap()
        .contains("audio"));
    let (_, before) = decode_audio(&input);
    let (_, after) = decode_audio(&out);
    // AAC frames overlap by about 21 ms at 48 kHz, so the edges are skipped.
    let silent = rms(&after, 3.05, 4.95);
    assert!(silent < 0.001, "muted range RMS {silent}");
    let (kept, original) = (rms(&after, 6.0, 9.0), rms(&before, 6.0, 9.0));
    assert!(original > 0.1, "the fixture has a tone");
    assert!(
        (kept / original - 1.0).abs() < 0.1,
        "level after the mute {kept} vs {original}"
    );
    let (kept, original) = (rms(&after, 0.5, 2.5), rms(&before, 0.5, 2.5));
    assert!(
        (kept / original - 1.0).abs() < 0.1,
        "level before the mute {kept} vs {original}"
    );
}

#[test]
fn odd_width_444_recording_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("cases/odd-width-853x480.mp4");
    let spec = write_spec(
        dir.path(),
        &std::fs::read_to_string(fixture("redact-example.json")).unwrap(),
    );
    let (_, log) = redact(dir.path(), &input, &spec, &[]);
    // H.264 4:4:4 cannot share a sample entry with a 4:2:0 re-encode.
    assert_eq!(log["method"], "full");
    assert!(
        log["fallback_reason"]["en"]
            .as_str()
            .unwrap()
            .contains("profile"),
        "{}",
        log["fallback_reason"]
    );
    assert_eq!(log["output"]["frames"], 75);
    // The stream inside is coded 852 wide; an odd width would be padded
    // by one column and recorded.
    let width = read_index(&input)
        .unwrap()
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap()
        .width
        .unwrap();
    if width % 2 == 1 {
        assert_eq!(log["padding"]["right"], 1);
        assert_eq!(log["output"]["width"], width + 1);
    } else {
        assert_eq!(log["padding"], Value::Null);
        assert_eq!(log["output"]["width"], width);
    }
    assert_eq!(log["output"]["height"], 480);
}

#[test]
fn invalid_spec_names_the_field_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        r#"{"masks":[{"shape":"rectangle","style":"solid","keyframes":[{"x":1,"y":1,"width":-5,"height":4}],
            "reason":"personal_privacy","author":"a"}]}"#,
    );
    let input = fixture("cases/base-10s.mp4");
    let out = dir.path().join("out.mp4");
    for (lang, expected) in [("zh", "必须是大于 0"), ("en", "must be pixels above 0")] {
        let output = run(
            &dir.path().join("data"),
            &[
                "--lang",
                lang,
                "redact",
                input.to_str().unwrap(),
                "--spec",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("masks[0].keyframes[0].width"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    assert!(!out.exists(), "nothing is written for an invalid spec");
}

#[test]
fn existing_output_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    std::fs::write(&out, b"keep me").unwrap();
    let input = fixture("cases/base-10s.mp4");
    let spec = fixture("redact-example.json");
    let output = run(
        &dir.path().join("data"),
        &[
            "redact",
            input.to_str().unwrap(),
            "--spec",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
}

#[test]
fn output_inside_the_store_is_refused_and_nothing_is_written_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let input = fixture(TEXTURED);
    run_json_ok(&data, &["process", input.to_str().unwrap()]);
    let spec = write_spec(dir.path(), &mask_spec("solid", ""));
    let tier = data.join("store/evidence");
    let before: Vec<_> = std::fs::read_dir(&tier).unwrap().map(|e| e.unwrap().path()).collect();

    for (lang, refusal) in [("zh", "位于对象存储"), ("en", "lies inside the object store")] {
        let out = tier.join("copy.mp4");
        let output = run(
            &data,
            &[
                "--lang",
                lang,
                "redact",
                input.to_str().unwrap(),
                "--spec",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(refusal), "{lang}: {stderr}");
    }
    let after: Vec<_> = std::fs::read_dir(&tier).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(after, before, "nothing was written into the evidence tier");
    let (output, fixity) = run_json(&data, &["verify"]);
    assert!(output.status.success(), "{fixity}");
    assert_eq!(fixity["failed"], 0, "{fixity}");
}
