//! Timing analysis of one recording, from the container index alone.
//!
//! Every sample's decode timestamp is compared with the one before it in
//! the order the camera wrote them, in the track's own timescale. A demuxer
//! would have smoothed the steps away, and frame index × frame rate would
//! hide them, so neither is used. A step is judged against the track's
//! nominal step (the most common sample duration, or the median PTS step
//! where the container carries no durations):
//!
//! - a step of at most 1.5 nominal steps is normal;
//! - a longer step that loses less than [`DROPPED_FRAMES_MAX_SECONDS`] is
//!   `dropped_frames` (all such steps of a track make one finding with the
//!   count of frames and events);
//! - a longer step still is a `gap`, with its start, end and length;
//! - a step backwards is a `timestamp_reset` when it lands at or before the
//!   track's first timestamp (the camera restarted its clock), otherwise a
//!   `backward_jump`.
//!
//! Positions are reported in presentation time: MP4 edit lists are applied
//! (a delayed start or hidden preroll is not a gap), and MPEG-TS times count
//! from the earliest timestamp of the file, since a TS clock starts anywhere.

use serde::Serialize;

use crate::finding::Finding;
use crate::i18n::Text;
use crate::media::index::{ContainerFormat, ContainerIndex, TrackIndex, TrackKind};

/// A forward step longer than this many nominal steps means samples are
/// missing; shorter ones are jitter of a variable frame rate.
pub const GAP_MIN_STEPS: f64 = 1.5;

/// A step that loses less than this is dropped frames, at or above it a gap.
/// Half a second is 15 frames at 30 fps, more than an encoder under load
/// drops in one go, and about the shortest stop in which an act of an
/// inspection could happen unseen, so it must be reported as a stop.
pub const DROPPED_FRAMES_MAX_SECONDS: f64 = 0.5;

/// A track that starts later or ends earlier than another by more than
/// this is reported: players hide smaller offsets, larger ones are heard
/// and seen (speech without picture).
pub const AV_MISMATCH_SECONDS: f64 = 0.5;

/// One track as the continuity report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TrackTiming {
    pub index: usize,
    pub kind: String,
    pub codec: String,
    /// First presentation time in media seconds.
    pub start: Option<f64>,
    /// End of the last sample shown, in media seconds.
    pub end: Option<f64>,
    pub frames: u64,
    /// Nominal time between samples in seconds.
    pub nominal_step: Option<f64>,
    /// False for tracks whose timing is not checked (timecode, telemetry):
    /// their samples come at irregular times by design.
    pub checked: bool,
    /// Seconds lost in gaps and dropped frames.
    pub missing: f64,
}

/// A stretch of media time without footage, inside one recording.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Hole {
    pub from: f64,
    pub to: f64,
}

/// What the timing of one recording shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileTiming {
    pub tracks: Vec<TrackTiming>,
    /// Findings of this analysis; the probe's own findings are not repeated.
    pub findings: Vec<Finding>,
    /// Earliest start and latest end over the checked tracks.
    pub media_start: Option<f64>,
    pub media_end: Option<f64>,
    /// Gaps of the reference track (the first video track, else the first
    /// audio track): where the recording shows nothing.
    pub holes: Vec<Hole>,
}

/// Analyzes the timing of every track of an index.
pub fn analyze(index: &ContainerIndex) -> FileTiming {
    let origin = match index.format {
        ContainerFormat::MpegTs => ts_origin(index),
        ContainerFormat::Mp4 => 0.0,
    };

    let mut timing = FileTiming::default();
    let mut reference: Option<(TrackKind, Vec<Hole>)> = None;
    for track in &index.tracks {
        let analysis = analyze_track(track, index.format, origin);
        if analysis.timing.checked {
            timing.media_start = min_option(timing.media_start, analysis.timing.start);
            timing.media_end = max_option(timing.media_end, analysis.timing.end);
            let is_better = match &reference {
                None => true,
                Some((kind, _)) => *kind != TrackKind::Video && track.kind == TrackKind::Video,
            };
            if is_better {
                reference = Some((track.kind, analysis.holes.clone()));
            }
        }
        timing.findings.extend(analysis.findings);
        timing.tracks.push(analysis.timing);
    }
    timing.holes = reference.map(|(_, holes)| holes).unwrap_or_default();
    timing.findings.extend(av_mismatches(&timing.tracks));
    timing
}

/// Media time zero of an MPEG-TS file in seconds: its earliest timestamp
/// before any stream steps backwards. Times after a reset are lower and
/// must not move the origin, or every position before the reset would
/// shift by the size of the reset.
fn ts_origin(index: &ContainerIndex) -> f64 {
    let origin = index
        .tracks
        .iter()
        .filter_map(first_run_start)
        .fold(f64::INFINITY, f64::min);
    if origin.is_finite() {
        origin
    } else {
        0.0
    }
}

struct TrackAnalysis {
    timing: TrackTiming,
    findings: Vec<Finding>,
    holes: Vec<Hole>,
}

/// Dropped frames of one track, summed into one finding.
#[derive(Default)]
struct Drops {
    frames: u64,
    events: u64,
    seconds: f64,
    first_at: Option<f64>,
}

