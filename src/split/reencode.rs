//! The re-encode path: a frame-accurate clip with nothing hidden before or
//! after the unit's boundaries.
//!
//! Where the stream allows it (H.264 in an `avc1` entry, 8-bit 4:2:0
//! profiles, 4-byte NAL lengths), only the partial GOP at each end of a
//! stretch is re-encoded and the GOPs between are copied unchanged. The
//! re-encoded frames carry their own SPS/PPS under ids the camera did not
//! use, and both parameter sets go into one `avcC`, so a decoder switches
//! between them at each IDR without a second sample entry. Otherwise the
//! whole video track is re-encoded. Other tracks (audio, timecode,
//! telemetry) are copied as in the lossless cut, since their samples are
//! all sync samples and the edit list trims them exactly.
//!
//! Each part to re-encode is decoded from the original with an accurate
//! seek (the decoder drops the GOP's frames before the part) and encoded by
//! x264 into a temporary MP4, whose samples the clip then copies:
//!
//! ```text
//! filesrc ! qtdemux ! decodebin ! videoconvert ! appsink      (seek to the part)
//! appsrc ! x264enc ! h264parse ! mp4mux ! filesink             (running time from 0)
//! ```

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::cut::{pieces, read_sources, Builder, Cut};
use super::plan::{ClipPlan, Recording};
use super::{Method, SplitError};
use crate::i18n::Text;
use crate::media::index::{read_index, TrackIndex, TrackKind};
use crate::media::mp4_writer::read_source_movie;
use crate::runner::Services;

/// The pipelines, with named elements whose properties code sets: one
/// decodes a stretch of the original, the other encodes what it decoded.
const DECODE_PIPELINE: &str = include_str!("../../pipelines/split-decode.launch");
const ENCODE_PIPELINE: &str = include_str!("../../pipelines/split-encode.launch");

/// x264 quality (constant rate factor): 18 is visually lossless for
/// camera footage, as close to the original as a re-encode gets.
const ENCODER_QUALITY: u32 = 18;

/// Maximum time one part may take to encode before the pipeline counts as
/// hung. A GOP takes well under a second and a whole clip a few minutes.
const ENCODE_TIMEOUT_SECONDS: u64 = 3600;

/// Folder under the data directory for the temporary parts.
const WORK_DIR: &str = "split-work";

/// H.264 profiles whose streams are 8-bit 4:2:0, which x264 reproduces:
/// constrained baseline, main, extended and high.
const SPLICEABLE_PROFILES: [(u8, &str); 4] = [
    (66, "constrained-baseline"),
    (77, "main"),
    (88, "main"),
    (100, "high"),
];

/// A re-encoded cut and the folder of its temporary parts, removed when
/// dropped (after the clip is written).
pub struct Reencoded {
    pub cut: Cut,
    pub method: Method,
    /// Encoder name and version, for the manifest.
    pub encoder: String,
    pub work_dir: WorkDir,
}

/// A temporary folder removed when dropped.
pub struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One stretch of the video track: copied unchanged or re-encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    Copy { from: f64, to: f64 },
    Encode { from: f64, to: f64 },
}

