//! The redaction log: the custody record of one redacted output.
//!
//! It is JSON stored beside the output (`OUTPUT.redaction.json`) and says
//! what was hidden (each mask and audio range with its keyframes), where
//! and when, why (the reason code and its words), by whom (each item's
//! author and the acting operator), from which original (SHA-256), and how
//! the output was made: smart or full re-encode and why, padding, rotation.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::spec::{AudioRange, Mask};
use super::{Method, Outcome, Padding, RedactError, Request, Source};
use crate::i18n::Text;
use crate::media::index::{read_index, TrackKind};
use crate::store::ToolVersions;

/// Format name and version of the log, for readers that check it.
pub const LOG_FORMAT: &str = "evidence-redaction-log/1";

#[derive(Clone, Debug, Serialize)]
pub struct FileFacts {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputFacts {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MaskEntry {
    #[serde(flatten)]
    pub mask: Mask,
    pub reason_text: Text,
}

#[derive(Clone, Debug, Serialize)]
pub struct AudioEntry {
    #[serde(flatten)]
    pub range: AudioRange,
    pub reason_text: Text,
}

#[derive(Clone, Debug, Serialize)]
pub struct Rotation {
    pub degrees: u32,
    /// `frames_rotated` (pictures turned upright, no rotation flag in the
    /// output) or `masks_mapped` (masks mapped into the stored picture,
    /// the rotation flag kept).
    pub handling: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct RedactionLog {
    pub format: &'static str,
    pub original: FileFacts,
    pub output: OutputFacts,
    pub method: Method,
    /// Why smart render was not used, when it was not.
    pub fallback_reason: Option<Text>,
    /// Time spans re-encoded by smart render (seconds, end exclusive).
    pub reencoded: Vec<super::smart::Span>,
    pub frames_masked: u64,
    pub padding: Option<Padding>,
    pub rotation: Option<Rotation>,
    pub watermark: Option<String>,
    pub masks: Vec<MaskEntry>,
    pub audio: Vec<AudioEntry>,
    /// Audio samples per channel silenced or replaced.
    pub audio_samples_changed: u64,
    /// Whether the audio was decoded and encoded again (else copied).
    pub audio_reencoded: bool,
    pub encoder: super::EncoderSettings,
    pub actor: String,
    pub created_at: DateTime<Utc>,
    pub tools: ToolVersions,
}

impl RedactionLog {
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("a redaction log serializes");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        use std::io::Write;
        let mut file = options.open(path)?;
        file.write_all(&bytes)?;
        file.sync_all()
    }
}

/// Checks the rendered file and builds its log.
pub fn build(
    request: &Request<'_>,
    source: &Source,
    rendered: &Path,
    outcome: Outcome,
) -> Result<RedactionLog, RedactError> {
    let index = read_index(rendered).map_err(|e| RedactError::Verify(e.text()))?;
    let video = index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .ok_or_else(|| {
            RedactError::Verify(Text::new(
                "输出文件没有视频轨道",
                "the output has no video track",
            ))
        })?;
    let frames = video.samples.len() as u64;
    if frames != outcome.frames {
        return Err(RedactError::Verify(Text::new(
            format!("输出文件有 {frames} 帧，但写入了 {} 帧", outcome.frames),
            format!(
                "the output holds {frames} frames but {} were written",
                outcome.frames
            ),
        )));
    }
    // Smart render copies every sample with the edit list; a full render
    // decodes, and a decoder outputs only the samples the edit list shows.
    let expected = match outcome.method {
        super::Method::Smart => source.frames,
        super::Method::Full => source.presented_frames.or(source.frames),
    };
    if let Some(expected) = expected {
        if expected != frames {
            return Err(RedactError::Verify(Text::new(
                format!("原始文件有 {expected} 帧，但输出文件有 {frames} 帧"),
                format!("the original holds {expected} frames but the output {frames}"),
            )));
        }
    }
    let sha256 =
        crate::store::local::sha256_file(rendered).map_err(|source| RedactError::Output {
            path: rendered.to_path_buf(),
            source,
        })?;
    let bytes = std::fs::metadata(rendered).map(|m| m.len()).unwrap_or(0);

    let masks = request
        .spec
        .masks
        .iter()
        .enumerate()
        .map(|(i, mask)| {
            let mut mask = mask.clone();
            mask.id = Some(mask.id.unwrap_or_else(|| format!("mask-{}", i + 1)));
            MaskEntry {
                reason_text: mask.reason.text(),
                mask,
            }
        })
        .collect();
    let audio = request
        .spec
        .audio
        .iter()
        .enumerate()
        .map(|(i, range)| {
            let mut range = range.clone();
            range.id = Some(range.id.unwrap_or_else(|| format!("audio-{}", i + 1)));
            AudioEntry {
                reason_text: range.reason.text(),
                range,
            }
        })
        .collect();

    Ok(RedactionLog {
        format: LOG_FORMAT,
        original: FileFacts {
            path: request.input.display().to_string(),
            sha256: source.sha256.clone(),
            bytes: source.bytes,
        },
        output: OutputFacts {
            path: request.output.display().to_string(),
            sha256,
            bytes,
            width: outcome.width,
            height: outcome.height,
            frames,
        },
        method: outcome.method,
        fallback_reason: outcome.fallback_reason,
        reencoded: outcome.reencoded,
        frames_masked: outcome.masked_frames,
        padding: outcome.padding,
        rotation: outcome.rotation_handling.map(|handling| Rotation {
            degrees: source.rotation,
            handling,
        }),
        watermark: request.watermark.clone(),
        masks,
        audio,
        audio_samples_changed: outcome.audio_samples_changed,
        audio_reencoded: outcome.audio_reencoded,
        encoder: request.encoder.clone(),
        actor: request.actor.to_string(),
        created_at: Utc::now(),
        tools: ToolVersions::current(),
    })
}
