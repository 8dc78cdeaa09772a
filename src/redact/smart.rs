//! Smart render: re-encode only the GOPs that a mask touches and copy
//! every other sample of the recording as it is.
//!
//! ```text
//! original ─ samples of touched GOPs ─▶ appsrc ─ avdec_h264 ─ appsink ─▶ masks ─▶ appsrc ─ x264enc ─ appsink ─┐
//!          ─ all other samples, copied ──────────────────────────────────────────────────────────────────────┴─▶ appsrc ─ mp4mux
//! ```
//!
//! Three rules keep the output decodable and its timing exact:
//!
//! - A re-encoded range starts at a sync sample and ends just before a GOP
//!   that starts with an IDR picture, so no copied frame refers to a
//!   re-encoded one.
//! - The range is encoded without B-frames, so its samples take over the
//!   original decode and presentation times one for one.
//! - The new SPS and PPS get ids the original does not use and are added
//!   to the one `avcC` sample entry, which then describes both the copied
//!   and the re-encoded pictures.
//!
//! Anything that breaks these rules is reported as unsafe, and the caller
//! falls back to a full re-encode. The output is written by GStreamer's
//! `mp4mux` from the copied and re-encoded samples.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use rayon::prelude::*;
use serde::Serialize;
use tracing::{debug, info};

use super::frame::mask_frame;
use super::mask::Placed;
use super::pipeline::Running;
use super::render::configure_encoder;
use super::{Method, Outcome, RedactError, Request, Source};
use crate::i18n::Text;
use crate::media::index::{ContainerFormat, IndexProblem, Sample, TrackIndex, TrackKind};

/// Maximum wait for qtdemux to expose the streams of a file.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// H.264 profiles whose pictures x264 re-encodes with the same chroma
/// format and bit depth (8-bit 4:2:0); others cannot share one sample entry.
const SPLICEABLE_PROFILES: [&str; 5] = [
    "constrained-baseline",
    "baseline",
    "main",
    "high",
    "extended",
];

/// NAL unit type of an IDR picture slice.
const NAL_IDR: u8 = 5;

/// Highest SPS id H.264 allows.
const MAX_SPS_ID: u8 = 31;

/// Frames masked together on the rayon pool.
const FRAME_BATCH: usize = 16;

/// Origin of the muxer's timeline. Samples are placed at their
/// presentation time after it, so decode times before the first
/// presentation time (B-frame reordering) stay positive. The segment maps
/// this origin to running time 0, as GStreamer's video encoders do.
const TIMELINE_ORIGIN: gst::ClockTime = gst::ClockTime::from_seconds(1000 * 3600);

/// One re-encoded stretch, in seconds of presentation time.
#[derive(Clone, Debug, Serialize)]
pub struct Span {
    pub from: f64,
    pub to: f64,
    pub frames: u64,
}

/// Failure of smart render, split by whether a full re-encode can help.
pub enum SmartError {
    /// The stream cannot be spliced safely; re-encode everything instead.
    Unsafe(Text),
    /// Smart render failed for a reason a full re-encode would share.
    Failed(RedactError),
}

/// The splice plan: samples to copy and ranges to re-encode.
pub struct Plan {
    video: usize,
    audio: Option<usize>,
    video_caps: gst::Caps,
    audio_caps: Option<gst::Caps>,
    avcc: Avcc,
    /// Sample index ranges `[start, end)` in decode order to re-encode.
    ranges: Vec<(usize, usize)>,
    /// Presentation time of a video sample in track ticks is `pts + offset`.
    offset: i64,
    /// The same for the audio track.
    audio_offset: i64,
    width: u32,
    height: u32,
    max_gop: usize,
}

fn unsafe_because(zh: impl Into<String>, en: impl Into<String>) -> Text {
    Text::new(zh, en)
}

