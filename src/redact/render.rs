//! The full re-encode: every frame decoded, masked, and encoded again.
//!
//! ```text
//! uridecodebin3 ───────┬─ videoflip(auto) ─ videoconvert ─ appsink ─▶ masks on rayon ─▶ appsrc ─ textoverlay ─ x264enc ─┐
//!                       └─ audioconvert ─ appsink ─▶ mute / tone ─▶ appsrc ─ audioconvert ─ avenc_aac ─────────────────┴─ mp4mux ─ filesink
//! ```
//!
//! Frames are turned upright by `videoflip` from the container's rotation
//! tag, so masks (given in display coordinates) apply directly and the
//! output needs no rotation to play the right way up. Each buffer keeps
//! its timestamp and duration, so a variable frame rate stays variable and
//! the output has exactly the input's frames.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use rayon::prelude::*;
use tracing::{debug, info};

use super::frame::{edit_audio, mask_frame, pad_frame};
use super::mask::Placed;
use super::pipeline::{running_seconds, Running};
use super::spec::Spec;
use super::{EncoderSettings, Padding, RedactError};

/// Frames masked together on the rayon pool: enough to keep every core
/// busy, few enough that a batch of 1080p frames stays near 50 MiB.
const FRAME_BATCH: usize = 16;

/// Bytes the video appsrc may queue before a push blocks: about four
/// 1080p frames, which bounds memory whatever the recording's length.
const VIDEO_QUEUE_BYTES: u64 = 4 * 1920 * 1080 * 3 / 2;

/// Maximum of x264enc's `bitrate` property in kbit/s.
const X264_MAX_BITRATE_KBPS: u32 = 2_048_000;

/// What a full re-encode did.
#[derive(Debug, Default)]
pub struct FullRender {
    pub frames: u64,
    pub masked_frames: u64,
    pub width: u32,
    pub height: u32,
    pub padding: Option<Padding>,
    pub audio_samples_changed: u64,
    pub has_audio: bool,
}

/// One decoded frame waiting for its masks.
struct Pending {
    buffer: gst::Buffer,
    running: Option<gst::ClockTime>,
}

/// Re-encodes the whole recording with masks, audio edits and an optional
/// watermark.
pub fn render_full(
    input: &Path,
    output: &Path,
    spec: &Spec,
    has_audio: bool,
    encoder: &EncoderSettings,
    watermark: Option<&str>,
    timescale: Option<u32>,
) -> Result<FullRender, RedactError> {
    let decode = Running::build("redact-decode")?;
    decode
        .element("decode")?
        .set_property("uri", file_uri(input)?);
    if !has_audio {
        let branch = [
            decode.element("audio_convert")?,
            decode.element("audio_caps")?,
            decode.element("audio_sink")?,
        ];
        decode
            .pipeline
            .remove_many(&branch)
            .map_err(|e| decode.failure(e.to_string()))?;
    }
    link_decoded_streams(&decode, has_audio)?;

    let encode = Running::build(if has_audio {
        "redact-encode"
    } else {
        "redact-encode-video"
    })?;
    encode
        .element("sink")?
        .set_property("location", output.to_string_lossy().as_ref());
    configure_encoder(&encode.element("video_encoder")?, encoder);
    // The original's timescale keeps every frame time exact, which a
    // variable frame rate needs.
    if let Some(timescale) = timescale.filter(|&t| t > 0) {
        encode
            .element("mux")?
            .set_property("trak-timescale", timescale);
    }
    if let Some(text) = watermark {
        let overlay = encode.element("watermark")?;
        overlay.set_property("text", text);
        overlay.set_property("silent", false);
    }
    let video_source = encode.appsrc("video_source")?;
    video_source.set_property("block", true);
    video_source.set_property("max-bytes", VIDEO_QUEUE_BYTES);

    decode.play()?;
    encode.play()?;

    let mut result = FullRender {
        has_audio,
        ..FullRender::default()
    };
    let audio_result = std::thread::scope(|scope| {
        let audio = has_audio.then(|| {
            scope.spawn(|| {
                let audio = pump_audio(&decode, &encode, spec);
                if audio.is_err() {
                    decode.cancel();
                }
                audio
            })
        });
        let video = pump_video(&decode, &encode, spec, watermark, &mut result);
        if video.is_err() {
            decode.cancel();
        }
        let audio = audio.map_or(Ok(0), |handle| {
            handle.join().expect("the audio thread does not panic")
        });
        // The side that failed first carries the cause; the other one was
        // only cancelled.
        match (video, audio) {
            (Ok(()), audio) => audio,
            (Err(RedactError::Cancelled), Err(error)) => Err(error),
            (Err(error), _) => Err(error),
        }
    });
    result.audio_samples_changed = audio_result?;
    encode.finish()?;
    decode.stop();
    info!(
        frames = result.frames,
        masked = result.masked_frames,
        "full re-encode finished"
    );
    Ok(result)
}