/// Cuts a planned clip with its video re-encoded where a boundary falls
/// inside a GOP.
pub fn cut_reencoded(
    services: &Services,
    plan: &ClipPlan,
    recordings: &[Recording],
) -> Result<Reencoded, SplitError> {
    let fail = |reason: Text| SplitError::Reencode {
        unit_id: plan.unit_id.clone(),
        reason,
    };
    // Messages from GStreamer and the encoder helpers are English only, so
    // the Chinese form quotes them after a Chinese lead-in.
    let fail_with = |zh: &str, en: String| fail(Text::new(format!("{zh}：{en}"), en));
    crate::media::init().map_err(|e| {
        fail(Text::new(
            format!("GStreamer 无法启动：{e}"),
            format!("GStreamer cannot start: {e}"),
        ))
    })?;
    if gst::ElementFactory::find("x264enc").is_none() {
        return Err(fail(Text::new(
            "未安装 x264enc 编码器（gstreamer1.0-plugins-ugly）",
            "the x264enc element (gstreamer1.0-plugins-ugly) is not installed",
        )));
    }

    let movies = read_sources(plan, recordings)?;
    let first = plan.segments[0].recording;
    let mut builder = Builder::new(&recordings[first], &movies[&first]);
    let video = builder
        .tracks
        .iter()
        .position(|t| t.kind == TrackKind::Video);

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let work_path = services
        .data_dir
        .join(WORK_DIR)
        .join(format!("{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&work_path).map_err(|e| {
        fail(Text::new(
            format!("无法创建 {}：{e}", work_path.display()),
            format!("cannot create {}: {e}", work_path.display()),
        ))
    })?;
    let work_dir = WorkDir(work_path.clone());

    // Splicing needs every chapter's video to share the first one's
    // parameters; one that does not makes the whole track re-encoded.
    let splice = video.and_then(|out| Splice::check(&builder.tracks[out].boxes.sample_entries[0]));
    let same_entries = video.is_some_and(|out| {
        plan.segments.iter().all(|segment| {
            let recording = &recordings[segment.recording];
            builder
                .matching_track(out, recording, &movies[&segment.recording])
                .is_some_and(|(_, boxes)| {
                    boxes.sample_entries[0] == builder.tracks[out].boxes.sample_entries[0]
                })
        })
    });
    let mut splice = if same_entries { splice } else { None };
    let method = if splice.is_some() {
        Method::ReencodePartialGop
    } else {
        Method::ReencodeWhole
    };

    // Without a splice every video sample comes from a re-encode, so the
    // track starts with no entry: each encoded part's entry is then added
    // once, and the sample entry numbers that `append` hands out stay the
    // ones the written track holds.
    if splice.is_none() {
        if let Some(out) = video {
            builder.set_sample_entries(out, Vec::new());
        }
    }
    let mut part_number = 0;
    for segment in &plan.segments {
        let recording = &recordings[segment.recording];
        let movie = &movies[&segment.recording];
        builder.start_segment(segment);
        for out in 0..builder.tracks.len() {
            let Some((track, boxes)) = builder.matching_track(out, recording, movie) else {
                continue;
            };
            if Some(out) != video {
                let entry = boxes.sample_entries[0].clone();
                builder.append(
                    out,
                    track,
                    &recording.path,
                    &entry,
                    segment.from,
                    segment.to,
                    segment.clip_from,
                );
                continue;
            }

            // Every video part names the camera's entry here; with a splice,
            // that entry is replaced at the end by one whose avcC also holds
            // the re-encoded parts' parameter sets.
            let source_entry = boxes.sample_entries[0].clone();
            let parts = match &splice {
                Some(_) => plan_parts(track, segment.from, segment.to),
                None => vec![Part::Encode {
                    from: segment.from,
                    to: segment.to,
                }],
            };
            for part in parts {
                let (from, to) = match part {
                    Part::Copy { from, to } | Part::Encode { from, to } => (from, to),
                };
                let clip_from = segment.clip_from + (from - segment.from);
                match part {
                    Part::Copy { .. } => {
                        builder.append(
                            out,
                            track,
                            &recording.path,
                            &source_entry,
                            from,
                            to,
                            clip_from,
                        );
                    }
                    Part::Encode { .. } => {
                        part_number += 1;
                        let output = work_path.join(format!("part-{part_number}.mp4"));
                        encode(
                            &recording.path,
                            from,
                            to,
                            track.timescale,
                            &output,
                            splice.as_ref(),
                        )
                        .map_err(|e| fail_with("重新编码失败", e))?;

                        let index = read_index(&output).map_err(|e| fail(e.text()))?;
                        let encoded = index
                            .tracks
                            .iter()
                            .find(|t| t.kind == TrackKind::Video && !t.samples.is_empty())
                            .ok_or_else(|| {
                                fail(Text::new(
                                    format!("编码器没有为 {from:.3}–{to:.3} 秒写出视频帧"),
                                    format!(
                                        "the encoder wrote no video frames for {from:.3}–{to:.3} s"
                                    ),
                                ))
                            })?;
                        let encoded_movie = read_source_movie(&output)
                            .map_err(|e| fail_with("无法读取编码结果", e.to_string()))?;
                        let encoded_entry = encoded_movie
                            .tracks
                            .iter()
                            .flatten()
                            .find(|(id, _)| *id == encoded.id)
                            .map(|(_, b)| b.sample_entries[0].clone())
                            .ok_or_else(|| {
                                fail(Text::new(
                                    "编码结果没有样本描述（sample entry）",
                                    "the encoded part has no sample entry",
                                ))
                            })?;
                        let entry = match &mut splice {
                            Some(splice) => {
                                splice.merge(&encoded_entry).map_err(|e| {
                                    fail_with("重新编码的参数无法与原始码流拼接", e)
                                })?;
                                source_entry.clone()
                            }
                            None => encoded_entry,
                        };
                        builder.append(out, encoded, &output, &entry, 0.0, to - from, clip_from);
                    }
                }
            }
        }
        // Re-encoded frames hide nothing before the boundary.
        builder.segment_report().preroll = 0.0;
    }

    if let (Some(out), Some(splice)) = (video, &splice) {
        builder.set_sample_entries(out, vec![splice.merged.clone()]);
    }
    let cut = builder.finish(plan.segments[0].wall_from.timestamp());
    Ok(Reencoded {
        cut,
        method,
        encoder: encoder_version(),
        work_dir,
    })
}

