//! Probe: what a recording contains and when and by whom it was made.
//!
//! Tracks come from the container's own index (every track, data and
//! telemetry included, typed by the handler's type code, never its name);
//! containers without an index reader are listed through GStreamer. The
//! start time is taken from the first reliable source: the container's
//! creation time, the file name, then the upload time. A clock that was
//! never set (1904, 1970) or lies in the future is flagged and skipped.

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;

use crate::finding::Finding;
use crate::i18n::Text;
use crate::media::discover;
use crate::media::index::{self, ContainerIndex, IndexError, IndexProblem, TrackIndex};
use crate::naming::NameInfo;

/// The earliest believable recording time: no body camera in service has
/// a clock older than this; earlier values are unset clocks.
const EARLIEST_PLAUSIBLE: i64 = 946_684_800; // 2000-01-01T00:00:00Z

/// A creation time this far past the upload cannot be right; the margin
/// allows for a camera clock running a little fast.
const FUTURE_MARGIN_HOURS: i64 = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartSource {
    Container,
    FileName,
    UploadTime,
}

/// One track as reports show it.
#[derive(Clone, Debug, Serialize)]
pub struct TrackSummary {
    pub index: usize,
    pub id: u32,
    pub kind: String,
    pub handler_type: String,
    pub handler_name: Option<String>,
    /// Codec name; for MP4 the sample entry's four-character code.
    pub codec: String,
    /// The MP4 sample entry (`avc1`, `hev1`, `hvc1`, `mp4a`, `gpmd`, …).
    pub sample_entry: Option<String>,
    /// Presentation start and end in media seconds.
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub duration: Option<f64>,
    pub frames: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub rotation: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// `mp4`, `mpegts`, or the GStreamer media type of another container.
    pub container: Option<String>,
    pub brand: Option<String>,
    pub tracks: Vec<TrackSummary>,
    pub start: DateTime<Utc>,
    pub start_source: StartSource,
    pub device: Option<String>,
    pub officer: Option<String>,
    pub name: Option<NameInfo>,
    /// False when no track could be read: the original is kept all the same.
    pub readable: bool,
    /// Why the file could not be read, for an operator.
    pub reason: Option<Text>,
    pub findings: Vec<Finding>,
    /// The container index, for the continuity stage.
    #[serde(skip)]
    pub index: Option<ContainerIndex>,
}

/// Probes a file; never fails, because an unreadable file is an outcome.
pub fn probe(path: &Path, name: Option<&NameInfo>, uploaded_at: DateTime<Utc>) -> Probe {
    let mut findings = Vec::new();
    let mut reason = None;
    let mut container = None;
    let mut brand = None;
    let mut tracks = Vec::new();
    let mut creation_time = None;
    let mut container_index = None;

    match index::read_index(path) {
        Ok(read) => {
            container = Some(match read.format {
                index::ContainerFormat::Mp4 => "mp4".to_string(),
                index::ContainerFormat::MpegTs => "mpegts".to_string(),
            });
            brand = read.brand.clone();
            creation_time = read.creation_time;
            tracks = read.tracks.iter().map(summarize).collect();
            findings.extend(read.problems.iter().map(problem_finding));
            if tracks.iter().all(|t: &TrackSummary| t.frames.unwrap_or(0) == 0) {
                reason = Some(unreadable_reason(&read));
            }
            container_index = Some(read);
        }
        Err(IndexError::UnknownFormat { .. }) => match discover::discover(path) {
            Ok(found) => {
                container = found.container.clone();
                tracks = discovered_tracks(&found);
                findings.push(
                    Finding::new(
                        "other_container",
                        Text::new(
                            format!("容器 {} 没有索引读取器，时间来自 GStreamer 解复用器，可能掩盖时间戳跳变", found.container.as_deref().unwrap_or("未知")),
                            format!("container {} has no index reader; timing comes from the GStreamer demuxer, which may hide timestamp jumps", found.container.as_deref().unwrap_or("unknown")),
                        ),
                    ),
                );
            }
            Err(error) => {
                reason = Some(Text::new(
                    format!("无法识别的文件格式（不是 MP4/MOV 或 MPEG-TS，GStreamer 也无法识别：{error}）；原始文件已按原样保存"),
                    format!("unrecognized file format (not MP4/MOV or MPEG-TS, and GStreamer could not type it: {error}); the original is kept as it is"),
                ));
            }
        },
        Err(error) => {
            reason = Some(Text::new(
                format!("无法读取文件结构：{error}；原始文件已按原样保存"),
                format!("cannot read the file structure: {error}; the original is kept as it is"),
            ));
        }
    }

    let (start, start_source) = choose_start(creation_time, name, uploaded_at, &mut findings);
    if let Some(text) = &reason {
        findings.push(Finding::new("unreadable", text.clone()));
    }

    Probe {
        container,
        brand,
        tracks,
        start,
        start_source,
        device: name.and_then(|n| n.device.clone()),
        officer: name.and_then(|n| n.officer.clone()),
        name: name.cloned(),
        readable: reason.is_none(),
        reason,
        findings,
        index: container_index,
    }
}