/// Decides whether and how the recording can be spliced.
pub fn plan(request: &Request<'_>, source: &Source) -> Result<Plan, Text> {
    let Some(index) = &source.index else {
        return Err(unsafe_because(
            "不是可读取索引的 MP4 文件",
            "not an MP4 file with a readable index",
        ));
    };
    if index.format != ContainerFormat::Mp4 || index.is_fragmented {
        return Err(unsafe_because(
            "只有非分片的 MP4 文件可以拼接",
            "only unfragmented MP4 files are spliced",
        ));
    }
    if index.problems.iter().any(|p| {
        matches!(
            p,
            IndexProblem::NotFinalized { .. } | IndexProblem::Truncated { .. }
        )
    }) {
        return Err(unsafe_because(
            "文件未正常结束或被截断",
            "the file is not finalized or is truncated",
        ));
    }
    if !request.spec.audio.is_empty() {
        // NOTE: a spec with audio edits re-encodes the whole recording,
        // because the audio is not yet re-encoded beside copied video. A
        // spec with masks only keeps the fast path.
        return Err(unsafe_because(
            "规格包含音频处理，音频需要整体重新编码",
            "the spec edits audio, which needs the whole recording re-encoded",
        ));
    }
    let videos: Vec<usize> = index
        .tracks
        .iter()
        .filter(|t| t.kind == TrackKind::Video)
        .map(|t| t.index)
        .collect();
    let [video] = videos[..] else {
        return Err(unsafe_because(
            "不是恰好一条视频轨",
            "not exactly one video track",
        ));
    };
    let track = &index.tracks[video];
    if track.codec != "avc1" {
        return Err(unsafe_because(
            format!("视频编码 {} 不是 H.264（avc1）", track.codec),
            format!("video codec {} is not H.264 (avc1)", track.codec),
        ));
    }
    let (width, height) = (track.width.unwrap_or(0), track.height.unwrap_or(0));
    if width % 2 == 1 || height % 2 == 1 || width == 0 {
        return Err(unsafe_because(
            "画面尺寸为奇数，需要补齐",
            "the picture has an odd size and must be padded",
        ));
    }
    let audios: Vec<usize> = index
        .tracks
        .iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .map(|t| t.index)
        .collect();
    let audio = match audios[..] {
        [] => None,
        [audio] if index.tracks[audio].codec == "mp4a" => Some(audio),
        _ => {
            return Err(unsafe_because(
                "音频不是单条 AAC 轨",
                "the audio is not one AAC track",
            ))
        }
    };

    let streams = stream_caps(request.input).map_err(|e| e.message())?;
    let video_caps = streams
        .video
        .ok_or_else(|| unsafe_because("无法读取视频参数", "cannot read the video parameters"))?;
    let audio_caps = match audio {
        Some(_) => Some(streams.audio.ok_or_else(|| {
            unsafe_because("无法读取音频参数", "cannot read the audio parameters")
        })?),
        None => None,
    };
    let structure = video_caps.structure(0).expect("caps have a structure");
    let profile = structure.get::<String>("profile").unwrap_or_default();
    if !SPLICEABLE_PROFILES.contains(&profile.as_str()) {
        return Err(unsafe_because(
            format!("H.264 档次 {profile} 无法用同一样本描述重新编码"),
            format!("H.264 profile {profile} cannot be re-encoded under the same sample entry"),
        ));
    }
    let codec_data = structure
        .get::<gst::Buffer>("codec_data")
        .map_err(|_| unsafe_because("缺少 avcC 参数集", "the avcC parameter sets are missing"))?;
    let avcc = Avcc::parse(
        &codec_data
            .map_readable()
            .map(|m| m.to_vec())
            .unwrap_or_default(),
    )
    .ok_or_else(|| {
        unsafe_because(
            "avcC 参数集无法解析",
            "the avcC parameter sets cannot be parsed",
        )
    })?;

    let offset = presentation_offset(track);
    let audio_offset = audio.map_or(0, |a| presentation_offset(&index.tracks[a]));
    let file = File::open(request.input).map_err(|e| {
        Text::new(
            format!("无法读取原始文件：{e}"),
            format!("cannot read the original: {e}"),
        )
    })?;
    let (ranges, max_gop) =
        touched_ranges(request, source, track, offset, &file, avcc.length_size)?;
    Ok(Plan {
        video,
        audio,
        video_caps,
        audio_caps,
        avcc,
        ranges,
        offset,
        audio_offset,
        width,
        height,
        max_gop,
    })
}

/// Ticks to add to a sample's PTS to get its presentation time: the
/// leading empty edits minus the media time the first edit starts at.
/// Kept in integer ticks so that a frame keyed at 4.0 s is at 4.0 s.
fn presentation_offset(track: &TrackIndex) -> i64 {
    let timescale = f64::from(track.timescale.max(1));
    let mut delay = 0.0;
    for edit in &track.edits {
        if edit.is_empty_edit() {
            delay += edit.segment_seconds().unwrap_or(0.0);
        } else {
            return (delay * timescale).round() as i64 - edit.media_time;
        }
    }
    (delay * timescale).round() as i64
}

/// Presentation seconds of a sample time in ticks.
fn presentation_seconds(ticks: i64, offset: i64, timescale: u32) -> f64 {
    (ticks + offset) as f64 / f64::from(timescale.max(1))
}

