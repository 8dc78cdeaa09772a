//! Sessions: the chapter files of one device, ordered, and what lies
//! between them.
//!
//! Cameras split a long recording into chapters. Each chapter is placed on
//! the wall clock at its recording start (the container's creation time,
//! else the time in its file name) plus its media times. Both sources
//! have a resolution of one second, so two chapters whose boundary differs
//! by no more than that are continuous: the clocks cannot tell a gap from
//! an overlap that small. Chapters whose start is only the upload time
//! cannot be placed and are listed apart.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::probe::StartSource;

use super::file::Hole;
use super::justify::Justification;

/// Resolution of MP4 creation times and of times in file names: whole
/// seconds.
pub const CLOCK_RESOLUTION_SECONDS: f64 = 1.0;

/// Chapters of one device further apart than this belong to different
/// sessions: a pause of half an hour is a new action, not a stop within
/// one. Gaps inside a unit's range are reported by unit coverage either way.
pub const SESSION_BREAK_SECONDS: f64 = 30.0 * 60.0;

/// One recording placed on the wall clock.
#[derive(Clone, Debug, Serialize)]
pub struct Chapter {
    pub path: String,
    pub file_name: String,
    pub sha256: Option<String>,
    /// Device from the file name; the file name itself when there is none,
    /// so that unrelated files never join one session.
    pub device: String,
    pub sequence: Option<u32>,
    /// Wall-clock time of media time zero.
    pub start: DateTime<Utc>,
    pub start_source: StartSource,
    /// Wall-clock times of the first and last footage.
    pub begin: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Stretches without footage inside the file, on the wall clock.
    pub holes: Vec<WallGap>,
    pub uploaded_at: DateTime<Utc>,
}