/// The `file://` URI of a local path; URIs keep the launch description
/// free of a filesrc whose location is unset while the description is
/// parsed and linked.
pub fn file_uri(path: &Path) -> Result<String, RedactError> {
    let absolute = std::fs::canonicalize(path).map_err(|source| RedactError::Input {
        path: path.to_path_buf(),
        source,
    })?;
    gst::glib::filename_to_uri(&absolute, None)
        .map(|uri| uri.to_string())
        .map_err(|e| RedactError::Input {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
        })
}

/// Sets the x264 settings that every redacted output shares.
pub fn configure_encoder(element: &gst::Element, encoder: &EncoderSettings) {
    element.set_property_from_str("speed-preset", &encoder.speed_preset);
    element.set_property_from_str("pass", "qual");
    element.set_property("quantizer", encoder.quality);
    // In constant-quality mode x264enc also uses `bitrate` as the VBV
    // ceiling (2048 kbit/s by default, GStreamer 1.22), which would starve
    // 1080p footage. The property's maximum lifts the ceiling so the
    // quality value alone decides.
    element.set_property("bitrate", X264_MAX_BITRATE_KBPS);
}

/// Links each stream that decodebin3 exposes to its branch; streams of
/// other kinds (subtitles, data) are left unlinked and dropped.
fn link_decoded_streams(decode: &Running, has_audio: bool) -> Result<(), RedactError> {
    let video_target = decode
        .element("video_flip")?
        .static_pad("sink")
        .expect("videoflip has a sink pad");
    let audio_target = if has_audio {
        Some(
            decode
                .element("audio_convert")?
                .static_pad("sink")
                .expect("audioconvert has a sink pad"),
        )
    } else {
        None
    };
    decode.element("decode")?.connect_pad_added(move |_, pad| {
        let kind = pad.stream().map(|s| s.stream_type()).or_else(|| {
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let name = caps
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            if name.starts_with("video/") {
                Some(gst::StreamType::VIDEO)
            } else if name.starts_with("audio/") {
                Some(gst::StreamType::AUDIO)
            } else {
                None
            }
        });
        debug!(pad = %pad.name(), ?kind, "decoded stream exposed");
        let target = match kind {
            Some(kind) if kind.contains(gst::StreamType::VIDEO) => Some(&video_target),
            Some(kind) if kind.contains(gst::StreamType::AUDIO) => audio_target.as_ref(),
            _ => None,
        };
        if let Some(target) = target.filter(|t| !t.is_linked()) {
            if let Err(error) = pad.link(target) {
                debug!(pad = %pad.name(), ?error, "decoded stream not linked");
            }
        }
    });
    Ok(())
}

fn pump_video(
    decode: &Running,
    encode: &Running,
    spec: &Spec,
    watermark: Option<&str>,
    result: &mut FullRender,
) -> Result<(), RedactError> {
    let sink = decode.appsink("video_sink")?;
    let source = encode.appsrc("video_source")?;
    let mut current: Option<(gst::Caps, gst_video::VideoInfo, gst_video::VideoInfo)> = None;
    let mut batch: Vec<Pending> = Vec::with_capacity(FRAME_BATCH);

    while let Some(sample) = decode.pull(&sink)? {
        let caps = sample
            .caps_owned()
            .ok_or_else(|| decode.failure("decoded frame without caps".into()))?;
        if current.as_ref().map(|(c, _, _)| c != &caps).unwrap_or(true) {
            flush_batch(encode, &source, &mut batch, spec, current.as_ref(), result)?;
            let info = gst_video::VideoInfo::from_caps(&caps)
                .map_err(|e| decode.failure(e.to_string()))?;
            let padded = padded_info(&info).map_err(|e| decode.failure(e))?;
            if padded.width() != info.width() || padded.height() != info.height() {
                result.padding = Some(Padding {
                    right: padded.width() - info.width(),
                    bottom: padded.height() - info.height(),
                    from_width: info.width(),
                    from_height: info.height(),
                });
            }
            result.width = padded.width();
            result.height = padded.height();
            let mut out_caps = padded
                .to_caps()
                .map_err(|e| decode.failure(e.to_string()))?;
            // The output frame rate is only a hint to the encoder; every
            // buffer carries its own time.
            if let Some(structure) = caps.structure(0) {
                if let Ok(rate) = structure.get::<gst::Fraction>("framerate") {
                    out_caps.make_mut().set("framerate", rate);
                }
            }
            source.set_caps(Some(&out_caps));
            if let Some(text) = watermark {
                scale_watermark(encode, text, padded.height());
            }
            current = Some((caps, info, padded));
        }
        let running = running_seconds(&sample, sample.buffer().and_then(|b| b.pts()));
        let buffer = sample
            .buffer_owned()
            .ok_or_else(|| decode.failure("sample without buffer".into()))?;
        drop(sample);
        batch.push(Pending { buffer, running });
        if batch.len() == FRAME_BATCH {
            flush_batch(encode, &source, &mut batch, spec, current.as_ref(), result)?;
        }
    }
    flush_batch(encode, &source, &mut batch, spec, current.as_ref(), result)?;
    source
        .end_of_stream()
        .map_err(|e| encode.failure(format!("end of video stream refused: {e:?}")))?;
    Ok(())
}

