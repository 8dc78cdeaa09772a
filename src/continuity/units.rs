//! Unit coverage: how much of each inspected unit's time a device filmed.
//!
//! Article 9 asks for continuous footage of each unit from the start of
//! the action to its end. For each unit of the case record and each device
//! (the unit's own list, else every device of the batch), the unit's range
//! `[from, to)` is laid over the device's footage: the seconds covered, and
//! every stretch without footage, named `head` (before the first footage),
//! `tail` (after the last) or `gap`. A stretch shorter than the clock
//! resolution at the head or tail is not reported, because the unit's times
//! and the cameras' clocks are both kept to the second.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::case::CaseRecord;

use super::justify::Justification;
use super::session::{gap_id, span_seconds, Session, WallGap, CLOCK_RESOLUTION_SECONDS};

#[derive(Clone, Debug, Serialize)]
pub struct UnitGap {
    pub gap_id: String,
    /// `head`, `tail`, `gap` or `no_footage`.
    pub kind: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub duration: f64,
    pub justified: bool,
    pub justification: Option<Justification>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UnitCoverage {
    pub unit_id: String,
    pub name: Option<String>,
    /// None when no device filmed anything in the batch.
    pub device: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Length of the unit's range in seconds.
    pub length: f64,
    /// Seconds of the range with footage.
    pub covered: f64,
    /// Files with footage inside the range.
    pub files: Vec<String>,
    pub gaps: Vec<UnitGap>,
    pub missing_head: f64,
    pub missing_tail: f64,
    pub justified_gaps: usize,
    pub unexplained_gaps: usize,
    /// True when the whole range is covered or every stretch without
    /// footage is justified.
    pub complete: bool,
}

/// Measures every unit of the case against the sessions' footage.
pub fn cover_units(
    case: &CaseRecord,
    sessions: &[Session],
    justifications: &HashMap<String, Justification>,
    timezone: chrono_tz::Tz,
) -> Vec<UnitCoverage> {
    // A unit that names no devices is measured on every device whose
    // footage overlaps the case's time span: a camera that recorded only at
    // other times filmed another action, and counting it would report a
    // unit "without footage" on a device that never went there.
    let case_from = case
        .units
        .iter()
        .map(|u| u.from.with_timezone(&Utc))
        .chain(case.started_at.map(|t| t.with_timezone(&Utc)))
        .min();
    let case_to = case
        .units
        .iter()
        .map(|u| u.to.with_timezone(&Utc))
        .chain(std::iter::once(case.ended_at.with_timezone(&Utc)))
        .max();
    let all_devices: BTreeSet<&str> = sessions
        .iter()
        .filter(|s| match (case_from, case_to) {
            (Some(from), Some(to)) => s.start < to && s.end > from,
            _ => true,
        })
        .map(|s| s.device.as_str())
        .collect();
    let mut coverage = Vec::new();
    for unit in &case.units {
        let from = unit.from.with_timezone(&Utc);
        let to = unit.to.with_timezone(&Utc);
        let devices: Vec<&str> = if unit.devices.is_empty() {
            all_devices.iter().copied().collect()
        } else {
            unit.devices.iter().map(String::as_str).collect()
        };
        if devices.is_empty() {
            let mut entry = measure(
                unit.unit_id.clone(),
                unit.name.clone(),
                None,
                from,
                to,
                &[],
                justifications,
                timezone,
            );
            entry.files.clear();
            coverage.push(entry);
            continue;
        }
        for device in devices {
            let of_device: Vec<&Session> = sessions.iter().filter(|s| s.device == device).collect();
            coverage.push(measure(
                unit.unit_id.clone(),
                unit.name.clone(),
                Some(device),
                from,
                to,
                &of_device,
                justifications,
                timezone,
            ));
        }
    }
    coverage
}

#[allow(clippy::too_many_arguments)]
fn measure(
    unit_id: String,
    name: Option<String>,
    device: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sessions: &[&Session],
    justifications: &HashMap<String, Justification>,
    timezone: chrono_tz::Tz,
) -> UnitCoverage {
    let mut footage: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sessions.iter().flat_map(|s| s.footage()).collect();
    footage.sort();
    let known_gaps: Vec<WallGap> = sessions.iter().flat_map(|s| s.gaps()).collect();
    let files: Vec<String> = sessions
        .iter()
        .flat_map(|s| s.chapters.iter())
        .filter(|c| c.begin < to && c.end > from)
        .map(|c| c.file_name.clone())
        .collect();

    let mut covered = 0.0;
    let mut uncovered = Vec::new();
    let mut cursor = from;
    for (begin, end) in footage {
        let (begin, end) = (begin.max(from), end.min(to));
        if begin >= end {
            continue;
        }
        if begin > cursor {
            uncovered.push((cursor, begin));
        }
        covered += span_seconds(begin.max(cursor), end).max(0.0);
        cursor = cursor.max(end);
    }
    if cursor < to {
        uncovered.push((cursor, to));
    }

    let device_name = device.unwrap_or("-");
    let mut gaps = Vec::new();
    let (mut missing_head, mut missing_tail) = (0.0, 0.0);
    let no_footage = covered == 0.0;
    for (gap_from, gap_to) in uncovered {
        let duration = span_seconds(gap_from, gap_to);
        let kind = if no_footage {
            "no_footage"
        } else if gap_from == from {
            "head"
        } else if gap_to == to {
            "tail"
        } else {
            "gap"
        };
        if matches!(kind, "head" | "tail") && duration <= CLOCK_RESOLUTION_SECONDS {
            continue;
        }
        match kind {
            "head" => missing_head = duration,
            "tail" => missing_tail = duration,
            _ => {}
        }
        // A stretch that lies in a known gap of the sessions carries that
        // gap's id, so one justification covers every unit it touches.
        let id = known_gaps
            .iter()
            .find(|g| g.from < gap_to && g.to > gap_from)
            .map(|g| g.gap_id.clone())
            .unwrap_or_else(|| gap_id(device_name, gap_from, timezone));
        let justification = justifications.get(&id).cloned();
        gaps.push(UnitGap {
            gap_id: id,
            kind: kind.into(),
            from: gap_from,
            to: gap_to,
            duration,
            justified: justification.is_some(),
            justification,
        });
    }

    let justified_gaps = gaps.iter().filter(|g| g.justified).count();
    UnitCoverage {
        unit_id,
        name,
        device: device.map(str::to_string),
        from,
        to,
        length: span_seconds(from, to),
        covered,
        files,
        unexplained_gaps: gaps.len() - justified_gaps,
        justified_gaps,
        complete: gaps.len() == justified_gaps,
        gaps,
        missing_head,
        missing_tail,
    }
}