/// Splits a stretch `[from, to)` of a video track into the partial GOP at
/// each end, to re-encode, and the whole GOPs between, to copy.
fn plan_parts(track: &TrackIndex, from: f64, to: f64) -> Vec<Part> {
    let timescale = f64::from(track.timescale);
    let media_pieces: Vec<_> = pieces(track)
        .into_iter()
        .filter(|p| p.media_time.is_some())
        .collect();
    let [piece] = media_pieces.as_slice() else {
        return vec![Part::Encode { from, to }];
    };
    let media_time = piece.media_time.expect("filtered");
    let seconds_of = |pts: i64| piece.start + (pts - media_time) as f64 / timescale;
    let half_tick = 0.5 / timescale;

    let mut keyframes: Vec<f64> = track
        .samples
        .iter()
        .filter(|s| s.is_sync)
        .map(|s| seconds_of(s.pts))
        .collect();
    keyframes.sort_by(f64::total_cmp);
    let track_end = super::cut::presented_end(track);

    let Some(&head_key) = keyframes.iter().find(|&&k| k >= from - half_tick) else {
        return vec![Part::Encode { from, to }];
    };
    let ends_with_track = to >= track_end - half_tick;
    let ends_on_key = keyframes.iter().any(|&k| (k - to).abs() <= half_tick);
    let tail_key = if ends_with_track || ends_on_key {
        to
    } else {
        match keyframes.iter().rev().find(|&&k| k < to - half_tick) {
            Some(&k) => k,
            None => to,
        }
    };
    if head_key >= tail_key - half_tick {
        return vec![Part::Encode { from, to }];
    }

    let mut parts = Vec::new();
    if head_key > from + half_tick {
        parts.push(Part::Encode { from, to: head_key });
    }
    parts.push(Part::Copy {
        from: head_key.max(from),
        to: tail_key,
    });
    if tail_key < to - half_tick {
        parts.push(Part::Encode { from: tail_key, to });
    }
    parts
}

/// Decodes seconds `[from, to)` of the video of `source` (an accurate seek,
/// so the decoder drops the GOP's frames before `from`) and encodes them
/// into `output` with x264, in the source track's `timescale`; with a splice, in the source's profile and
/// under parameter-set ids the source does not use.
fn encode(
    source: &Path,
    from: f64,
    to: f64,
    timescale: u32,
    output: &Path,
    splice: Option<&Splice>,
) -> Result<(), String> {
    let decode = launch(DECODE_PIPELINE, "split-decode")?;
    let encode = launch(ENCODE_PIPELINE, "split-encode")?;
    let element = |pipeline: &gst::Pipeline, name: &str| {
        pipeline
            .by_name(name)
            .ok_or_else(|| format!("pipeline has no element {name}"))
    };

    element(&decode, "source")?.set_property("location", source.to_string_lossy().to_string());
    element(&encode, "sink")?.set_property("location", output.to_string_lossy().to_string());
    element(&encode, "mux")?.set_property("trak-timescale", timescale);
    let encoder = element(&encode, "encoder")?;
    encoder.set_property_from_str("pass", "qual");
    encoder.set_property("quantizer", ENCODER_QUALITY);
    // No B-frames: a re-encoded part then needs no reordering delay, which
    // keeps its decode times clear of the copied frames around it.
    encoder.set_property("bframes", 0u32);
    if let Some(splice) = splice {
        encoder.set_property("option-string", format!("sps-id={}", splice.new_id));
        let caps = gst::Caps::builder("video/x-h264")
            .field("profile", splice.profile)
            .build();
        element(&encode, "profile")?.set_property("caps", caps);
    }
    let appsink = element(&decode, "sink")?
        .downcast::<gstreamer_app::AppSink>()
        .map_err(|_| "split-decode's sink is not an appsink".to_string())?;
    let appsrc = element(&encode, "source")?
        .downcast::<gstreamer_app::AppSrc>()
        .map_err(|_| "split-encode's source is not an appsrc".to_string())?;

    let result = run_encode(&decode, &encode, &appsink, &appsrc, from, to);
    let _ = decode.set_state(gst::State::Null);
    let _ = encode.set_state(gst::State::Null);
    result
}