/// Groups samples into GOPs and returns the ranges touched by a mask,
/// each extended until the next GOP starts with an IDR picture.
fn touched_ranges(
    request: &Request<'_>,
    source: &Source,
    track: &TrackIndex,
    offset: i64,
    file: &File,
    length_size: usize,
) -> Result<(Vec<(usize, usize)>, usize), Text> {
    let samples = &track.samples;
    let starts: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_sync)
        .map(|(i, _)| i)
        .collect();
    if starts.first() != Some(&0) {
        return Err(unsafe_because(
            "第一帧不是关键帧",
            "the first sample is not a sync sample",
        ));
    }
    let (stored_w, stored_h) = (track.width.unwrap_or(0), track.height.unwrap_or(0));
    let mut gops: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    gops.push((*starts.last().expect("one start at least"), samples.len()));
    let max_gop = gops.iter().map(|(a, b)| b - a).max().unwrap_or(1);

    let touched = |&(a, b): &(usize, usize)| {
        samples[a..b].iter().any(|s| {
            let seconds = presentation_seconds(s.pts, offset, track.timescale);
            request.spec.masks.iter().any(|mask| {
                mask.region_at(seconds)
                    .map(|r| r.to_stored(source.rotation, stored_w, stored_h))
                    .is_some_and(|r| r.overlaps(stored_w, stored_h))
            })
        })
    };
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut g = 0;
    while g < gops.len() {
        if !touched(&gops[g]) {
            g += 1;
            continue;
        }
        let start = gops[g].0;
        let mut end = gops[g].1;
        g += 1;
        // Extend over touched GOPs and over GOPs whose first picture is not
        // an IDR, since a copied open GOP could refer to re-encoded frames.
        while g < gops.len()
            && (touched(&gops[g]) || !starts_with_idr(file, &samples[gops[g].0], length_size))
        {
            end = gops[g].1;
            g += 1;
        }
        ranges.push((start, end));
    }
    Ok((ranges, max_gop))
}

/// Returns whether a sample contains an IDR slice.
fn starts_with_idr(file: &File, sample: &Sample, length_size: usize) -> bool {
    let Ok(data) = read_sample(file, sample) else {
        return false;
    };
    let has_idr =
        nal_units(&data, length_size).any(|nal| nal.first().is_some_and(|h| h & 0x1f == NAL_IDR));
    has_idr
}

fn read_sample(file: &File, sample: &Sample) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0u8; sample.size as usize];
    file.read_exact_at(&mut data, sample.offset)?;
    Ok(data)
}

/// Splits a length-prefixed H.264 sample into its NAL units.
fn nal_units(data: &[u8], length_size: usize) -> impl Iterator<Item = &[u8]> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if length_size == 0 || at + length_size > data.len() {
            return None;
        }
        let length = data[at..at + length_size]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        let start = at + length_size;
        let end = start.checked_add(length).filter(|&e| e <= data.len())?;
        at = end;
        Some(&data[start..end])
    })
}

/// The caps qtdemux gives the first video and audio stream.
struct StreamCaps {
    video: Option<gst::Caps>,
    audio: Option<gst::Caps>,
}

fn stream_caps(input: &Path) -> Result<StreamCaps, RedactError> {
    let running = Running::build("redact-streams")?;
    running
        .element("source")?
        .set_property("location", input.to_string_lossy().as_ref());
    let (sender, receiver) = mpsc::channel::<(String, gst::Caps)>();
    let demux = running.element("demux")?;
    let done = sender.clone();
    demux.connect_pad_added(move |_, pad| {
        if let Some(caps) = pad.current_caps() {
            let _ = sender.send((pad.name().to_string(), caps));
        }
    });
    demux.connect_no_more_pads(move |_| {
        let _ = done.send((String::new(), gst::Caps::new_empty()));
    });
    running
        .pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| running.failure(e.to_string()))?;
    let mut caps = StreamCaps {
        video: None,
        audio: None,
    };
    while let Ok((name, pad_caps)) = receiver.recv_timeout(STREAMS_TIMEOUT) {
        if name.is_empty() {
            break;
        }
        if name.starts_with("video_") && caps.video.is_none() {
            caps.video = Some(pad_caps);
        } else if name.starts_with("audio_") && caps.audio.is_none() {
            caps.audio = Some(pad_caps);
        }
    }
    running.stop();
    Ok(caps)
}

/// The parameter sets of an `avcC` box.
#[derive(Clone, Debug, PartialEq)]
struct Avcc {
    header: [u8; 5],
    length_size: usize,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    /// Bytes after the PPS list (the High profile chroma extension).
    trailer: Vec<u8>,
}