/// Masks a batch of frames in parallel and pushes them in order.
fn flush_batch(
    encode: &Running,
    source: &gstreamer_app::AppSrc,
    batch: &mut Vec<Pending>,
    spec: &Spec,
    current: Option<&(gst::Caps, gst_video::VideoInfo, gst_video::VideoInfo)>,
    result: &mut FullRender,
) -> Result<(), RedactError> {
    let Some((_, info, padded)) = current else {
        return Ok(());
    };
    let needs_padding = padded.width() != info.width() || padded.height() != info.height();
    let processed: Vec<Result<(gst::Buffer, bool), String>> = batch
        .par_drain(..)
        .map(|pending| {
            let seconds = pending.running.map_or(0.0, |t| t.nseconds() as f64 / 1e9);
            let placed = placed_at(spec, seconds);
            let mut buffer = pending.buffer;
            {
                let writable = buffer.make_mut();
                writable.set_pts(pending.running);
                writable.set_dts(gst::ClockTime::NONE);
            }
            let masked = !placed.is_empty();
            if masked && !mask_frame(buffer.make_mut(), info, &placed) {
                return Err("decoded frame has an unexpected plane layout".to_string());
            }
            if needs_padding {
                buffer = pad_frame(buffer.make_mut(), info, padded)
                    .ok_or_else(|| "cannot pad the frame to even size".to_string())?;
            }
            Ok((buffer, masked))
        })
        .collect();
    for item in processed {
        let (buffer, masked) = item.map_err(|message| encode.failure(message))?;
        result.frames += 1;
        result.masked_frames += u64::from(masked);
        encode.push(source, buffer)?;
    }
    Ok(())
}

/// Masks active at `seconds`, each with its fill.
pub fn placed_at(spec: &Spec, seconds: f64) -> Vec<Placed> {
    spec.masks
        .iter()
        .filter_map(|mask| {
            mask.region_at(seconds).map(|region| Placed {
                region,
                fill: mask.fill(),
            })
        })
        .collect()
}

/// The I420 layout of a picture grown to even width and height.
fn padded_info(info: &gst_video::VideoInfo) -> Result<gst_video::VideoInfo, String> {
    let width = info.width() + info.width() % 2;
    let height = info.height() + info.height() % 2;
    gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
        .fps(info.fps())
        .par(info.par())
        .build()
        .map_err(|e| e.to_string())
}

/// Sizes the watermark text to the picture: about 1/24 of its height.
fn scale_watermark(encode: &Running, text: &str, height: u32) {
    if let Ok(overlay) = encode.element("watermark") {
        let pixels = (height / 24).max(12);
        overlay.set_property("font-desc", format!("Sans Bold {pixels}px"));
        overlay.set_property("text", text);
    }
}

/// Copies decoded audio to the encoder, muting or replacing the ranges of
/// the spec. Returns the samples per channel changed.
fn pump_audio(decode: &Running, encode: &Running, spec: &Spec) -> Result<u64, RedactError> {
    let sink = decode.appsink("audio_sink")?;
    let source = encode.appsrc("audio_source")?;
    let mut current_caps: Option<gst::Caps> = None;
    let mut changed = 0;
    while let Some(sample) = decode.pull(&sink)? {
        let caps = sample
            .caps_owned()
            .ok_or_else(|| decode.failure("decoded audio without caps".into()))?;
        let (channels, rate) = caps
            .structure(0)
            .map(|s| {
                (
                    s.get::<i32>("channels").unwrap_or(0),
                    s.get::<i32>("rate").unwrap_or(0),
                )
            })
            .unwrap_or((0, 0));
        if current_caps.as_ref() != Some(&caps) {
            source.set_caps(Some(&caps));
            current_caps = Some(caps);
        }
        let start = running_seconds(&sample, sample.buffer().and_then(|b| b.pts()));
        let mut buffer = sample
            .buffer_owned()
            .ok_or_else(|| decode.failure("sample without buffer".into()))?;
        drop(sample);
        if let Some(start) = start {
            let buffer = buffer.make_mut();
            buffer.set_pts(start);
            if let Ok(mut map) = buffer.map_writable() {
                let bytes = map.as_mut_slice();
                if bytes.len() % 4 == 0 {
                    let samples: Vec<f32> = bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    let mut samples = samples;
                    let n = edit_audio(
                        &mut samples,
                        channels as usize,
                        rate as u32,
                        start.nseconds() as f64 / 1e9,
                        &spec.audio,
                    );
                    if n > 0 {
                        for (chunk, value) in bytes.chunks_exact_mut(4).zip(&samples) {
                            chunk.copy_from_slice(&value.to_le_bytes());
                        }
                        changed += n;
                    }
                }
            }
        }
        encode.push(&source, buffer)?;
    }
    source
        .end_of_stream()
        .map_err(|e| encode.failure(format!("end of audio stream refused: {e:?}")))?;
    Ok(changed)
}
