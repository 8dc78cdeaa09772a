//! Planning: which stretch of which recording goes into each unit's clip.
//!
//! A recording is placed on the wall clock at its probed start (container
//! creation time, else file name) plus media time. The chapters of one
//! device are taken in order of their start; a unit's range `[from, to)`
//! cuts each chapter it overlaps, and the pieces are laid end to end on the
//! clip's timeline. Two chapters whose wall-clock junction differs by no
//! more than the clock's resolution are continuous: a camera splitting a
//! long recording loses no time, and its clock cannot tell us better. A
//! larger distance is a recording gap: it stays on the clip's timeline as
//! nothing presented (an empty edit), and the plan lists it.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::Serialize;

use crate::media::index::{ContainerIndex, TrackIndex, TrackKind};

/// Resolution of a recording's start: container creation times and file
/// names both count whole seconds, so chapters that meet within one second
/// are continuous.
pub const CLOCK_RESOLUTION_SECONDS: f64 = 1.0;

/// Overlaps of a unit and a recording shorter than this are rounding noise
/// of the wall-clock arithmetic, not footage.
const MIN_SEGMENT_SECONDS: f64 = 0.001;

/// A recording that splitting can read.
#[derive(Clone, Debug)]
pub struct Recording {
    pub sha256: String,
    pub file_name: String,
    pub key: String,
    pub device: String,
    pub start: DateTime<Utc>,
    pub path: std::path::PathBuf,
    pub index: ContainerIndex,
    /// Presentation length in seconds (the longest audio or video track).
    pub span: f64,
}

/// A stretch of one recording on the clip's timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    /// Position in the device's recordings given to [`plan_unit`].
    #[serde(skip)]
    pub recording: usize,
    /// Presentation seconds of the recording where the stretch starts and ends.
    pub from: f64,
    pub to: f64,
    /// Where the stretch starts on the clip's timeline, in seconds.
    pub clip_from: f64,
    pub wall_from: DateTime<Utc>,
    pub wall_to: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// Nothing was recorded between two recordings inside the unit's range.
    BetweenRecordings,
    /// The unit starts before the first recording.
    BeforeFirstRecording,
    /// The unit ends after the last recording.
    AfterLastRecording,
    /// Two recordings overlap by more than the clock's resolution; both are
    /// kept whole, one after the other.
    Overlap,
}

/// A stretch of the unit's range without footage (or with doubled footage).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    pub kind: GapKind,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub seconds: f64,
    /// Where the gap lies on the clip's timeline; absent for a missing head
    /// or tail, which lies outside the clip.
    pub clip_at: Option<f64>,
}

/// The clip of one unit from one device.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipPlan {
    pub unit_id: String,
    pub device: String,
    pub requested_from: DateTime<FixedOffset>,
    pub requested_to: DateTime<FixedOffset>,
    pub segments: Vec<Segment>,
    pub gaps: Vec<Gap>,
    /// Length of the clip's timeline in seconds, gaps included.
    pub duration: f64,
}

impl ClipPlan {
    /// Seconds of footage, gaps excluded.
    pub fn footage_seconds(&self) -> f64 {
        self.segments.iter().map(|s| s.to - s.from).sum()
    }
}

/// Computes how long a recording presents, from its audio and video tracks
/// (every track when it has neither).
pub fn recording_span(index: &ContainerIndex) -> f64 {
    let is_main = |t: &&TrackIndex| matches!(t.kind, TrackKind::Video | TrackKind::Audio);
    let main: Vec<&TrackIndex> = index.tracks.iter().filter(is_main).collect();
    let tracks: Vec<&TrackIndex> = if main.is_empty() {
        index.tracks.iter().collect()
    } else {
        main
    };
    tracks
        .iter()
        .map(|t| super::cut::presented_end(t))
        .fold(0.0, f64::max)
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let nanos = (to - from).num_nanoseconds().unwrap_or(i64::MAX);
    nanos as f64 / 1e9
}

fn plus_seconds(time: DateTime<Utc>, seconds: f64) -> DateTime<Utc> {
    time + Duration::nanoseconds((seconds * 1e9).round() as i64)
}