impl Avcc {
    fn parse(data: &[u8]) -> Option<Avcc> {
        if data.len() < 7 || data[0] != 1 {
            return None;
        }
        let mut at = 5;
        let read_list = |count: usize, at: &mut usize| -> Option<Vec<Vec<u8>>> {
            let mut list = Vec::new();
            for _ in 0..count {
                let length =
                    usize::from(u16::from_be_bytes([*data.get(*at)?, *data.get(*at + 1)?]));
                let unit = data.get(*at + 2..*at + 2 + length)?.to_vec();
                *at += 2 + length;
                list.push(unit);
            }
            Some(list)
        };
        let sps_count = usize::from(data[5] & 0x1f);
        at += 1;
        let sps = read_list(sps_count, &mut at)?;
        let pps_count = usize::from(*data.get(at)?);
        at += 1;
        let pps = read_list(pps_count, &mut at)?;
        Some(Avcc {
            header: [data[0], data[1], data[2], data[3], data[4]],
            length_size: usize::from(data[4] & 0x03) + 1,
            sps,
            pps,
            trailer: data[at..].to_vec(),
        })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_vec();
        out.push(0xe0 | self.sps.len() as u8);
        for unit in &self.sps {
            out.extend_from_slice(&(unit.len() as u16).to_be_bytes());
            out.extend_from_slice(unit);
        }
        out.push(self.pps.len() as u8);
        for unit in &self.pps {
            out.extend_from_slice(&(unit.len() as u16).to_be_bytes());
            out.extend_from_slice(unit);
        }
        out.extend_from_slice(&self.trailer);
        out
    }

    /// Returns the SPS and PPS ids in use.
    fn ids(&self) -> Vec<u32> {
        let sps = self.sps.iter().filter_map(|u| read_ue(u.get(4..)?));
        let pps = self.pps.iter().filter_map(|u| read_ue(u.get(1..)?));
        sps.chain(pps).collect()
    }
}

/// Reads the first unsigned Exp-Golomb value of a bit string. Parameter
/// set ids come within the first bytes, before any emulation prevention.
fn read_ue(data: &[u8]) -> Option<u32> {
    let bit = |i: usize| data.get(i / 8).map(|b| (b >> (7 - i % 8)) & 1);
    let mut zeros = 0;
    while bit(zeros)? == 0 {
        zeros += 1;
        if zeros > 31 {
            return None;
        }
    }
    let mut value = 1u32;
    for i in 0..zeros {
        value = (value << 1) | u32::from(bit(zeros + 1 + i)?);
    }
    Some(value - 1)
}

/// One encoded picture of a re-encoded range.
struct Encoded {
    data: Vec<u8>,
    is_sync: bool,
}

/// Renders the plan: re-encodes each range, then muxes copied and
/// re-encoded samples into the output.
pub fn render(
    request: &Request<'_>,
    source: &Source,
    plan: &Plan,
    partial: &Path,
) -> Result<Outcome, SmartError> {
    let index = source.index.as_ref().expect("a plan needs an index");
    let track = &index.tracks[plan.video];
    let used = plan.avcc.ids();
    let Some(sps_id) = (0..=MAX_SPS_ID).find(|id| !used.contains(&u32::from(*id))) else {
        return Err(SmartError::Unsafe(Text::new(
            "参数集编号已用尽",
            "every parameter set id is in use",
        )));
    };

    let mut encoded_ranges = Vec::new();
    let mut new_avcc: Option<Avcc> = None;
    let mut masked_frames = 0;
    let mut spans = Vec::new();
    for &(start, end) in &plan.ranges {
        let (encoded, avcc, masked) =
            reencode_range(request, source, plan, track, start, end, sps_id)?;
        if encoded.len() != end - start {
            return Err(SmartError::Unsafe(Text::new(
                format!(
                    "重新编码的范围得到 {} 帧，原为 {} 帧",
                    encoded.len(),
                    end - start
                ),
                format!(
                    "a re-encoded range gave {} frames instead of {}",
                    encoded.len(),
                    end - start
                ),
            )));
        }
        if new_avcc.as_ref().is_some_and(|a| a != &avcc) {
            return Err(SmartError::Unsafe(Text::new(
                "各段编码参数不一致",
                "the re-encoded ranges differ in parameters",
            )));
        }
        let pts: Vec<i64> = track.samples[start..end].iter().map(|s| s.pts).collect();
        let (min, max) = (
            *pts.iter().min().unwrap_or(&0),
            *pts.iter().max().unwrap_or(&0),
        );
        let last_duration = track.samples[start..end]
            .iter()
            .find(|s| s.pts == max)
            .map_or(0, |s| s.duration);
        spans.push(Span {
            from: presentation_seconds(min, plan.offset, track.timescale),
            to: presentation_seconds(max + i64::from(last_duration), plan.offset, track.timescale),
            frames: (end - start) as u64,
        });
        masked_frames += masked;
        new_avcc = Some(avcc);
        encoded_ranges.push(encoded);
    }

    let codec_data = match &new_avcc {
        Some(new) => {
            if new.length_size != plan.avcc.length_size {
                return Err(SmartError::Unsafe(Text::new(
                    "NAL 长度字段宽度不同",
                    "the NAL length field sizes differ",
                )));
            }
            let mut merged = plan.avcc.clone();
            merged.sps.extend(new.sps.iter().cloned());
            merged.pps.extend(new.pps.iter().cloned());
            merged.to_bytes()
        }
        None => plan.avcc.to_bytes(),
    };
    mux(request, index, plan, &encoded_ranges, &codec_data, partial).map_err(SmartError::Failed)?;
    info!(
        ranges = plan.ranges.len(),
        masked = masked_frames,
        "smart render finished"
    );
    Ok(Outcome {
        method: Method::Smart,
        fallback_reason: None,
        frames: track.samples.len() as u64,
        masked_frames,
        reencoded: spans,
        width: plan.width,
        height: plan.height,
        padding: None,
        rotation_handling: (source.rotation != 0).then_some("masks_mapped"),
        audio_samples_changed: 0,
        audio_reencoded: false,
    })
}