fn launch(description: &str, name: &str) -> Result<gst::Pipeline, String> {
    gst::parse::launch(description.trim())
        .map_err(|e| format!("{name} pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| format!("{name} is not a pipeline"))
}

fn run_encode(
    decode: &gst::Pipeline,
    encode: &gst::Pipeline,
    appsink: &gstreamer_app::AppSink,
    appsrc: &gstreamer_app::AppSrc,
    from: f64,
    to: f64,
) -> Result<(), String> {
    let timeout = gst::ClockTime::from_seconds(ENCODE_TIMEOUT_SECONDS);
    decode
        .set_state(gst::State::Paused)
        .map_err(|e| format!("cannot start decoding: {e}"))?;
    let (state, _, _) = decode.state(timeout);
    state.map_err(|e| format!("decoding did not start: {e}"))?;
    decode
        .seek(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            gst::ClockTime::from_nseconds((from * 1e9).round() as u64),
            gst::SeekType::Set,
            gst::ClockTime::from_nseconds((to * 1e9).round() as u64),
        )
        .map_err(|e| format!("cannot seek to {from:.3} s: {e}"))?;
    encode
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the encoder: {e}"))?;
    decode
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start decoding: {e}"))?;

    let mut frames = 0u64;
    while let Some(sample) = appsink.try_pull_sample(timeout) {
        let (Some(buffer), Some(segment)) = (sample.buffer(), sample.segment()) else {
            continue;
        };
        let segment = segment
            .downcast_ref::<gst::ClockTime>()
            .ok_or("the decoder's segment is not in time")?;
        let Some(running) = buffer.pts().and_then(|pts| segment.to_running_time(pts)) else {
            continue;
        };
        let mut owned = buffer.copy();
        {
            let owned = owned.make_mut();
            owned.set_pts(running);
            owned.set_dts(gst::ClockTime::NONE);
        }
        if frames == 0 {
            if let Some(caps) = sample.caps() {
                appsrc.set_caps(Some(&caps.to_owned()));
            }
        }
        appsrc
            .push_buffer(owned)
            .map_err(|e| format!("the encoder refused a frame: {e:?}"))?;
        frames += 1;
    }
    if let Some(error) = bus_error(decode) {
        return Err(format!("decoding failed: {error}"));
    }
    if frames == 0 {
        return Err(format!(
            "no frame was decoded between {from:.3} and {to:.3} s"
        ));
    }
    appsrc
        .end_of_stream()
        .map_err(|e| format!("cannot finish the encode: {e:?}"))?;

    let bus = encode.bus().expect("a pipeline has a bus");
    match bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]) {
        Some(message) => match message.view() {
            gst::MessageView::Eos(_) => Ok(()),
            gst::MessageView::Error(error) => Err(format!(
                "encoder error: {} ({:?})",
                error.error(),
                error.debug()
            )),
            _ => Err("unexpected bus message".to_string()),
        },
        None => Err(format!(
            "the encoder did not finish within {ENCODE_TIMEOUT_SECONDS} s"
        )),
    }
}

/// Returns the first error a pipeline posted, if any.
fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(error) = message.view() {
            return Some(format!("{} ({:?})", error.error(), error.debug()));
        }
    }
    None
}

fn encoder_version() -> String {
    let x264 = gst::Registry::get()
        .lookup_feature("x264enc")
        .and_then(|f| f.plugin())
        .map(|p| p.version().to_string())
        .unwrap_or_else(|| "unknown".into());
    format!("x264enc (GStreamer plugin {x264})")
}

/// Settings for splicing re-encoded H.264 into a camera's stream: a
/// parameter-set id the camera does not use and the profile to encode in.
struct Splice {
    profile: &'static str,
    new_id: u32,
    /// The camera's entry with the re-encode's SPS/PPS added to its `avcC`.
    merged: Vec<u8>,
}

/// Size of a sample entry box header and the fixed fields of a
/// VisualSampleEntry before its child boxes (ISO/IEC 14496-12 §12.1.3).
const VISUAL_ENTRY_FIXED_BYTES: usize = 8 + 78;

