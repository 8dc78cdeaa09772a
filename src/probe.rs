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

/// Largest gap between the container clock and the time in the file name
/// that is not flagged. A camera that writes local time where UTC belongs
/// is off by at most 14 hours, so a day or more means a clock was set wrong.
const MAX_NAME_CLOCK_DISAGREEMENT_HOURS: i64 = 24;

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
            if tracks
                .iter()
                .all(|t: &TrackSummary| t.frames.unwrap_or(0) == 0)
            {
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
            let why = error.text();
            reason = Some(Text::new(
                format!("无法读取文件结构：{}；原始文件已按原样保存", why.zh),
                format!(
                    "cannot read the file structure: {}; the original is kept as it is",
                    why.en
                ),
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
            format!("文件索引损坏：{}；原始文件已按原样保存", reason.zh),
            format!(
                "the file's index is damaged: {}; the original is kept as it is",
                reason.en
            ),
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
                format!("录像未正常结束：{}", reason.zh),
                format!("recording not finalized: {}", reason.en),
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
            Text::new(
                format!("索引异常：{}", reason.zh),
                format!("malformed index: {}", reason.en),
            ),
        ),
    }
}

/// Flags a container clock that disagrees with the time in the file name
/// by more than [`MAX_NAME_CLOCK_DISAGREEMENT_HOURS`]. One of the two
/// clocks is wrong, and the container's time is kept as the start.
fn flag_clock_disagreement(container: DateTime<Utc>, named: DateTime<Utc>, findings: &mut Vec<Finding>) {
    let hours = (container - named).num_hours().abs();
    if hours <= MAX_NAME_CLOCK_DISAGREEMENT_HOURS {
        return;
    }
    let (container_text, named_text) = (container.to_rfc3339(), named.to_rfc3339());
    let days = hours / 24;
    findings.push(
        Finding::new(
            "unreliable_clock",
            Text::new(
                format!(
                    "容器创建时间 {container_text} 与文件名中的时间 {named_text} 相差约 {days} 天，其中至少一个时钟有误；录制开始时间仍取容器创建时间，请核实"
                ),
                format!(
                    "container creation time {container_text} and the time in the file name {named_text} are about {days} days apart, so at least one clock is wrong; the start is still taken from the container, check it"
                ),
            ),
        )
        .with_detail(serde_json::json!({ "creation_time": container_text, "name_time": named_text })),
    );
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
                if let Some(named) = name.and_then(|n| n.start) {
                    flag_clock_disagreement(time, named, findings);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn case(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cases")
            .join(name)
    }

    fn uploaded_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
    }

    fn has_cjk(text: &str) -> bool {
        text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    }

    /// Returns true when `text` contains three Latin words in a row, as an
    /// English sentence would. Box names and numbers stand alone.
    fn has_english_sentence(text: &str) -> bool {
        text.split(|c: char| !c.is_ascii()).any(|run| {
            run.split_whitespace()
                .filter(|word| word.chars().all(|c| c.is_ascii_alphabetic()))
                .count()
                >= 3
        })
    }

    fn finding<'a>(probe: &'a Probe, kind: &str) -> &'a Finding {
        probe
            .findings
            .iter()
            .find(|f| f.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} finding in {:?}", probe.findings))
    }

    #[test]
    fn killed_fragment_finding_reads_in_chinese() {
        let probe = probe(&case("fragmented-killed.mp4"), None, uploaded_at());

        let message = &finding(&probe, "not_finalized").message;
        assert!(
            message.zh.starts_with("录像未正常结束：最后一个影片分片"),
            "{}",
            message.zh
        );
        assert!(!has_english_sentence(&message.zh), "{}", message.zh);
        assert!(
            message
                .en
                .starts_with("recording not finalized: the last movie fragment"),
            "{}",
            message.en
        );
    }

    #[test]
    fn truncated_ts_malformed_reason_reads_in_chinese() {
        let source = std::fs::read(case("ts-reset.ts")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.ts");
        std::fs::write(&path, &source[..188 * 1000 + 100]).unwrap();

        let probe = probe(&path, None, uploaded_at());
        let message = &finding(&probe, "malformed_index").message;
        let english_reason = message.en.trim_start_matches("malformed index: ");
        assert!(has_cjk(&message.zh), "{}", message.zh);
        assert!(!message.zh.contains(english_reason), "{}", message.zh);
        assert!(!has_english_sentence(&message.zh), "{}", message.zh);
        assert_eq!(
            message.zh,
            "索引异常：文件在一个传输流数据包中间结束：从偏移 188000 起的最后 100 字节是不完整的数据包，文件被截断"
        );
    }

    #[test]
    fn damaged_index_unreadable_reason_reads_in_chinese() {
        // ftyp, then a moov whose only child is an mvhd of 4 bytes: no
        // creation time, no timescale, no tracks.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&16u32.to_be_bytes());
        bytes.extend_from_slice(b"ftypisom\0\0\0\0");
        bytes.extend_from_slice(&20u32.to_be_bytes());
        bytes.extend_from_slice(b"moov");
        bytes.extend_from_slice(&12u32.to_be_bytes());
        bytes.extend_from_slice(b"mvhd\0\0\0\0");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.mp4");
        std::fs::write(&path, &bytes).unwrap();

        let probe = probe(&path, None, uploaded_at());
        assert!(!probe.readable);
        let reason = probe.reason.expect("an unreadable file has a reason");
        assert_eq!(
            reason.zh,
            "文件索引损坏：mvhd box 过短，容不下创建时间和时间刻度；原始文件已按原样保存"
        );
        assert_eq!(
            reason.en,
            "the file's index is damaged: the mvhd box is too short to hold its creation time and timescale; the original is kept as it is"
        );
    }

    #[test]
    fn unparseable_file_reason_reads_in_chinese() {
        // A first box that declares 4 bytes, less than its own header.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&4u32.to_be_bytes());
        bytes.extend_from_slice(b"ftypisom\0\0\0\0");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.mp4");
        std::fs::write(&path, &bytes).unwrap();

        let probe = probe(&path, None, uploaded_at());
        let reason = probe.reason.expect("an unparseable file has a reason");
        assert!(
            reason.zh.starts_with("无法读取文件结构：无法解析 "),
            "{}",
            reason.zh
        );
        assert!(
            reason.zh.contains("偏移 0 处的 ftyp box 声明大小为 4 字节"),
            "{}",
            reason.zh
        );
        assert!(!has_english_sentence(&reason.zh), "{}", reason.zh);
        assert!(
            reason.en.contains("declares a size of 4 bytes"),
            "{}",
            reason.en
        );
    }
}