/// A stretch of wall-clock time without footage.
#[derive(Clone, Debug, Serialize)]
pub struct WallGap {
    /// Id an operator types to justify it: `DEVICE@LOCAL-START`.
    pub gap_id: String,
    pub device: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub duration: f64,
    /// `in_file` or `between_chapters`.
    pub kind: String,
    /// The recording whose footage stops; for a gap between chapters, the
    /// one before it.
    pub sha256: Option<String>,
    pub justification: Option<Justification>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Boundary {
    pub after: String,
    pub before: String,
    /// `continuous`, `gap` or `overlap`.
    pub kind: String,
    /// Seconds from the end of `after` to the start of `before`: positive
    /// for a gap, negative for an overlap.
    pub duration: f64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Clock resolution within which the boundary counts as continuous.
    pub resolution: f64,
    pub gap_id: Option<String>,
    pub justification: Option<Justification>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Session {
    /// `DEVICE@LOCAL-START` of the first chapter.
    pub session_id: String,
    pub device: String,
    /// File names in recording order.
    pub files: Vec<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub boundaries: Vec<Boundary>,
    #[serde(skip)]
    pub chapters: Vec<Chapter>,
}

impl Chapter {
    /// Places a recording on the wall clock; returns None when its start is
    /// only the upload time or it has no footage.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        path: &str,
        file_name: &str,
        sha256: Option<String>,
        device: Option<&str>,
        sequence: Option<u32>,
        start: DateTime<Utc>,
        start_source: StartSource,
        media: (Option<f64>, Option<f64>),
        holes: &[Hole],
        uploaded_at: DateTime<Utc>,
        timezone: chrono_tz::Tz,
    ) -> Option<Chapter> {
        if start_source == StartSource::UploadTime {
            return None;
        }
        let (Some(media_start), Some(media_end)) = media else {
            return None;
        };
        let device = device.unwrap_or(file_name).to_string();
        let holes = holes
            .iter()
            .map(|hole| {
                let from = start + seconds(hole.from);
                WallGap {
                    gap_id: gap_id(&device, from, timezone),
                    device: device.clone(),
                    from,
                    to: start + seconds(hole.to),
                    duration: hole.to - hole.from,
                    kind: "in_file".into(),
                    sha256: sha256.clone(),
                    justification: None,
                }
            })
            .collect();
        Some(Chapter {
            path: path.to_string(),
            file_name: file_name.to_string(),
            sha256,
            device,
            sequence,
            start,
            start_source,
            begin: start + seconds(media_start),
            end: start + seconds(media_end),
            holes,
            uploaded_at,
        })
    }
}

/// Groups chapters by device, orders them and judges each boundary.
pub fn build_sessions(mut chapters: Vec<Chapter>, timezone: chrono_tz::Tz) -> Vec<Session> {
    chapters.sort_by(|a, b| {
        (a.device.as_str(), a.begin, a.sequence, a.file_name.as_str()).cmp(&(
            b.device.as_str(),
            b.begin,
            b.sequence,
            b.file_name.as_str(),
        ))
    });

    let mut sessions: Vec<Session> = Vec::new();
    for chapter in chapters {
        let joins = sessions.last().is_some_and(|s| {
            s.device == chapter.device
                && span_seconds(s.end, chapter.begin) <= SESSION_BREAK_SECONDS
        });
        if joins {
            let session = sessions.last_mut().expect("checked above");
            let previous = session.chapters.last().expect("a session has a chapter");
            session
                .boundaries
                .push(judge_boundary(previous, &chapter, timezone));
            session.end = session.end.max(chapter.end);
            session.files.push(chapter.file_name.clone());
            session.chapters.push(chapter);
        } else {
            sessions.push(Session {
                session_id: gap_id(&chapter.device, chapter.begin, timezone),
                device: chapter.device.clone(),
                files: vec![chapter.file_name.clone()],
                start: chapter.begin,
                end: chapter.end,
                boundaries: Vec::new(),
                chapters: vec![chapter],
            });
        }
    }
    sessions
}

fn judge_boundary(after: &Chapter, before: &Chapter, timezone: chrono_tz::Tz) -> Boundary {
    let duration = span_seconds(after.end, before.begin);
    let resolution = CLOCK_RESOLUTION_SECONDS;
    let kind = if duration.abs() <= resolution {
        "continuous"
    } else if duration > 0.0 {
        "gap"
    } else {
        "overlap"
    };
    Boundary {
        after: after.file_name.clone(),
        before: before.file_name.clone(),
        kind: kind.into(),
        duration,
        from: after.end,
        to: before.begin,
        resolution,
        gap_id: (kind == "gap").then(|| gap_id(&after.device, after.end, timezone)),
        justification: None,
    }
}

impl Session {
    /// Every stretch without footage: gaps inside chapters and between them.
    pub fn gaps(&self) -> Vec<WallGap> {
        let mut gaps: Vec<WallGap> = self
            .chapters
            .iter()
            .flat_map(|c| c.holes.iter().cloned())
            .collect();
        for (boundary, after) in self.boundaries.iter().zip(&self.chapters) {
            if let Some(id) = &boundary.gap_id {
                gaps.push(WallGap {
                    gap_id: id.clone(),
                    device: self.device.clone(),
                    from: boundary.from,
                    to: boundary.to,
                    duration: boundary.duration,
                    kind: "between_chapters".into(),
                    sha256: after.sha256.clone(),
                    justification: boundary.justification.clone(),
                });
            }
        }
        gaps.sort_by_key(|g| g.from);
        gaps
    }

    /// Footage on the wall clock, merged across continuous boundaries and
    /// with in-file gaps cut out.
    pub fn footage(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for (position, chapter) in self.chapters.iter().enumerate() {
            let mut begin = chapter.begin;
            if position > 0 && self.boundaries[position - 1].kind == "continuous" {
                if let Some(last) = spans.last() {
                    begin = begin.min(last.1);
                }
            }
            let mut cursor = begin;
            for hole in &chapter.holes {
                if hole.from > cursor {
                    spans.push((cursor, hole.from));
                }
                cursor = cursor.max(hole.to);
            }
            if chapter.end > cursor {
                spans.push((cursor, chapter.end));
            }
        }
        spans.sort();
        let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.0 <= last.1 => last.1 = last.1.max(span.1),
                _ => merged.push(span),
            }
        }
        merged
    }
}

/// The id of a gap or session: the device and the local wall-clock second
/// where it starts, such as `HB0631@2024-05-01T10:00:20`.
pub fn gap_id(device: &str, at: DateTime<Utc>, timezone: chrono_tz::Tz) -> String {
    format!(
        "{device}@{}",
        at.with_timezone(&timezone).format("%Y-%m-%dT%H:%M:%S")
    )
}

pub fn seconds(value: f64) -> Duration {
    Duration::microseconds((value * 1e6).round() as i64)
}

pub fn span_seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}