/// A track's timescale and presentation offset, to turn decoder times
/// back into presentation seconds.
#[derive(Clone, Copy)]
struct TrackClock {
    offset: i64,
    timescale: u32,
}

impl TrackClock {
    fn seconds_of(self, time: gst::ClockTime) -> f64 {
        let ticks = (i128::from(time.nseconds()) * i128::from(self.timescale) + 500_000_000)
            / 1_000_000_000;
        presentation_seconds(ticks as i64, self.offset, self.timescale)
    }
}

fn ns(ticks: i64, timescale: u32) -> gst::ClockTime {
    let value = (i128::from(ticks.max(0)) * 1_000_000_000 / i128::from(timescale.max(1))) as u64;
    gst::ClockTime::from_nseconds(value)
}

/// Decodes, masks and encodes samples `[start, end)`; returns the encoded
/// pictures in decode order, the encoder's parameter sets and the number
/// of frames masked.
fn reencode_range(
    request: &Request<'_>,
    source: &Source,
    plan: &Plan,
    track: &TrackIndex,
    start: usize,
    end: usize,
    sps_id: u8,
) -> Result<(Vec<Encoded>, Avcc, u64), SmartError> {
    let failed = SmartError::Failed;
    let decode = Running::build("redact-gop-decode").map_err(failed)?;
    let decode_source = decode.appsrc("source").map_err(failed)?;
    decode_source.set_caps(Some(&plan.video_caps));
    decode_source.set_property("block", true);
    decode_source.set_property("max-bytes", 8u64 << 20);
    let decode_sink = decode.appsink("sink").map_err(failed)?;

    let encode = Running::build("redact-gop-encode").map_err(failed)?;
    let encoder = encode.element("encoder").map_err(failed)?;
    configure_encoder(&encoder, &request.encoder);
    encoder.set_property("bframes", 0u32);
    encoder.set_property("key-int-max", plan.max_gop.max(1) as u32);
    encoder.set_property("option-string", format!("sps-id={sps_id}"));
    let profile = plan
        .video_caps
        .structure(0)
        .and_then(|s| s.get::<String>("profile").ok())
        .unwrap_or_else(|| "high".into());
    let caps = gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field("profile", profile)
        .build();
    encode
        .element("caps")
        .map_err(failed)?
        .set_property("caps", &caps);
    let encode_source = encode.appsrc("source").map_err(failed)?;
    encode_source.set_property("block", true);
    encode_source.set_property(
        "max-bytes",
        4u64 * u64::from(plan.width) * u64::from(plan.height) * 3 / 2,
    );
    let encode_sink = encode.appsink("sink").map_err(failed)?;

    decode.play().map_err(failed)?;
    encode.play().map_err(failed)?;

    let file = File::open(request.input).map_err(|source| {
        failed(RedactError::Input {
            path: request.input.to_path_buf(),
            source,
        })
    })?;
    let samples = &track.samples[start..end];
    let timescale = track.timescale;
    let (stored_w, stored_h) = (plan.width, plan.height);

    let result = std::thread::scope(|scope| {
        let feeder = scope.spawn(|| -> Result<(), RedactError> {
            for sample in samples {
                let data = read_sample(&file, sample).map_err(|source| RedactError::Input {
                    path: request.input.to_path_buf(),
                    source,
                })?;
                let mut buffer = gst::Buffer::from_mut_slice(data);
                {
                    let buffer = buffer.get_mut().expect("a new buffer is writable");
                    buffer.set_dts(ns(sample.dts, timescale));
                    buffer.set_pts(ns(sample.pts, timescale));
                    buffer.set_duration(ns(i64::from(sample.duration), timescale));
                    if !sample.is_sync {
                        buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
                    }
                }
                decode.push(&decode_source, buffer)?;
            }
            decode_source
                .end_of_stream()
                .map_err(|e| decode.failure(format!("end of stream refused: {e:?}")))?;
            Ok(())
        });
        let collector = scope.spawn(
            || -> Result<(Vec<Encoded>, Option<gst::Caps>), RedactError> {
                let mut encoded = Vec::new();
                let mut caps = None;
                while let Some(sample) = encode.pull(&encode_sink)? {
                    if caps.is_none() {
                        caps = sample.caps_owned();
                    }
                    let buffer = sample
                        .buffer()
                        .ok_or_else(|| encode.failure("encoded sample without buffer".into()))?;
                    let data = buffer
                        .map_readable()
                        .map_err(|e| encode.failure(e.to_string()))?
                        .to_vec();
                    encoded.push(Encoded {
                        data,
                        is_sync: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    });
                }
                Ok((encoded, caps))
            },
        );

        let clock = TrackClock {
            offset: plan.offset,
            timescale,
        };
        let masked = mask_decoded(
            &decode,
            &decode_sink,
            &encode,
            &encode_source,
            request,
            source,
            clock,
            stored_w,
            stored_h,
        );
        if masked.is_err() {
            decode.cancel();
            encode.cancel();
        }
        let fed = feeder.join().expect("the feeder does not panic");
        let collected = collector.join().expect("the collector does not panic");
        match (masked, fed, collected) {
            (Ok(masked), Ok(()), Ok((encoded, caps))) => Ok((masked, encoded, caps)),
            (Err(e), _, _) if !matches!(e, RedactError::Cancelled) => Err(e),
            (_, Err(e), _) if !matches!(e, RedactError::Cancelled) => Err(e),
            (_, _, Err(e)) => Err(e),
            (Err(e), _, _) | (_, Err(e), _) => Err(e),
        }
    });
    let (masked, encoded, caps) = result.map_err(failed)?;
    decode.stop();
    encode.stop();

    let avcc = caps
        .as_ref()
        .and_then(|c| c.structure(0))
        .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
        .and_then(|b| b.map_readable().ok().and_then(|m| Avcc::parse(&m)))
        .ok_or_else(|| {
            SmartError::Unsafe(Text::new(
                "编码器未给出参数集",
                "the encoder gave no parameter sets",
            ))
        })?;
    if encoded.first().is_some_and(|e| !e.is_sync) {
        return Err(SmartError::Unsafe(Text::new(
            "重新编码的范围不以关键帧开始",
            "a re-encoded range does not start with a key frame",
        )));
    }
    debug!(start, end, masked, "range re-encoded");
    Ok((encoded, avcc, masked))
}