/// Plans the clip of one unit from the recordings of one device, which must
/// be sorted by start. Returns None when no recording overlaps the unit.
pub fn plan_unit(
    unit_id: &str,
    device: &str,
    from: DateTime<FixedOffset>,
    to: DateTime<FixedOffset>,
    recordings: &[Recording],
) -> Option<ClipPlan> {
    let unit_from = from.with_timezone(&Utc);
    let unit_to = to.with_timezone(&Utc);
    let mut segments: Vec<Segment> = Vec::new();
    let mut gaps = Vec::new();
    let mut clip_position = 0.0;

    for (position, recording) in recordings.iter().enumerate() {
        let cut_from = seconds_between(recording.start, unit_from).max(0.0);
        let cut_to = seconds_between(recording.start, unit_to).min(recording.span);
        if cut_to - cut_from < MIN_SEGMENT_SECONDS {
            continue;
        }
        let wall_from = plus_seconds(recording.start, cut_from);
        let wall_to = plus_seconds(recording.start, cut_to);

        if let Some(previous) = segments.last() {
            let distance = seconds_between(previous.wall_to, wall_from);
            if distance > CLOCK_RESOLUTION_SECONDS {
                gaps.push(Gap {
                    kind: GapKind::BetweenRecordings,
                    from: previous.wall_to,
                    to: wall_from,
                    seconds: distance,
                    clip_at: Some(clip_position),
                });
                clip_position += distance;
            } else if distance < -CLOCK_RESOLUTION_SECONDS {
                gaps.push(Gap {
                    kind: GapKind::Overlap,
                    from: wall_from,
                    to: previous.wall_to,
                    seconds: -distance,
                    clip_at: Some(clip_position),
                });
            }
        }
        segments.push(Segment {
            recording: position,
            from: cut_from,
            to: cut_to,
            clip_from: clip_position,
            wall_from,
            wall_to,
        });
        clip_position += cut_to - cut_from;
    }

    let first = segments.first()?;
    let last = segments.last().expect("not empty");
    let head = seconds_between(unit_from, first.wall_from);
    if head > CLOCK_RESOLUTION_SECONDS {
        gaps.insert(
            0,
            Gap {
                kind: GapKind::BeforeFirstRecording,
                from: unit_from,
                to: first.wall_from,
                seconds: head,
                clip_at: None,
            },
        );
    }
    let tail = seconds_between(last.wall_to, unit_to);
    if tail > CLOCK_RESOLUTION_SECONDS {
        gaps.push(Gap {
            kind: GapKind::AfterLastRecording,
            from: last.wall_to,
            to: unit_to,
            seconds: tail,
            clip_at: None,
        });
    }

    Some(ClipPlan {
        unit_id: unit_id.to_string(),
        device: device.to_string(),
        requested_from: from,
        requested_to: to,
        segments,
        gaps,
        duration: clip_position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::index::ContainerFormat;

    fn recording(start: &str, span: f64) -> Recording {
        Recording {
            sha256: String::new(),
            file_name: String::new(),
            key: String::new(),
            device: "HB0631".into(),
            start: start.parse().unwrap(),
            path: Default::default(),
            index: ContainerIndex {
                format: ContainerFormat::Mp4,
                brand: None,
                creation_time: None,
                movie_timescale: None,
                is_fragmented: false,
                file_size: 0,
                tracks: Vec::new(),
                problems: Vec::new(),
            },
            span,
        }
    }

    /// The session case: three chapters of 10.027 s at 10:00:00, 10:00:10
    /// and 10:00:27 local time.
    fn session() -> Vec<Recording> {
        vec![
            recording("2024-05-01T02:00:00Z", 10.026_667),
            recording("2024-05-01T02:00:10Z", 10.026_667),
            recording("2024-05-01T02:00:27Z", 10.026_667),
        ]
    }

    fn at(text: &str) -> DateTime<FixedOffset> {
        text.parse().unwrap()
    }

    #[test]
    fn first_unit_takes_chapter_one_and_four_seconds_of_two() {
        let plan = plan_unit(
            "U1",
            "HB0631",
            at("2024-05-01T10:00:00+08:00"),
            at("2024-05-01T10:00:14+08:00"),
            &session(),
        )
        .unwrap();

        assert_eq!(plan.segments.len(), 2);
        assert_eq!(plan.segments[0].recording, 0);
        assert_eq!(
            (plan.segments[0].from, plan.segments[0].to),
            (0.0, 10.026_667)
        );
        assert_eq!(plan.segments[1].recording, 1);
        assert_eq!((plan.segments[1].from, plan.segments[1].to), (0.0, 4.0));
        assert!(plan.gaps.is_empty(), "{:?}", plan.gaps);
        assert!(
            (plan.duration - 14.0).abs() < 0.14,
            "14.0 s ± 1 %: {}",
            plan.duration
        );
    }

    #[test]
    fn second_unit_keeps_the_gap_between_chapters_two_and_three() {
        let plan = plan_unit(
            "U2",
            "HB0631",
            at("2024-05-01T10:00:14+08:00"),
            at("2024-05-01T10:00:37+08:00"),
            &session(),
        )
        .unwrap();

        assert_eq!(plan.segments.len(), 2);
        assert_eq!(plan.segments[0].recording, 1);
        assert_eq!(plan.segments[0].from, 4.0);
        assert_eq!(plan.segments[1].recording, 2);
        assert_eq!((plan.segments[1].from, plan.segments[1].to), (0.0, 10.0));
        assert_eq!(plan.gaps.len(), 1);
        assert_eq!(plan.gaps[0].kind, GapKind::BetweenRecordings);
        assert!(
            (plan.gaps[0].seconds - 6.97).abs() < 0.034,
            "{}",
            plan.gaps[0].seconds
        );
        assert!(
            (plan.footage_seconds() - 16.0).abs() < 0.16,
            "{}",
            plan.footage_seconds()
        );
        assert!(
            (plan.segments[1].clip_from - 13.0).abs() < 1e-6,
            "chapter 3 starts 13 s into the clip"
        );
    }

    #[test]
    fn unit_before_any_recording_has_no_plan() {
        let plan = plan_unit(
            "U9",
            "HB0631",
            at("2024-05-01T09:00:00+08:00"),
            at("2024-05-01T09:30:00+08:00"),
            &session(),
        );
        assert!(plan.is_none());
    }

    #[test]
    fn missing_head_is_listed_outside_the_clip() {
        let plan = plan_unit(
            "U1",
            "HB0631",
            at("2024-05-01T09:59:50+08:00"),
            at("2024-05-01T10:00:05+08:00"),
            &session(),
        )
        .unwrap();
        assert_eq!(plan.gaps[0].kind, GapKind::BeforeFirstRecording);
        assert_eq!(plan.gaps[0].seconds, 10.0);
        assert_eq!(plan.gaps[0].clip_at, None);
        assert_eq!(plan.segments[0].clip_from, 0.0);
    }
}
