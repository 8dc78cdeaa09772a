//! Redaction: public versions of a recording with regions and sounds
//! hidden, each with its reason and author (Article 17 of the bureau's
//! rules: state secrets, trade secrets and personal privacy are protected
//! when footage is disclosed).
//!
//! Contract: `redact(input, spec, output)` writes a new H.264/AAC MP4 and,
//! beside it, a redaction log (`OUTPUT.redaction.json`) that says what was
//! hidden, where, when, why, by whom, from which original (by SHA-256) and
//! how (smart or full re-encode, padding, rotation). The original is only
//! read. The output appears under its name only when complete; an existing
//! file is never overwritten.
//!
//! Two methods. *Smart* render decodes and re-encodes only the GOPs that a
//! mask touches and copies every other sample as it is, which is what makes
//! a short mask in a long recording fast. *Full* render re-encodes every
//! frame; it is used when a stream cannot be spliced safely (not H.264 in
//! MP4, odd size, 4:4:4, open GOPs, a watermark on every frame), and the
//! log says why.

pub mod cli;
pub mod frame;
pub mod log;
pub mod mask;
pub mod pipeline;
pub mod render;
pub mod rerun;
pub mod smart;
pub mod spec;

use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

use crate::i18n::Text;
use crate::media::index::{read_index, ContainerIndex, TrackKind};

pub use log::RedactionLog;
pub use spec::{Spec, SpecError};

/// Suffix of the redaction log written beside each output.
pub const LOG_SUFFIX: &str = ".redaction.json";

/// x264 speed preset: `veryfast` keeps full-frame redaction of 1080p near
/// real time on two cores at a quality close to `medium`.
pub const DEFAULT_SPEED_PRESET: &str = "veryfast";

/// x264 constant-quality value (CRF): 20 is visually lossless for camera
/// footage, so pixels outside the masks stay within encoder noise.
pub const DEFAULT_QUALITY: u32 = 20;

#[derive(Debug, Error)]
pub enum RedactError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot read {path}: {source}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has no video stream that can be decoded: {reason}")]
    NoVideo { path: PathBuf, reason: String },
    #[error("output {path} already exists; choose another name (nothing is overwritten)")]
    OutputExists { path: PathBuf },
    #[error("output {path} is the input itself")]
    OutputIsInput { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "redaction spec field {field}: the mask lies wholly outside the {width}x{height} picture"
    )]
    MaskOutside {
        field: String,
        width: u32,
        height: u32,
    },
    #[error(
        "redaction spec field {field}: it starts at {from} s, at or after the end of the recording ({end:.3} s), so it would hide nothing"
    )]
    AfterEnd { field: String, from: f64, end: f64 },
    #[error("pipeline {name} failed: {message}")]
    Pipeline { name: &'static str, message: String },
    #[error("output check failed: {}", .0.en)]
    Verify(Text),
    #[error("stopped because another part of the same redaction failed")]
    Cancelled,
}

impl RedactError {
    /// The error in both languages.
    pub fn message(&self) -> Text {
        let en = self.to_string();
        let zh = match self {
            RedactError::Spec(e) => return e.message(),
            RedactError::Input { path, source } => format!("无法读取 {}：{source}", path.display()),
            RedactError::NoVideo { path, reason } => {
                format!("{} 中没有可解码的视频流：{reason}", path.display())
            }
            RedactError::OutputExists { path } => {
                format!(
                    "输出文件 {} 已存在，请换一个文件名（不会覆盖任何文件）",
                    path.display()
                )
            }
            RedactError::OutputIsInput { path } => {
                format!("输出文件 {} 就是输入文件", path.display())
            }
            RedactError::Output { path, source } => {
                format!("无法写入 {}：{source}", path.display())
            }
            RedactError::MaskOutside {
                field,
                width,
                height,
            } => {
                format!("脱敏规格字段 {field}：遮罩完全位于 {width}x{height} 画面之外")
            }
            RedactError::AfterEnd { field, from, end } => format!(
                "脱敏规格字段 {field}：开始时间 {from} 秒不早于录像的结束时间（{end:.3} 秒），此项不会遮盖任何内容"
            ),
            RedactError::Pipeline { name, message } => format!("处理管道 {name} 失败：{message}"),
            RedactError::Verify(message) => format!("输出检查失败：{}", message.zh),
            RedactError::Cancelled => "同一脱敏任务的另一部分失败，已停止".to_string(),
        };
        Text::new(zh, en)
    }

    /// A pipeline can fail for a passing reason (memory, a busy disk);
    /// a bad spec or input cannot.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RedactError::Pipeline { .. } | RedactError::Output { .. }
        )
    }
}

/// x264 settings of re-encoded frames.
#[derive(Clone, Debug, Serialize)]
pub struct EncoderSettings {
    pub speed_preset: String,
    /// Constant-quality value (CRF).
    pub quality: u32,
}

