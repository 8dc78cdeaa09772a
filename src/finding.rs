//! Findings: what a stage found wrong or noteworthy in a recording.
//!
//! Every stage reports in this one shape so that reports, the catalog and
//! the timeline picture read them alike. Times are media seconds of the
//! track (`at`) and, where the recording's start is known, wall-clock time.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::FindingRow;
use crate::i18n::Text;

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `gap`, `backward_jump`, `timestamp_reset`, `dropped_frames`,
    /// `truncated`, `not_finalized`, `decode_error`, `av_mismatch`,
    /// `unreliable_clock`, `unreadable`, `late_upload`, `other_container`.
    pub kind: String,
    /// Index of the track in the file, when the finding belongs to one.
    pub track: Option<usize>,
    /// Media time in seconds where it happens.
    pub at: Option<f64>,
    /// Length in seconds (negative for a backward jump).
    pub duration: Option<f64>,
    /// Wall-clock time of `at`, when the recording's start is known.
    pub wall_clock: Option<DateTime<Utc>>,
    /// Kind-specific numbers (counts, raw timestamps, sizes).
    pub detail: serde_json::Value,
    pub message: Text,
}

impl Finding {
    pub fn new(kind: &str, message: Text) -> Finding {
        Finding {
            kind: kind.to_string(),
            track: None,
            at: None,
            duration: None,
            wall_clock: None,
            detail: serde_json::Value::Null,
            message,
        }
    }

    pub fn on_track(mut self, track: usize) -> Finding {
        self.track = Some(track);
        self
    }

    pub fn at(mut self, seconds: f64) -> Finding {
        self.at = Some(seconds);
        self
    }

    pub fn lasting(mut self, seconds: f64) -> Finding {
        self.duration = Some(seconds);
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Finding {
        self.detail = detail;
        self
    }

    /// The catalog row for this finding, under the stage that found it.
    pub fn to_row(&self, stage: &str) -> FindingRow {
        FindingRow {
            stage: stage.to_string(),
            kind: self.kind.clone(),
            track: self.track.map(|t| t as i64),
            at_seconds: self.at,
            detail_json: serde_json::to_string(self).expect("a finding always serializes"),
        }
    }
}