fn summarize(track: &TrackIndex) -> TrackSummary {
    let times = track.presentation_times();
    let step = track.nominal_step().unwrap_or(0.0);
    let start = times.first().copied();
    let end = times.last().map(|last| last + step);
    let is_mp4_entry = !track.handler_type.starts_with("0x");
    TrackSummary {
        index: track.index,
        id: track.id,
        kind: format!("{:?}", track.kind).to_lowercase(),
        handler_type: track.handler_type.clone(),
        handler_name: track.handler_name.clone(),
        codec: track.codec.clone(),
        sample_entry: is_mp4_entry.then(|| track.codec.clone()),
        start,
        end,
        duration: start.zip(end).map(|(s, e)| e - s),
        frames: Some(times.len() as u64),
        width: track.width,
        height: track.height,
        rotation: track.rotation,
    }
}

fn discovered_tracks(found: &discover::Discovered) -> Vec<TrackSummary> {
    found
        .streams
        .iter()
        .enumerate()
        .map(|(i, stream)| TrackSummary {
            index: i,
            id: i as u32,
            kind: stream.kind.clone(),
            handler_type: stream.kind.clone(),
            handler_name: None,
            codec: stream.codec.clone(),
            sample_entry: None,
            start: Some(0.0),
            end: found.duration,
            duration: found.duration,
            frames: None,
            width: stream.width,
            height: stream.height,
            rotation: 0,
        })
        .collect()
}

fn unreadable_reason(read: &ContainerIndex) -> Text {
    for problem in &read.problems {
        if let IndexProblem::NotFinalized { .. } = problem {
            return Text::new(
                "录像未正常结束（缺少索引，可能是断电或录制中关机），无法播放；原始文件已按原样保存",
                "the recording was not finalized (its index is missing, usually after a power loss or the camera being switched off while recording), so it cannot be played; the original is kept as it is",
            );
        }
    }
    match read.problems.first() {
        Some(IndexProblem::Malformed { reason }) => Text::new(
            format!("文件索引损坏：{reason}；原始文件已按原样保存"),
            format!("the file's index is damaged: {reason}; the original is kept as it is"),
        ),
        _ => Text::new(
            "文件中没有可读的音视频帧；原始文件已按原样保存",
            "the file holds no readable frames; the original is kept as it is",
        ),
    }
}

fn problem_finding(problem: &IndexProblem) -> Finding {
    match problem {
        IndexProblem::NotFinalized { reason } => Finding::new(
            "not_finalized",
            Text::new(
                format!("录像未正常结束：{reason}"),
                format!("recording not finalized: {reason}"),
            ),
        ),
        IndexProblem::Truncated {
            track,
            declared_samples,
            present_samples,
            data_end,
        } => Finding::new(
            "truncated",
            Text::new(
                format!("文件被截断：索引声明 {declared_samples} 帧，实际只有 {present_samples} 帧"),
                format!("file truncated: the index declares {declared_samples} samples but only {present_samples} are present"),
            ),
        )
        .on_track(*track)
        .with_detail(serde_json::json!({
            "declared_samples": declared_samples,
            "present_samples": present_samples,
            "data_end": data_end,
        })),
        IndexProblem::Malformed { reason } => Finding::new(
            "malformed_index",
            Text::new(format!("索引异常：{reason}"), format!("malformed index: {reason}")),
        ),
    }
}

/// Picks the start from the container clock, the file name or the upload
/// time, flagging a container clock that cannot be right.
fn choose_start(
    creation_time: Option<i64>,
    name: Option<&NameInfo>,
    uploaded_at: DateTime<Utc>,
    findings: &mut Vec<Finding>,
) -> (DateTime<Utc>, StartSource) {
    if let Some(seconds) = creation_time {
        let latest = uploaded_at + Duration::hours(FUTURE_MARGIN_HOURS);
        let clock = Utc.timestamp_opt(seconds, 0).single();
        match clock {
            Some(time) if seconds >= EARLIEST_PLAUSIBLE && time <= latest => {
                return (time, StartSource::Container);
            }
            _ => {
                let shown = clock
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| seconds.to_string());
                let why = if seconds < EARLIEST_PLAUSIBLE {
                    Text::new("摄像机时钟未设置", "the camera clock was never set")
                } else {
                    Text::new("时间晚于上传时间", "the time is later than the upload")
                };
                findings.push(
                    Finding::new(
                        "unreliable_clock",
                        Text::new(
                            format!("容器创建时间 {shown} 不可信（{}），改用下一来源", why.zh),
                            format!("container creation time {shown} is unreliable ({}); the next source is used", why.en),
                        ),
                    )
                    .with_detail(serde_json::json!({ "creation_time": shown })),
                );
            }
        }
    }
    if let Some(start) = name.and_then(|n| n.start) {
        return (start, StartSource::FileName);
    }
    (uploaded_at, StartSource::UploadTime)
}