impl Default for EncoderSettings {
    fn default() -> EncoderSettings {
        EncoderSettings {
            speed_preset: DEFAULT_SPEED_PRESET.to_string(),
            quality: DEFAULT_QUALITY,
        }
    }
}

/// How the picture was grown to even size, recorded in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Padding {
    /// Black columns added on the right.
    pub right: u32,
    /// Black rows added at the bottom.
    pub bottom: u32,
    pub from_width: u32,
    pub from_height: u32,
}

/// Which render was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Smart,
    Full,
}

/// One redaction job.
pub struct Request<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub spec: &'a Spec,
    pub actor: &'a str,
    /// Visible text burnt into every frame; forces a full re-encode.
    pub watermark: Option<String>,
    pub encoder: EncoderSettings,
    /// Re-encode everything even where smart render could splice.
    pub force_full: bool,
}

/// What the input holds, as far as redaction needs to know.
pub struct Source {
    pub sha256: String,
    pub bytes: u64,
    pub index: Option<ContainerIndex>,
    pub has_audio: bool,
    /// Width and height as displayed (after rotation).
    pub display_width: u32,
    pub display_height: u32,
    /// Clockwise display rotation of the video track in degrees.
    pub rotation: u32,
    /// Video samples in the file.
    pub frames: Option<u64>,
    /// Video samples its edit list shows, which a decoder outputs: fewer
    /// than `frames` in a lossless clip that starts after a keyframe.
    pub presented_frames: Option<u64>,
    /// Ticks per second of the video track, when the container has an index.
    pub video_timescale: Option<u32>,
}

/// Writes the redacted copy and its log; returns the log.
pub fn redact(request: &Request<'_>) -> Result<RedactionLog, RedactError> {
    let Request {
        input,
        output,
        spec,
        ..
    } = *request;
    spec.validate()?;
    check_output(input, output)?;
    let source = inspect(input)?;
    check_masks_reach_picture(spec, source.display_width, source.display_height)?;
    check_items_start_before_end(spec, source.index.as_ref())?;

    let partial = partial_path(output);
    let _ = std::fs::remove_file(&partial);
    let outcome = render(request, &source, &partial);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };

    let log = log::build(request, &source, &partial, outcome).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    // The output becomes visible under its name only once complete and
    // checked; a hard link fails rather than replace a file that appeared
    // meanwhile.
    std::fs::hard_link(&partial, output)
        .or_else(|_| {
            if output.exists() {
                Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "output appeared meanwhile",
                ))
            } else {
                std::fs::rename(&partial, output)
            }
        })
        .map_err(|source| RedactError::Output {
            path: output.to_path_buf(),
            source,
        })?;
    let _ = std::fs::remove_file(&partial);
    log.write(&log_path(output))
        .map_err(|source| RedactError::Output {
            path: log_path(output),
            source,
        })?;
    info!(output = %output.display(), method = ?log.method, "redacted copy written");
    Ok(log)
}

/// Path of the redaction log of an output.
pub fn log_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(LOG_SUFFIX);
    PathBuf::from(name)
}

fn partial_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}.partial"))
}

fn check_output(input: &Path, output: &Path) -> Result<(), RedactError> {
    if output.exists() {
        let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(RedactError::OutputIsInput {
                path: output.to_path_buf(),
            });
        }
        return Err(RedactError::OutputExists {
            path: output.to_path_buf(),
        });
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(RedactError::Output {
                path: output.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the folder does not exist",
                ),
            });
        }
    }
    Ok(())
}

/// Hashes the original and learns its streams, size and rotation.
pub fn inspect(input: &Path) -> Result<Source, RedactError> {
    let input_error = |source| RedactError::Input {
        path: input.to_path_buf(),
        source,
    };
    let bytes = std::fs::metadata(input).map_err(input_error)?.len();
    let sha256 = crate::store::local::sha256_file(input).map_err(input_error)?;

    let discovered =
        crate::media::discover::discover(input).map_err(|reason| RedactError::NoVideo {
            path: input.to_path_buf(),
            reason,
        })?;
    let video = discovered
        .streams
        .iter()
        .find(|s| s.kind == "video")
        .ok_or_else(|| RedactError::NoVideo {
            path: input.to_path_buf(),
            reason: "no video stream".into(),
        })?;
    let has_audio = discovered.streams.iter().any(|s| s.kind == "audio");

    let index = read_index(input).ok();
    let video_track = index
        .as_ref()
        .and_then(|i| i.tracks.iter().find(|t| t.kind == TrackKind::Video));
    let rotation = video_track.map_or(0, |t| t.rotation);
    let (width, height) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
    let (display_width, display_height) = if rotation % 180 == 90 {
        (height, width)
    } else {
        (width, height)
    };
    let frames = video_track.map(|t| t.samples.len() as u64);
    let presented_frames = video_track.map(|t| t.presentation_times().len() as u64);
    let video_timescale = video_track.map(|t| t.timescale);
    Ok(Source {
        sha256,
        bytes,
        index,
        has_audio,
        display_width,
        display_height,
        rotation,
        frames,
        presented_frames,
        video_timescale,
    })
}