fn analyze_track(track: &TrackIndex, format: ContainerFormat, origin: f64) -> TrackAnalysis {
    let checked = matches!(track.kind, TrackKind::Video | TrackKind::Audio) && track.timescale > 0;
    let nominal = track.nominal_step();
    let mut times = track.presentation_times();
    if format == ContainerFormat::MpegTs {
        for time in &mut times {
            *time -= origin;
        }
    }
    let mut start = times.first().copied();
    if format == ContainerFormat::MpegTs {
        // After a reset the lowest timestamps are the restarted ones; the
        // track starts where its first run of timestamps starts.
        start = first_run_start(track).map(|s| s - origin).or(start);
    }
    let end = times.last().map(|last| last + nominal.unwrap_or(0.0));
    let mut analysis = TrackAnalysis {
        timing: TrackTiming {
            index: track.index,
            kind: format!("{:?}", track.kind).to_lowercase(),
            codec: track.codec.clone(),
            start,
            end,
            frames: times.len() as u64,
            nominal_step: nominal,
            checked,
            missing: 0.0,
        },
        findings: Vec::new(),
        holes: Vec::new(),
    };
    let Some(nominal) = nominal.filter(|_| checked && track.samples.len() > 1) else {
        return analysis;
    };

    let timescale = f64::from(track.timescale);
    let nominal_ticks = (nominal * timescale).round() as i64;
    let shift = presentation_shift(track, format, origin);
    // Decode timestamps run ahead of presentation by the reorder delay of
    // B-frames; adding it back places a step where the viewer sees it.
    let min_pts = track.samples.iter().map(|s| s.pts).min().unwrap_or(0);
    let min_dts = track.samples.iter().map(|s| s.dts).min().unwrap_or(0);
    let decode_delay = (min_pts - min_dts).max(0);
    let first_dts = track.samples[0].dts;
    let to_media = |ticks: i64| (ticks + decode_delay) as f64 / timescale + shift;

    let mut drops = Drops::default();
    for pair in track.samples.windows(2) {
        let (previous, next) = (pair[0].dts, pair[1].dts);
        let step = next.saturating_sub(previous);
        let expected = previous.saturating_add(nominal_ticks);
        let at = to_media(expected);

        if step < 0 {
            let is_reset = next <= first_dts + nominal_ticks / 2;
            let seconds = step as f64 / timescale;
            analysis.findings.push(backward_finding(
                track.index,
                at,
                seconds,
                is_reset,
                previous,
                next,
                timescale,
            ));
            continue;
        }
        if (step as f64) <= GAP_MIN_STEPS * nominal_ticks as f64 {
            continue;
        }

        let missing = (step - nominal_ticks) as f64 / timescale;
        analysis.timing.missing += missing;
        if missing < DROPPED_FRAMES_MAX_SECONDS {
            drops.frames += ((step as f64 / nominal_ticks as f64).round() as u64)
                .saturating_sub(1)
                .max(1);
            drops.events += 1;
            drops.seconds += missing;
            drops.first_at.get_or_insert(at);
            continue;
        }
        let to = to_media(next);
        analysis.holes.push(Hole { from: at, to });
        analysis.findings.push(gap_finding(
            track.index,
            at,
            to,
            missing,
            previous,
            next,
            timescale,
        ));
    }

    if drops.events > 0 {
        analysis
            .findings
            .push(drops_finding(track.index, &drops, analysis.timing.frames));
    }
    analysis
}

/// Lowest presentation time in seconds before the first backward step.
fn first_run_start(track: &TrackIndex) -> Option<f64> {
    if track.timescale == 0 {
        return None;
    }
    let run = track
        .samples
        .windows(2)
        .position(|pair| pair[1].dts < pair[0].dts)
        .map_or(track.samples.len(), |position| position + 1);
    track.samples[..run]
        .iter()
        .map(|s| s.pts)
        .min()
        .map(|pts| pts as f64 / f64::from(track.timescale))
}

/// Seconds to add to a raw timestamp to get its presentation time.
fn presentation_shift(track: &TrackIndex, format: ContainerFormat, origin: f64) -> f64 {
    let timescale = f64::from(track.timescale);
    match format {
        ContainerFormat::MpegTs => -origin,
        ContainerFormat::Mp4 => {
            let first_media_time = track
                .edits
                .iter()
                .find(|e| !e.is_empty_edit())
                .map_or(i64::MIN, |e| e.media_time);
            let first_shown = track
                .samples
                .iter()
                .map(|s| s.pts)
                .filter(|&pts| pts >= first_media_time)
                .min();
            match first_shown {
                Some(pts) => track.presentation_start() - pts as f64 / timescale,
                None => 0.0,
            }
        }
    }
}