/// Masks decoded frames of a range and pushes them into the encoder.
#[allow(clippy::too_many_arguments)]
fn mask_decoded(
    decode: &Running,
    decode_sink: &gstreamer_app::AppSink,
    encode: &Running,
    encode_source: &gstreamer_app::AppSrc,
    request: &Request<'_>,
    source: &Source,
    clock: TrackClock,
    stored_w: u32,
    stored_h: u32,
) -> Result<u64, RedactError> {
    let mut info: Option<gst_video::VideoInfo> = None;
    let mut batch: Vec<gst::Buffer> = Vec::with_capacity(FRAME_BATCH);
    let mut masked = 0u64;
    let mut flush =
        |batch: &mut Vec<gst::Buffer>, info: &gst_video::VideoInfo| -> Result<(), RedactError> {
            let done: Vec<(gst::Buffer, bool)> = batch
                .par_drain(..)
                .map(|mut buffer| {
                    let seconds = buffer.pts().map_or(0.0, |t| clock.seconds_of(t));
                    let placed: Vec<Placed> = request
                        .spec
                        .masks
                        .iter()
                        .filter_map(|mask| {
                            mask.region_at(seconds).map(|region| Placed {
                                region: region.to_stored(source.rotation, stored_w, stored_h),
                                fill: mask.fill(),
                            })
                        })
                        .collect();
                    let ok = mask_frame(buffer.make_mut(), info, &placed);
                    (buffer, ok && !placed.is_empty())
                })
                .collect();
            for (buffer, was_masked) in done {
                masked += u64::from(was_masked);
                encode.push(encode_source, buffer)?;
            }
            Ok(())
        };
    while let Some(sample) = decode.pull(decode_sink)? {
        if info.is_none() {
            let caps = sample
                .caps()
                .ok_or_else(|| decode.failure("decoded frame without caps".into()))?;
            info = Some(
                gst_video::VideoInfo::from_caps(caps).map_err(|e| decode.failure(e.to_string()))?,
            );
            encode_source.set_caps(Some(&caps.to_owned()));
        }
        let buffer = sample
            .buffer_owned()
            .ok_or_else(|| decode.failure("sample without buffer".into()))?;
        drop(sample);
        batch.push(buffer);
        if batch.len() == FRAME_BATCH {
            flush(&mut batch, info.as_ref().expect("set above"))?;
        }
    }
    if let Some(info) = &info {
        flush(&mut batch, info)?;
    }
    encode_source
        .end_of_stream()
        .map_err(|e| encode.failure(format!("end of stream refused: {e:?}")))?;
    Ok(masked)
}