/// Rejects a mask that would hide nothing because every one of its
/// keyframes lies outside the picture: that is a mistake in the spec
/// (wrong coordinates or the wrong recording), not a redaction.
fn check_masks_reach_picture(spec: &Spec, width: u32, height: u32) -> Result<(), RedactError> {
    if width == 0 || height == 0 {
        return Ok(());
    }
    for (i, mask) in spec.masks.iter().enumerate() {
        let reaches = mask.keyframes.iter().any(|key| {
            mask.region_at(key.at)
                .or_else(|| {
                    let mut copy = mask.clone();
                    copy.from = None;
                    copy.to = None;
                    copy.region_at(key.at)
                })
                .is_some_and(|r| r.overlaps(width, height))
        });
        if !reaches {
            return Err(RedactError::MaskOutside {
                field: format!("masks[{i}].keyframes"),
                width,
                height,
            });
        }
    }
    Ok(())
}

/// Rejects a mask that starts at or after the video's end, and an audio
/// range that starts at or after the audio's end. Such an item hides
/// nothing, yet the output would still look redacted.
fn check_items_start_before_end(
    spec: &Spec,
    index: Option<&ContainerIndex>,
) -> Result<(), RedactError> {
    let Some(index) = index else {
        return Ok(());
    };
    let end_of = |kind: TrackKind| {
        index
            .tracks
            .iter()
            .filter(|t| t.kind == kind)
            .map(crate::split::cut::presented_end)
            .fold(0.0, f64::max)
    };
    let masks = spec.masks.iter().enumerate().map(|(i, mask)| {
        let from = mask.from.unwrap_or(0.0);
        (format!("masks[{i}].from"), from, end_of(TrackKind::Video))
    });
    let audio = spec.audio.iter().enumerate().map(|(i, range)| {
        (format!("audio[{i}].from"), range.from, end_of(TrackKind::Audio))
    });
    for (field, from, end) in masks.chain(audio) {
        // An end of zero means the index has no such track to measure.
        if end > 0.0 && from >= end {
            return Err(RedactError::AfterEnd { field, from, end });
        }
    }
    Ok(())
}

/// What a render produced, for the log.
pub struct Outcome {
    pub method: Method,
    pub fallback_reason: Option<Text>,
    pub frames: u64,
    pub masked_frames: u64,
    pub reencoded: Vec<smart::Span>,
    pub width: u32,
    pub height: u32,
    pub padding: Option<Padding>,
    pub rotation_handling: Option<&'static str>,
    pub audio_samples_changed: u64,
    pub audio_reencoded: bool,
}

fn render(request: &Request<'_>, source: &Source, partial: &Path) -> Result<Outcome, RedactError> {
    let reason = if request.force_full {
        Some(Text::new(
            "操作员要求完整重新编码",
            "the operator asked for a full re-encode",
        ))
    } else if request.watermark.is_some() {
        Some(Text::new(
            "每一帧都带可见水印，必须完整重新编码",
            "a visible watermark is on every frame, so every frame is re-encoded",
        ))
    } else {
        match smart::plan(request, source) {
            Ok(plan) => match smart::render(request, source, &plan, partial) {
                Ok(outcome) => return Ok(outcome),
                Err(smart::SmartError::Unsafe(reason)) => Some(reason),
                Err(smart::SmartError::Failed(error)) => return Err(error),
            },
            Err(reason) => Some(reason),
        }
    };
    if let Some(reason) = &reason {
        if request.force_full || request.watermark.is_some() {
            info!(reason = %reason.en, "re-encoding every frame");
        } else {
            warn!(reason = %reason.en, "smart render not possible, re-encoding every frame");
        }
    }
    let _ = std::fs::remove_file(partial);
    let full = render::render_full(
        request.input,
        partial,
        request.spec,
        source.has_audio,
        &request.encoder,
        request.watermark.as_deref(),
        source.video_timescale,
    )?;
    Ok(Outcome {
        method: Method::Full,
        fallback_reason: reason,
        frames: full.frames,
        masked_frames: full.masked_frames,
        reencoded: Vec::new(),
        width: full.width,
        height: full.height,
        padding: full.padding,
        rotation_handling: (source.rotation != 0).then_some("frames_rotated"),
        audio_samples_changed: full.audio_samples_changed,
        audio_reencoded: full.has_audio,
    })
}