fn gap_finding(
    track: usize,
    from: f64,
    to: f64,
    missing: f64,
    previous: i64,
    next: i64,
    timescale: f64,
) -> Finding {
    Finding::new(
        "gap",
        Text::new(
            format!("轨道 {track} 在 {from:.3} 秒处中断 {missing:.3} 秒（时间戳从 {:.3} 跳到 {:.3}），此段没有录像", previous as f64 / timescale, next as f64 / timescale),
            format!("track {track} stops for {missing:.3} s at {from:.3} s (timestamps jump from {:.3} to {:.3}): nothing was recorded then", previous as f64 / timescale, next as f64 / timescale),
        ),
    )
    .on_track(track)
    .at(from)
    .lasting(missing)
    .with_detail(serde_json::json!({
        "from": from,
        "to": to,
        "raw_from": previous as f64 / timescale,
        "raw_to": next as f64 / timescale,
    }))
}

fn backward_finding(
    track: usize,
    at: f64,
    seconds: f64,
    is_reset: bool,
    previous: i64,
    next: i64,
    timescale: f64,
) -> Finding {
    let (raw_from, raw_to) = (previous as f64 / timescale, next as f64 / timescale);
    let (kind, message) = if is_reset {
        (
            "timestamp_reset",
            Text::new(
                format!("轨道 {track} 的时间戳在 {at:.3} 秒处归零重来（从 {raw_from:.3} 回到 {raw_to:.3}，回退 {:.3} 秒）：其后的时间与前面重叠，不能按时间定位", -seconds),
                format!("track {track} timestamps restart at {at:.3} s (from {raw_from:.3} back to {raw_to:.3}, {seconds:.3} s): later times overlap earlier ones and cannot be placed by time"),
            ),
        )
    } else {
        (
            "backward_jump",
            Text::new(
                format!("轨道 {track} 的时间戳在 {at:.3} 秒处回退 {:.3} 秒（从 {raw_from:.3} 到 {raw_to:.3}）", -seconds),
                format!("track {track} timestamps step back {seconds:.3} s at {at:.3} s (from {raw_from:.3} to {raw_to:.3})"),
            ),
        )
    };
    Finding::new(kind, message)
        .on_track(track)
        .at(at)
        .lasting(seconds)
        .with_detail(serde_json::json!({ "raw_from": raw_from, "raw_to": raw_to }))
}

fn drops_finding(track: usize, drops: &Drops, present: u64) -> Finding {
    let at = drops.first_at.unwrap_or(0.0);
    let expected = present + drops.frames;
    Finding::new(
        "dropped_frames",
        Text::new(
            format!(
                "轨道 {track} 丢帧：应有 {expected} 帧，实有 {present} 帧，{} 处共缺 {} 帧，{:.2} 秒（首次在 {at:.3} 秒）",
                drops.events, drops.frames, drops.seconds
            ),
            format!(
                "track {track} dropped frames: {present} of {expected} present, {} missing in {} places, {:.2} s in all (first at {at:.3} s)",
                drops.frames, drops.events, drops.seconds
            ),
        ),
    )
    .on_track(track)
    .at(at)
    .lasting(drops.seconds)
    .with_detail(serde_json::json!({
        "count": drops.frames,
        "events": drops.events,
        "missing_seconds": drops.seconds,
        "present": present,
        "expected": expected,
    }))
}

/// Tracks that start later or end earlier than another by more than
/// [`AV_MISMATCH_SECONDS`].
fn av_mismatches(tracks: &[TrackTiming]) -> Vec<Finding> {
    let checked: Vec<&TrackTiming> = tracks
        .iter()
        .filter(|t| t.checked && t.frames > 1)
        .collect();
    let mut findings = Vec::new();
    let earliest = checked
        .iter()
        .filter_map(|t| t.start)
        .fold(f64::INFINITY, f64::min);
    let latest = checked
        .iter()
        .filter_map(|t| t.end)
        .fold(f64::NEG_INFINITY, f64::max);
    for track in &checked {
        if let Some(start) = track.start.filter(|s| s - earliest > AV_MISMATCH_SECONDS) {
            let late = start - earliest;
            findings.push(
                Finding::new(
                    "av_mismatch",
                    Text::new(
                        format!("轨道 {}（{}）比其他轨道晚 {late:.3} 秒开始", track.index, track.kind),
                        format!(
                            "track {} ({}) starts {late:.3} s after the others",
                            track.index, track.kind
                        ),
                    ),
                )
                .on_track(track.index)
                .at(earliest)
                .lasting(late)
                .with_detail(serde_json::json!({ "edge": "start", "start": start, "earliest_start": earliest })),
            );
        }
        if let Some(end) = track.end.filter(|e| latest - e > AV_MISMATCH_SECONDS) {
            let early = latest - end;
            findings.push(
                Finding::new(
                    "av_mismatch",
                    Text::new(
                        format!(
                            "轨道 {}（{}）比其他轨道早 {early:.3} 秒结束",
                            track.index, track.kind
                        ),
                        format!(
                            "track {} ({}) ends {early:.3} s before the others",
                            track.index, track.kind
                        ),
                    ),
                )
                .on_track(track.index)
                .at(end)
                .lasting(early)
                .with_detail(
                    serde_json::json!({ "edge": "end", "end": end, "latest_end": latest }),
                ),
            );
        }
    }
    findings
}

fn min_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