/// The parts of an `avcC` (ISO/IEC 14496-15 §5.3.3.1).
#[derive(Clone, Debug, PartialEq)]
struct AvcConfig {
    profile: u8,
    length_size: u8,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    /// The five leading bytes, kept as the camera wrote them.
    head: [u8; 5],
    /// Bytes after the PPS list (the high-profile extension), kept as is.
    tail: Vec<u8>,
}

impl AvcConfig {
    fn parse(body: &[u8]) -> Option<AvcConfig> {
        let head: [u8; 5] = body.get(0..5)?.try_into().ok()?;
        let mut at = 5;
        let mut read_sets = |count_mask: u8| -> Option<Vec<Vec<u8>>> {
            let count = body.get(at)? & count_mask;
            at += 1;
            let mut sets = Vec::new();
            for _ in 0..count {
                let length = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?) as usize;
                sets.push(body.get(at + 2..at + 2 + length)?.to_vec());
                at += 2 + length;
            }
            Some(sets)
        };
        let sps = read_sets(0x1f)?;
        let pps = read_sets(0xff)?;
        Some(AvcConfig {
            profile: head[1],
            length_size: (head[4] & 0x3) + 1,
            sps,
            pps,
            head,
            tail: body.get(at..).unwrap_or(&[]).to_vec(),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = self.head.to_vec();
        out.push(0xe0 | self.sps.len() as u8);
        for set in &self.sps {
            out.extend_from_slice(&(set.len() as u16).to_be_bytes());
            out.extend_from_slice(set);
        }
        out.push(self.pps.len() as u8);
        for set in &self.pps {
            out.extend_from_slice(&(set.len() as u16).to_be_bytes());
            out.extend_from_slice(set);
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

/// Reads an unsigned Exp-Golomb number (H.264 §9.1) at bit `*bit` of `data`.
fn read_ue(data: &[u8], bit: &mut usize) -> Option<u32> {
    let mut zeros = 0;
    while data.get(*bit / 8)? & (0x80 >> (*bit % 8)) == 0 {
        zeros += 1;
        *bit += 1;
        if zeros > 31 {
            return None;
        }
    }
    *bit += 1;
    let mut value: u64 = 1;
    for _ in 0..zeros {
        let set = data.get(*bit / 8)? & (0x80 >> (*bit % 8)) != 0;
        value = (value << 1) | u64::from(set);
        *bit += 1;
    }
    u32::try_from(value - 1).ok()
}

/// The id of an SPS (after the NAL header, profile, constraint and level
/// bytes) or of a PPS (right after the NAL header).
fn parameter_set_id(nal: &[u8], is_sps: bool) -> Option<u32> {
    let mut bit = if is_sps { 32 } else { 8 };
    read_ue(nal, &mut bit)
}

/// Splits a sample entry into its fixed part and its child boxes.
fn entry_children(entry: &[u8]) -> Option<Vec<(&[u8], [u8; 4])>> {
    let mut children = Vec::new();
    let mut at = VISUAL_ENTRY_FIXED_BYTES;
    while entry.len() >= at + 8 {
        let size = u32::from_be_bytes(entry[at..at + 4].try_into().ok()?) as usize;
        if size < 8 || at + size > entry.len() {
            return None;
        }
        children.push((
            &entry[at..at + size],
            entry[at + 4..at + 8].try_into().ok()?,
        ));
        at += size;
    }
    Some(children)
}

fn avc_config_of(entry: &[u8]) -> Option<AvcConfig> {
    let children = entry_children(entry)?;
    let (avcc, _) = children.iter().find(|(_, kind)| kind == b"avcC")?;
    AvcConfig::parse(&avcc[8..])
}

/// Rebuilds a sample entry with a new `avcC` body in place of the old one.
fn with_avc_config(entry: &[u8], config: &AvcConfig) -> Option<Vec<u8>> {
    let children = entry_children(entry)?;
    let mut body = entry[8..VISUAL_ENTRY_FIXED_BYTES].to_vec();
    for (bytes, kind) in children {
        if &kind == b"avcC" {
            let encoded = config.encode();
            body.extend_from_slice(&((encoded.len() + 8) as u32).to_be_bytes());
            body.extend_from_slice(b"avcC");
            body.extend_from_slice(&encoded);
        } else {
            body.extend_from_slice(bytes);
        }
    }
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&entry[4..8]);
    out.extend_from_slice(&body);
    Some(out)
}

impl Splice {
    /// Returns how to splice into a stream with this entry, or None when
    /// the stream does not allow it.
    fn check(entry: &[u8]) -> Option<Splice> {
        if entry.get(4..8)? != b"avc1" {
            return None;
        }
        let config = avc_config_of(entry)?;
        let profile = SPLICEABLE_PROFILES
            .iter()
            .find(|(idc, _)| *idc == config.profile)?
            .1;
        if config.length_size != 4 {
            return None;
        }
        let mut used: Vec<u32> = config
            .sps
            .iter()
            .filter_map(|s| parameter_set_id(s, true))
            .collect();
        used.extend(config.pps.iter().filter_map(|p| parameter_set_id(p, false)));
        let new_id = (1..32).find(|id| !used.contains(id))?;
        Some(Splice {
            profile,
            new_id,
            merged: entry.to_vec(),
        })
    }

    /// Adds the parameter sets of an encoded part to the merged entry.
    fn merge(&mut self, encoded_entry: &[u8]) -> Result<(), String> {
        let encoded = avc_config_of(encoded_entry).ok_or("the encoded part has no avcC")?;
        if encoded.length_size != 4 {
            return Err("the encoded part does not use 4-byte NAL lengths".into());
        }
        for sps in &encoded.sps {
            if parameter_set_id(sps, true) != Some(self.new_id) {
                return Err(format!("the encoder did not use SPS id {}", self.new_id));
            }
        }
        let mut merged = avc_config_of(&self.merged).ok_or("the camera's avcC cannot be read")?;
        for sps in encoded.sps {
            if !merged.sps.contains(&sps) {
                merged.sps.push(sps);
            }
        }
        for pps in encoded.pps {
            if !merged.pps.contains(&pps) {
                merged.pps.push(pps);
            }
        }
        self.merged = with_avc_config(&self.merged, &merged)
            .ok_or("the camera's sample entry cannot be rebuilt")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_reads_small_numbers() {
        // Bits 1, 010, 011, 00100 are 0, 1, 2, 3.
        let data = [0b1010_0110, 0b0100_0000];
        let mut bit = 0;
        let values: Vec<u32> = (0..4).map(|_| read_ue(&data, &mut bit).unwrap()).collect();
        assert_eq!(values, [0, 1, 2, 3]);
    }

    #[test]
    fn avc_config_round_trips() {
        let body = [
            1, 100, 0, 31, 0xff, 0xe1, 0, 3, 0x67, 100, 0, 1, 0, 2, 0x68, 0xce, 0xfd, 0xf8, 0xf8, 0,
        ];
        let config = AvcConfig::parse(&body).unwrap();
        assert_eq!(config.sps, vec![vec![0x67, 100, 0]]);
        assert_eq!(config.pps, vec![vec![0x68, 0xce]]);
        assert_eq!(config.tail, vec![0xfd, 0xf8, 0xf8, 0]);
        assert_eq!(config.encode(), body);
    }

    #[test]
    fn keyframe_aligned_stretch_needs_no_encode() {
        let track = crate::media::index::TrackIndex {
            index: 0,
            id: 1,
            kind: TrackKind::Video,
            handler_type: "vide".into(),
            handler_name: None,
            codec: "avc1".into(),
            timescale: 30,
            width: None,
            height: None,
            rotation: 0,
            declared_duration: None,
            edits: Vec::new(),
            samples: (0..90)
                .map(|i| crate::media::index::Sample {
                    dts: i,
                    pts: i,
                    duration: 1,
                    size: 1,
                    offset: i as u64,
                    is_sync: i % 30 == 0,
                })
                .collect(),
            declared_samples: 90,
            continuity_errors: 0,
        };
        assert_eq!(
            plan_parts(&track, 1.0, 2.0),
            vec![Part::Copy { from: 1.0, to: 2.0 }]
        );
        assert_eq!(
            plan_parts(&track, 0.5, 2.5),
            vec![
                Part::Encode { from: 0.5, to: 1.0 },
                Part::Copy { from: 1.0, to: 2.0 },
                Part::Encode { from: 2.0, to: 2.5 }
            ]
        );
        assert_eq!(
            plan_parts(&track, 0.5, 1.5),
            vec![Part::Encode { from: 0.5, to: 1.5 }]
        );
        assert_eq!(
            plan_parts(&track, 1.5, 3.0),
            vec![
                Part::Encode { from: 1.5, to: 2.0 },
                Part::Copy { from: 2.0, to: 3.0 }
            ]
        );
    }
}