/// Converts track ticks plus an offset to a buffer time on the muxer's timeline.
fn timeline(ticks: i64, offset: i64, timescale: u32) -> gst::ClockTime {
    let nanoseconds = i128::from(ticks + offset) * 1_000_000_000 / i128::from(timescale.max(1));
    gst::ClockTime::from_nseconds(
        (i128::from(TIMELINE_ORIGIN.nseconds()) + nanoseconds).max(0) as u64,
    )
}

/// Builds the segment that maps [`TIMELINE_ORIGIN`] to running time 0.
fn timeline_segment() -> gst::FormattedSegment<gst::ClockTime> {
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(TIMELINE_ORIGIN);
    segment.set_time(gst::ClockTime::ZERO);
    segment
}

/// Pushes a buffer with the timeline segment, which appsrc sends
/// downstream before the first buffer.
fn push_on_timeline(
    running: &Running,
    source: &gstreamer_app::AppSrc,
    buffer: gst::Buffer,
) -> Result<(), RedactError> {
    let sample = gst::Sample::builder()
        .buffer(&buffer)
        .segment(&timeline_segment())
        .build();
    source.push_sample(&sample).map_err(|flow| {
        running.check().err().unwrap_or_else(|| {
            running.failure(format!("push into {} refused: {flow:?}", source.name()))
        })
    })?;
    Ok(())
}

/// Writes the output: every video sample copied or taken from the
/// re-encoded ranges, every audio sample copied.
fn mux(
    request: &Request<'_>,
    index: &crate::media::index::ContainerIndex,
    plan: &Plan,
    encoded: &[Vec<Encoded>],
    codec_data: &[u8],
    partial: &Path,
) -> Result<(), RedactError> {
    let running = Running::build(if plan.audio.is_some() {
        "redact-splice"
    } else {
        "redact-splice-video"
    })?;
    running
        .element("sink")?
        .set_property("location", partial.to_string_lossy().as_ref());
    let track = &index.tracks[plan.video];
    running
        .element("mux")?
        .set_property("trak-timescale", track.timescale);

    let mut video_caps = plan.video_caps.clone();
    video_caps
        .make_mut()
        .set("codec_data", gst::Buffer::from_slice(codec_data.to_vec()));
    let video_source = running.appsrc("video_source")?;
    video_source.set_caps(Some(&video_caps));
    video_source.set_property("handle-segment-change", true);
    video_source.set_property("block", true);
    video_source.set_property("max-bytes", 16u64 << 20);
    let audio_source = match (&plan.audio_caps, plan.audio) {
        (Some(caps), Some(_)) => {
            let source = running.appsrc("audio_source")?;
            source.set_caps(Some(caps));
            source.set_property("handle-segment-change", true);
            source.set_property("block", true);
            source.set_property("max-bytes", 4u64 << 20);
            Some(source)
        }
        _ => None,
    };
    running.play()?;

    let open = || {
        File::open(request.input).map_err(|source| RedactError::Input {
            path: request.input.to_path_buf(),
            source,
        })
    };
    let video_file = open()?;
    let result = std::thread::scope(|scope| {
        let audio = audio_source
            .as_ref()
            .zip(plan.audio)
            .map(|(source, audio)| {
                let file = open();
                let running = &running;
                let audio_offset = plan.audio_offset;
                scope.spawn(move || -> Result<(), RedactError> {
                    let file = file?;
                    let audio_track = &index.tracks[audio];
                    for sample in &audio_track.samples {
                        let data =
                            read_sample(&file, sample).map_err(|source| RedactError::Input {
                                path: request.input.to_path_buf(),
                                source,
                            })?;
                        let mut buffer = gst::Buffer::from_mut_slice(data);
                        {
                            let buffer = buffer.get_mut().expect("a new buffer is writable");
                            buffer.set_pts(timeline(
                                sample.pts,
                                audio_offset,
                                audio_track.timescale,
                            ));
                            buffer.set_dts(timeline(
                                sample.dts,
                                audio_offset,
                                audio_track.timescale,
                            ));
                            buffer.set_duration(ns(
                                i64::from(sample.duration),
                                audio_track.timescale,
                            ));
                        }
                        push_on_timeline(running, source, buffer)?;
                    }
                    source
                        .end_of_stream()
                        .map_err(|e| running.failure(format!("end of audio refused: {e:?}")))?;
                    Ok(())
                })
            });
        let video = push_video(
            &running,
            &video_source,
            &video_file,
            request,
            track,
            plan,
            encoded,
        );
        if video.is_err() {
            running.cancel();
        }
        let audio = audio.map_or(Ok(()), |h| {
            h.join().expect("the audio thread does not panic")
        });
        match (video, audio) {
            (Ok(()), audio) => audio,
            (Err(RedactError::Cancelled), Err(error)) => Err(error),
            (Err(error), _) => Err(error),
        }
    });
    result?;
    running.finish()
}

