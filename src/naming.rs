//! Device, officer, start time and sequence from a recording's file name.
//!
//! Cameras encode what they know in the file name; the container often
//! holds nothing but an unset clock. A pattern is a regular expression with
//! named groups (`device`, `officer`, `time`, `seq`, `chapter`, `kind`) and a
//! `chrono` format for the `time` group, which is local time in the
//! configured zone. Operators add their own patterns in `config.toml`:
//!
//! ```toml
//! [[name_patterns]]
//! name = "station-x"
//! regex = '^(?P<device>[A-Z0-9]+)-(?P<time>\d{14})\.mp4$'
//! time_format = "%Y%m%d%H%M%S"
//! ```

use chrono::{NaiveDateTime, TimeZone};
use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamePattern {
    pub name: String,
    pub regex: String,
    #[serde(default)]
    pub time_format: Option<String>,
}

/// What a file name told about its recording.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NameInfo {
    pub pattern: String,
    pub device: Option<String>,
    pub officer: Option<String>,
    /// Local start time as written in the name.
    pub local_start: Option<NaiveDateTime>,
    /// The same instant in UTC, from the configured time zone.
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    pub sequence: Option<u32>,
    /// GoPro chapter number: `GX01…` is the first chapter, `GX02…` the second.
    pub chapter: Option<u32>,
    /// Recording kind where the camera writes one (the 70mai dashcam's
    /// `NO` normal, `EV` event, `PA` parking).
    pub kind: Option<String>,
}

/// Presets for common cameras, tried after the user's own patterns.
pub fn presets() -> Vec<NamePattern> {
    vec![
        NamePattern {
            name: "body-camera".into(),
            regex: r"^(?P<device>[A-Za-z0-9]+)_(?P<officer>[A-Za-z0-9]+)_(?P<time>\d{14})_(?P<seq>\d+)\.[A-Za-z0-9]+$".into(),
            time_format: Some("%Y%m%d%H%M%S".into()),
        },
        NamePattern {
            name: "gopro".into(),
            regex: r"^(?P<kind>G[XH])(?P<chapter>\d{2})(?P<seq>\d{4})\.(?i:mp4|lrv|thm)$".into(),
            time_format: None,
        },
        NamePattern {
            name: "70mai".into(),
            regex: r"^(?P<kind>[A-Z]{2})(?P<time>\d{8}-\d{6})-(?P<seq>\d+)\.(?i:mp4|ts)$".into(),
            time_format: Some("%Y%m%d-%H%M%S".into()),
        },
    ]
}

impl NamePattern {
    /// Compiles the pattern, returning a message naming the pattern when it is invalid.
    pub fn compile(&self) -> Result<Regex, String> {
        let regex = Regex::new(&self.regex)
            .map_err(|e| format!("name pattern {:?}: invalid regex: {e}", self.name))?;
        let has_time = regex.capture_names().flatten().any(|n| n == "time");
        if has_time && self.time_format.is_none() {
            return Err(format!(
                "name pattern {:?}: a `time` group needs a `time_format`",
                self.name
            ));
        }
        Ok(regex)
    }
}

/// Matches a file name against the user's patterns, then the presets.
pub fn parse_file_name(
    file_name: &str,
    user_patterns: &[NamePattern],
    timezone: chrono_tz::Tz,
) -> Option<NameInfo> {
    let presets = presets();
    for pattern in user_patterns.iter().chain(presets.iter()) {
        let Ok(regex) = pattern.compile() else {
            continue;
        };
        let Some(captures) = regex.captures(file_name) else {
            continue;
        };
        let text = |group: &str| captures.name(group).map(|m| m.as_str().to_string());
        let local_start = match (text("time"), &pattern.time_format) {
            (Some(time), Some(format)) => NaiveDateTime::parse_from_str(&time, format).ok(),
            _ => None,
        };
        let start = local_start.and_then(|local| {
            timezone
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.with_timezone(&chrono::Utc))
        });
        return Some(NameInfo {
            pattern: pattern.name.clone(),
            device: text("device"),
            officer: text("officer"),
            local_start,
            start,
            sequence: text("seq").and_then(|s| s.parse().ok()),
            chapter: text("chapter").and_then(|s| s.parse().ok()),
            kind: text("kind"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHANGHAI: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn body_camera_name_gives_device_officer_and_utc_start() {
        let info = parse_file_name("HB0631_130631001_20240501100010_0002.MP4", &[], SHANGHAI)
            .expect("body-camera preset matches");
        assert_eq!(info.pattern, "body-camera");
        assert_eq!(info.device.as_deref(), Some("HB0631"));
        assert_eq!(info.officer.as_deref(), Some("130631001"));
        assert_eq!(info.sequence, Some(2));
        assert_eq!(
            info.start.unwrap().to_rfc3339(),
            "2024-05-01T02:00:10+00:00"
        );
    }

    #[test]
    fn gopro_chapter_and_file_number_are_read() {
        let info = parse_file_name("GX020123.MP4", &[], SHANGHAI).expect("gopro preset");
        assert_eq!(info.pattern, "gopro");
        assert_eq!(info.chapter, Some(2));
        assert_eq!(info.sequence, Some(123));
        assert_eq!(info.kind.as_deref(), Some("GX"));
        assert_eq!(info.start, None);
    }

    #[test]
    fn dashcam_name_gives_kind_and_local_start() {
        let info = parse_file_name("NO20191130-122056-000140.MP4", &[], SHANGHAI).expect("70mai");
        assert_eq!(info.pattern, "70mai");
        assert_eq!(info.kind.as_deref(), Some("NO"));
        assert_eq!(info.sequence, Some(140));
        assert_eq!(
            info.local_start.unwrap().to_string(),
            "2019-11-30 12:20:56"
        );
    }

    #[test]
    fn user_pattern_wins_over_presets() {
        let user = NamePattern {
            name: "station".into(),
            regex: r"^(?P<device>[A-Z0-9]+)_(?P<officer>\d+)_(?P<time>\d{14})_(?P<seq>\d+)\.MP4$"
                .into(),
            time_format: Some("%Y%m%d%H%M%S".into()),
        };
        let info = parse_file_name("HB0631_130631001_20240501100010_0002.MP4", &[user], SHANGHAI)
            .unwrap();
        assert_eq!(info.pattern, "station");
    }

    #[test]
    fn impossible_date_in_name_gives_no_start() {
        let info =
            parse_file_name("HB0631_1_20241340100010_0002.MP4", &[], SHANGHAI).unwrap();
        assert_eq!(info.local_start, None);
        assert_eq!(info.device.as_deref(), Some("HB0631"));
    }

    #[test]
    fn unknown_name_matches_nothing() {
        assert!(parse_file_name("holiday.mov", &[], SHANGHAI).is_none());
    }
}