fn push_video(
    running: &Running,
    video_source: &gstreamer_app::AppSrc,
    file: &File,
    request: &Request<'_>,
    track: &TrackIndex,
    plan: &Plan,
    encoded: &[Vec<Encoded>],
) -> Result<(), RedactError> {
    let timescale = track.timescale;
    let samples = &track.samples;
    let mut next_range = 0;
    let mut i = 0;
    while i < samples.len() {
        if let Some(&(start, end)) = plan.ranges.get(next_range).filter(|(start, _)| *start == i) {
            // The re-encoded pictures take over the range's decode times and
            // presentation times in order: without B-frames both run in the
            // same order, and each n-th PTS is at or after the n-th DTS.
            let mut dts: Vec<&Sample> = samples[start..end].iter().collect();
            let mut pts: Vec<&Sample> = dts.clone();
            dts.sort_by_key(|s| s.dts);
            pts.sort_by_key(|s| s.pts);
            for (n, picture) in encoded[next_range].iter().enumerate() {
                let mut buffer = gst::Buffer::from_slice(picture.data.clone());
                {
                    let buffer = buffer.get_mut().expect("a new buffer is writable");
                    buffer.set_dts(timeline(dts[n].dts, plan.offset, timescale));
                    buffer.set_pts(timeline(pts[n].pts, plan.offset, timescale));
                    buffer.set_duration(ns(i64::from(pts[n].duration), timescale));
                    if !picture.is_sync {
                        buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
                    }
                }
                push_on_timeline(running, video_source, buffer)?;
            }
            next_range += 1;
            i = end;
            continue;
        }
        let sample = &samples[i];
        let data = read_sample(file, sample).map_err(|source| RedactError::Input {
            path: request.input.to_path_buf(),
            source,
        })?;
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            buffer.set_dts(timeline(sample.dts, plan.offset, timescale));
            buffer.set_pts(timeline(sample.pts, plan.offset, timescale));
            buffer.set_duration(ns(i64::from(sample.duration), timescale));
            if !sample.is_sync {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        push_on_timeline(running, video_source, buffer)?;
        i += 1;
    }
    video_source
        .end_of_stream()
        .map_err(|e| running.failure(format!("end of video refused: {e:?}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_reads_small_ids() {
        assert_eq!(read_ue(&[0b1000_0000]), Some(0));
        assert_eq!(read_ue(&[0b0100_0000]), Some(1));
        assert_eq!(read_ue(&[0b0110_0000]), Some(2));
        assert_eq!(read_ue(&[0b0001_0000, 0]), Some(7));
    }

    #[test]
    fn avcc_round_trips() {
        let bytes = [
            1u8, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
        ];
        let avcc = Avcc::parse(&bytes).unwrap();
        assert_eq!(avcc.length_size, 4);
        assert_eq!(avcc.sps.len(), 1);
        assert_eq!(avcc.pps, vec![vec![0x68, 0xee]]);
        assert_eq!(avcc.to_bytes(), bytes.to_vec());
    }
}
