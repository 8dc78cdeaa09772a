//! Working-day calendar for the upload and case-file deadlines.
//!
//! The bureau's rules set two deadlines. Article 11 requires footage to be loaded into
//! the collection station within 2 working days of recording, and a later load to be
//! filed as a delay. Article 10 requires the case file to be made within 30 days of the
//! end of the enforcement action. Working days follow the schedule of the State Council of China:
//! a public holiday is a day off even on a weekday, and a make-up working day (调休) is
//! a working day even on a Saturday or Sunday. Counting Monday to Friday therefore gets
//! the upload deadline wrong around most holidays.
//!
//! [`WorkCalendar`] takes each date from the first of these sources that covers it:
//!
//! 1. the calendar file, for the years it lists ([`DaySource::File`]);
//! 2. the `chinese_holiday` crate (version 2026.0.1), for 2004-01-01 to 2026-12-25
//!    ([`DaySource::Builtin`]);
//! 3. Monday to Friday, for any other date ([`DaySource::WeekdaysOnly`]).
//!
//! A deadline that counted a weekdays-only day carries a [`Warning`], because the
//! holidays of that year are unknown and the date may be wrong.
//!
//! # Calendar file
//!
//! A TOML file with one `[[year]]` table per year:
//!
//! - `year`: the year, an integer.
//! - `holidays`: the days off, including weekdays moved into a holiday, as
//!   `"YYYY-MM-DD"` strings. Listing a Saturday or Sunday is allowed but changes nothing.
//! - `workdays`: the make-up working days, usually Saturdays or Sundays.
//!
//! Both lists are optional. Days of a listed year that are on neither list are working
//! days Monday to Friday. The file replaces the crate for every year it lists, so an
//! entry for 2026 must list all of 2026, not only the days after 2026-12-25.
//!
//! The file is rejected when a date is invalid, lies outside its `year`, or is on both
//! lists. It is also rejected when a year is listed twice or a key is unknown, so that a
//! misspelled list name cannot leave a year without its holidays. The dates below show
//! the format only. Copy the real dates from the State Council notice for the year.
//!
//! ```toml
//! [[year]]
//! year = 2027
//! holidays = ["2027-01-01", "2027-02-06", "2027-02-07", "2027-02-08"]
//! workdays = ["2027-02-14"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chinese_holiday::{chinese_holiday, DayKind, Ymd};
use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// Working days after the recording day within which footage must be loaded into the
/// collection station (Article 11 of the bureau's rules).
pub const UPLOAD_WORKING_DAYS: u32 = 2;

/// Calendar days after the end of the enforcement action within which the case file
/// must be made (Article 10 of the bureau's rules).
pub const CASE_FILE_CALENDAR_DAYS: u64 = 30;

/// First day known to `chinese_holiday` 2026.0.1. The crate panics on earlier days.
const BUILTIN_FIRST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2004, 1, 1) {
    Some(day) => day,
    None => panic!("invalid built-in first day"),
};

/// Last day known to `chinese_holiday` 2026.0.1. The crate panics on later days, which
/// may belong to the next year's New Year holiday or its make-up working days.
const BUILTIN_LAST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2026, 12, 25) {
    Some(day) => day,
    None => panic!("invalid built-in last day"),
};

/// Calendar of working days in mainland China, from the `chinese_holiday` crate and an
/// optional calendar file (format in the module documentation).
#[derive(Debug, Clone, Default)]
pub struct WorkCalendar {
    file_years: BTreeMap<i32, FileYear>,
}

/// Working-day status of one date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DayInfo {
    pub working: bool,
    pub source: DaySource,
}

/// Source of a [`DayInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DaySource {
    /// A year listed in the calendar file.
    File,
    /// The `chinese_holiday` crate.
    Builtin,
    /// No source covers the date, so Monday to Friday count as working days.
    WeekdaysOnly,
}

/// Upload deadline of one recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// Last day on which the upload is on time. The deadline is the end of this day.
    pub date: NaiveDate,
    /// Whether the holidays of every day counted were known. False whenever
    /// `warnings` is not empty.
    pub calendar_complete: bool,
    pub warnings: Vec<Warning>,
}

/// Reason why a [`Deadline`] may be wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// Days from `first_day` to `last_day` of `year` that no source covers, counted
    /// Monday to Friday.
    HolidaysUnknown {
        year: i32,
        first_day: NaiveDate,
        last_day: NaiveDate,
    },
    /// The count reached [`NaiveDate::MAX`], so the deadline was set to that date.
    DateOutOfRange { recorded_on: NaiveDate },
}

/// Error from loading a calendar file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("cannot read calendar file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("invalid calendar file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },

    #[error(
        "invalid calendar file {path}: year {year} is outside the dates this program can represent"
    )]
    YearOutOfRange { path: PathBuf, year: i32 },

    #[error("invalid calendar file {path}: year {year} is listed more than once; merge its entries into one [[year]] table")]
    DuplicateYear { path: PathBuf, year: i32 },

    #[error("invalid calendar file {path}: invalid date \"{entry}\" in {list} of year {year}; write an existing date as YYYY-MM-DD")]
    InvalidDate {
        path: PathBuf,
        year: i32,
        list: &'static str,
        entry: String,
    },

    #[error("invalid calendar file {path}: date {date} is listed in {list} of year {year}; move it to the table of year {}", date.year())]
    WrongYear {
        path: PathBuf,
        year: i32,
        list: &'static str,
        date: NaiveDate,
    },

    #[error("invalid calendar file {path}: date {date} of year {year} is listed in both holidays and workdays; keep it in one list")]
    HolidayAndWorkday {
        path: PathBuf,
        year: i32,
        date: NaiveDate,
    },
}

/// Holidays and make-up working days of one year from the calendar file.
#[derive(Debug, Clone, Default)]
struct FileYear {
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

impl FileYear {
    fn is_working(&self, date: NaiveDate) -> bool {
        if self.holidays.contains(&date) {
            false
        } else if self.workdays.contains(&date) {
            true
        } else {
            is_monday_to_friday(date)
        }
    }
}

/// Calendar file as written, before its dates are checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFileToml {
    #[serde(default)]
    year: Vec<YearToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YearToml {
    year: i32,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    workdays: Vec<String>,
}

impl WorkCalendar {
    /// Creates a calendar from the `chinese_holiday` crate alone.
    pub fn builtin() -> Self {
        Self::default()
    }

    /// Loads a calendar file and lays it over the `chinese_holiday` crate.
    ///
    /// Returns an error naming the file and the bad entry when the file cannot be read,
    /// is not valid TOML of the documented format, or breaks a rule listed there.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CalendarError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed: CalendarFileToml =
            toml::from_str(&text).map_err(|source| CalendarError::Parse {
                path: path.to_path_buf(),
                source,
            })?;

        let mut file_years = BTreeMap::new();
        for entry in parsed.year {
            let year = entry.year;
            if NaiveDate::from_ymd_opt(year, 1, 1).is_none() {
                return Err(CalendarError::YearOutOfRange {
                    path: path.to_path_buf(),
                    year,
                });
            }
            if file_years.contains_key(&year) {
                return Err(CalendarError::DuplicateYear {
                    path: path.to_path_buf(),
                    year,
                });
            }

            let holidays = parse_year_dates(path, year, "holidays", &entry.holidays)?;
            let workdays = parse_year_dates(path, year, "workdays", &entry.workdays)?;
            if let Some(date) = holidays.intersection(&workdays).next() {
                return Err(CalendarError::HolidayAndWorkday {
                    path: path.to_path_buf(),
                    year,
                    date: *date,
                });
            }

            let listed = FileYear { holidays, workdays };
            warn_if_file_differs_from_builtin(path, year, &listed);
            file_years.insert(year, listed);
        }

        tracing::info!(
            path = %path.display(),
            years = ?file_years.keys().collect::<Vec<_>>(),
            "loaded calendar file"
        );
        Ok(Self { file_years })
    }

    /// Returns whether `date` is a working day and which source decided it.
    pub fn is_working_day(&self, date: NaiveDate) -> DayInfo {
        if let Some(listed) = self.file_years.get(&date.year()) {
            return DayInfo {
                working: listed.is_working(date),
                source: DaySource::File,
            };
        }
        if let Some(kind) = builtin_day_kind(date) {
            return DayInfo {
                working: kind.is_workday(),
                source: DaySource::Builtin,
            };
        }
        DayInfo {
            working: is_monday_to_friday(date),
            source: DaySource::WeekdaysOnly,
        }
    }

    /// Computes the upload deadline of footage recorded on `recorded_on`, a date in
    /// China Standard Time: the end of the second working day after the recording day.
    ///
    /// The recording day itself never counts, even when it is a working day.
    pub fn upload_deadline(&self, recorded_on: NaiveDate) -> Deadline {
        let mut warnings = Vec::new();
        let mut day = recorded_on;
        let mut working_days_counted = 0;

        while working_days_counted < UPLOAD_WORKING_DAYS {
            let Some(next_day) = day.succ_opt() else {
                warnings.push(Warning::DateOutOfRange { recorded_on });
                return Deadline {
                    date: day,
                    calendar_complete: false,
                    warnings,
                };
            };
            day = next_day;

            let info = self.is_working_day(day);
            if info.source == DaySource::WeekdaysOnly {
                record_unknown_day(&mut warnings, day);
            }
            if info.working {
                working_days_counted += 1;
            }
        }

        Deadline {
            date: day,
            calendar_complete: warnings.is_empty(),
            warnings,
        }
    }

    /// Returns whether footage recorded on `recorded_on` and loaded on `uploaded_on`
    /// (both dates in China Standard Time) missed the upload deadline.
    ///
    /// Use [`Self::upload_deadline`] when the report must also show whether the
    /// deadline relied on weekdays only.
    pub fn is_late(&self, recorded_on: NaiveDate, uploaded_on: NaiveDate) -> bool {
        uploaded_on > self.upload_deadline(recorded_on).date
    }
}

/// Returns the last day for making the case file of an enforcement action that ended
/// on `action_ended_on`: 30 calendar days later, so 2024-05-01 gives 2024-05-31.
///
/// Saturates at [`NaiveDate::MAX`] for dates in its last 30 days.
// NOTE: a last day that falls on a holiday is not moved to the next working day, as
// procedural-law periods in China are. Whether Article 10 expects that is unconfirmed.
pub fn case_file_deadline(action_ended_on: NaiveDate) -> NaiveDate {
    action_ended_on
        .checked_add_days(Days::new(CASE_FILE_CALENDAR_DAYS))
        .unwrap_or(NaiveDate::MAX)
}

impl Warning {
    /// Renders the warning in Simplified Chinese for reports.
    pub fn message_zh(&self) -> String {
        match self {
            Warning::HolidaysUnknown {
                year,
                first_day,
                last_day,
            } => {
                let span = if first_day == last_day {
                    first_day.to_string()
                } else {
                    format!("{first_day}至{last_day}")
                };
                format!(
                    "{span}（{year}年）的法定节假日和调休安排未知，期限按周一至周五为工作日计算，可能不准确。请在日历文件中补充{year}年的全年安排。"
                )
            }
            Warning::DateOutOfRange { recorded_on } => format!(
                "录制日期{recorded_on}过于接近可表示的最晚日期，期限已设为{}。请核对录制日期。",
                NaiveDate::MAX
            ),
        }
    }

    /// Renders the warning in English for reports.
    pub fn message_en(&self) -> String {
        match self {
            Warning::HolidaysUnknown {
                year,
                first_day,
                last_day,
            } => {
                let span = if first_day == last_day {
                    format!("on {first_day}")
                } else {
                    format!("from {first_day} to {last_day}")
                };
                format!(
                    "Holidays and make-up working days are unknown {span} (year {year}), so the deadline counts Monday to Friday as working days there and may be wrong. Add all of year {year} to the calendar file."
                )
            }
            Warning::DateOutOfRange { recorded_on } => format!(
                "The recording date {recorded_on} is too close to the latest representable date, so the deadline was set to {}. Check the recording date.",
                NaiveDate::MAX
            ),
        }
    }
}

/// Parses one list of a `[[year]]` table and checks that every date lies in `year`.
fn parse_year_dates(
    path: &Path,
    year: i32,
    list: &'static str,
    entries: &[String],
) -> Result<BTreeSet<NaiveDate>, CalendarError> {
    let mut dates = BTreeSet::new();
    for entry in entries {
        let date = NaiveDate::parse_from_str(entry.trim(), "%Y-%m-%d").map_err(|_| {
            CalendarError::InvalidDate {
                path: path.to_path_buf(),
                year,
                list,
                entry: entry.clone(),
            }
        })?;
        if date.year() != year {
            return Err(CalendarError::WrongYear {
                path: path.to_path_buf(),
                year,
                list,
                date,
            });
        }
        dates.insert(date);
    }
    Ok(dates)
}

/// Logs a warning when a file year replaces crate data that disagrees with it, because
/// an entry meant to add a few days silently drops the crate's holidays for that year.
fn warn_if_file_differs_from_builtin(path: &Path, year: i32, listed: &FileYear) {
    if year < BUILTIN_FIRST_DAY.year() || year > BUILTIN_LAST_DAY.year() {
        return;
    }
    let Some(mut day) = NaiveDate::from_ymd_opt(year, 1, 1) else {
        return;
    };

    let mut differing_days = 0;
    let mut first_differing_day = None;
    while day.year() == year {
        if let Some(kind) = builtin_day_kind(day) {
            if kind.is_workday() != listed.is_working(day) {
                differing_days += 1;
                first_differing_day.get_or_insert(day);
            }
        }
        match day.succ_opt() {
            Some(next_day) => day = next_day,
            None => break,
        }
    }

    if let Some(first_differing_day) = first_differing_day {
        tracing::warn!(
            path = %path.display(),
            year,
            differing_days,
            %first_differing_day,
            "calendar file replaces the built-in calendar for this year and differs from it"
        );
    }
}

/// Returns the crate's day kind, or `None` outside the crate's range, where it panics.
fn builtin_day_kind(date: NaiveDate) -> Option<DayKind> {
    if date < BUILTIN_FIRST_DAY || date > BUILTIN_LAST_DAY {
        return None;
    }
    // The range check keeps these casts lossless and `Ymd::new` inside its own range.
    let ymd = Ymd::new(date.year() as u16, date.month() as u8, date.day() as u8);
    Some(chinese_holiday(ymd))
}

fn is_monday_to_friday(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Extends the warning of the current run of unknown days or starts a new one per year.
fn record_unknown_day(warnings: &mut Vec<Warning>, day: NaiveDate) {
    if let Some(Warning::HolidaysUnknown { year, last_day, .. }) = warnings.last_mut() {
        if *year == day.year() {
            *last_day = day;
            return;
        }
    }
    warnings.push(Warning::HolidaysUnknown {
        year: day.year(),
        first_day: day,
        last_day: day,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("valid test date")
    }

    fn write_calendar(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("create temp file");
        file.write_all(text.as_bytes()).expect("write temp file");
        file
    }

    fn load_error(text: &str) -> (CalendarError, tempfile::NamedTempFile) {
        let file = write_calendar(text);
        let error = WorkCalendar::from_file(file.path()).expect_err("file should be rejected");
        (error, file)
    }

    #[test]
    fn labour_day_2024_moves_deadline_to_may_7() {
        let calendar = WorkCalendar::builtin();

        let deadline = calendar.upload_deadline(date(2024, 5, 1));

        assert_eq!(deadline.date, date(2024, 5, 7));
        assert_ne!(deadline.date, date(2024, 5, 3), "weekdays-only result");
        assert!(deadline.calendar_complete);
        assert!(deadline.warnings.is_empty());
    }

    #[test]
    fn make_up_saturday_counts_as_working_day() {
        let calendar = WorkCalendar::builtin();
        // 2024-05-11 is a Saturday made a working day for the Labour Day holiday.
        assert_eq!(
            calendar.is_working_day(date(2024, 5, 11)),
            DayInfo {
                working: true,
                source: DaySource::Builtin
            }
        );

        let deadline = calendar.upload_deadline(date(2024, 5, 9));

        assert_eq!(deadline.date, date(2024, 5, 11));
        assert!(deadline.calendar_complete);
    }

    #[test]
    fn make_up_sunday_counts_as_working_day() {
        let calendar = WorkCalendar::builtin();
        // 2025-01-26 is a Sunday made a working day for the Spring Festival holiday.
        assert!(calendar.is_working_day(date(2025, 1, 26)).working);

        let deadline = calendar.upload_deadline(date(2025, 1, 24));

        assert_eq!(deadline.date, date(2025, 1, 27));
        assert!(deadline.warnings.is_empty());
    }

    #[test]
    fn ordinary_week_skips_weekend() {
        let calendar = WorkCalendar::builtin();

        let deadline = calendar.upload_deadline(date(2024, 6, 13));

        assert_eq!(deadline.date, date(2024, 6, 17));
        assert!(deadline.calendar_complete);
        assert!(deadline.warnings.is_empty());
    }

    #[test]
    fn unknown_year_counts_weekdays_with_warning() {
        let calendar = WorkCalendar::builtin();

        let deadline = calendar.upload_deadline(date(2027, 1, 4));

        assert_eq!(deadline.date, date(2027, 1, 6));
        assert!(!deadline.calendar_complete);
        assert_eq!(
            deadline.warnings,
            vec![Warning::HolidaysUnknown {
                year: 2027,
                first_day: date(2027, 1, 5),
                last_day: date(2027, 1, 6),
            }]
        );
        let message_en = deadline.warnings[0].message_en();
        assert!(message_en.contains("year 2027"), "{message_en}");
        assert!(
            message_en.contains("from 2027-01-05 to 2027-01-06"),
            "{message_en}"
        );
        let message_zh = deadline.warnings[0].message_zh();
        assert!(message_zh.contains("2027年"), "{message_zh}");
        assert!(
            message_zh.contains("2027-01-05至2027-01-06"),
            "{message_zh}"
        );
    }

    #[test]
    fn file_holiday_moves_2027_deadline() {
        let file = write_calendar(
            r#"
            [[year]]
            year = 2027
            holidays = ["2027-01-01", "2027-01-05"]
            "#,
        );
        let calendar = WorkCalendar::from_file(file.path()).expect("valid calendar file");

        let deadline = calendar.upload_deadline(date(2027, 1, 4));

        assert_eq!(deadline.date, date(2027, 1, 7));
        assert!(deadline.calendar_complete);
        assert!(deadline.warnings.is_empty());
        assert_eq!(
            calendar.is_working_day(date(2027, 1, 5)),
            DayInfo {
                working: false,
                source: DaySource::File
            }
        );
    }

    #[test]
    fn file_year_replaces_builtin_year() {
        let file = write_calendar(
            r#"
            [[year]]
            year = 2024
            holidays = ["2024-05-02"]
            workdays = []
            "#,
        );
        let calendar = WorkCalendar::from_file(file.path()).expect("valid calendar file");

        // The crate has 2024-05-01 as a holiday, but the file year does not list it.
        assert_eq!(
            calendar.is_working_day(date(2024, 5, 1)),
            DayInfo {
                working: true,
                source: DaySource::File
            }
        );
        // 2024-05-03 (Fri) and 2024-05-06 (Mon) are the two working days.
        assert_eq!(
            calendar.upload_deadline(date(2024, 5, 1)).date,
            date(2024, 5, 6)
        );
        // Years not in the file still come from the crate.
        assert_eq!(
            calendar.is_working_day(date(2025, 1, 1)).source,
            DaySource::Builtin
        );
    }

    #[test]
    fn file_workday_counts_on_weekend() {
        let file = write_calendar(
            r#"
            [[year]]
            year = 2027
            workdays = ["2027-01-09"]
            "#,
        );
        let calendar = WorkCalendar::from_file(file.path()).expect("valid calendar file");

        // Recorded Thursday 2027-01-07: Friday 8th, then the make-up Saturday 9th.
        let deadline = calendar.upload_deadline(date(2027, 1, 7));

        assert_eq!(deadline.date, date(2027, 1, 9));
        assert!(deadline.calendar_complete);
    }

    #[test]
    fn deadline_across_builtin_end_warns() {
        let calendar = WorkCalendar::builtin();

        // Friday 2026-12-25 is the crate's last day, so the weekend after is unknown.
        let deadline = calendar.upload_deadline(date(2026, 12, 24));

        assert_eq!(deadline.date, date(2026, 12, 28));
        assert!(!deadline.calendar_complete);
        assert_eq!(
            deadline.warnings,
            vec![Warning::HolidaysUnknown {
                year: 2026,
                first_day: date(2026, 12, 26),
                last_day: date(2026, 12, 28),
            }]
        );
    }

    #[test]
    fn deadline_across_year_end_warns_per_year() {
        let calendar = WorkCalendar::builtin();

        // Thursday 2026-12-31 and Friday 2027-01-01 both count, although New Year's
        // Day is a public holiday every year, because neither source covers them.
        let deadline = calendar.upload_deadline(date(2026, 12, 30));

        assert_eq!(deadline.date, date(2027, 1, 1));
        assert_eq!(
            deadline.warnings,
            vec![
                Warning::HolidaysUnknown {
                    year: 2026,
                    first_day: date(2026, 12, 31),
                    last_day: date(2026, 12, 31),
                },
                Warning::HolidaysUnknown {
                    year: 2027,
                    first_day: date(2027, 1, 1),
                    last_day: date(2027, 1, 1),
                },
            ]
        );
        assert_eq!(
            deadline.warnings[0].message_en(),
            "Holidays and make-up working days are unknown on 2026-12-31 (year 2026), so the deadline counts Monday to Friday as working days there and may be wrong. Add all of year 2026 to the calendar file."
        );
    }

    #[test]
    fn day_sources_follow_builtin_range() {
        let calendar = WorkCalendar::builtin();

        assert_eq!(
            calendar.is_working_day(date(2003, 12, 31)),
            DayInfo {
                working: true,
                source: DaySource::WeekdaysOnly
            }
        );
        assert_eq!(
            calendar.is_working_day(date(2004, 1, 1)),
            DayInfo {
                working: false,
                source: DaySource::Builtin
            }
        );
        assert_eq!(
            calendar.is_working_day(date(2026, 12, 25)),
            DayInfo {
                working: true,
                source: DaySource::Builtin
            }
        );
        assert_eq!(
            calendar.is_working_day(date(2026, 12, 26)),
            DayInfo {
                working: false,
                source: DaySource::WeekdaysOnly
            }
        );
    }

    #[test]
    fn extreme_dates_do_not_panic() {
        let calendar = WorkCalendar::builtin();
        let edges = [
            (NaiveDate::MIN, 0),
            (date(2003, 12, 20), 30),
            (date(2026, 12, 10), 40),
            (date(2127, 12, 20), 30),
            (NaiveDate::MAX - Days::new(10), 9),
        ];

        for (start, extra_days) in edges {
            let mut day = start;
            for _ in 0..=extra_days {
                let _ = calendar.is_working_day(day);
                let deadline = calendar.upload_deadline(day);
                assert!(deadline.date > day, "deadline of {day}");
                let _ = calendar.is_late(day, deadline.date);
                let _ = case_file_deadline(day);
                day = day.succ_opt().unwrap_or(day);
            }
        }

        let deadline = calendar.upload_deadline(NaiveDate::MAX);
        assert_eq!(deadline.date, NaiveDate::MAX);
        assert!(!deadline.calendar_complete);
        assert_eq!(
            deadline.warnings,
            vec![Warning::DateOutOfRange {
                recorded_on: NaiveDate::MAX
            }]
        );
    }

    #[test]
    fn is_late_only_after_deadline_day() {
        let calendar = WorkCalendar::builtin();
        let recorded_on = date(2024, 5, 1);

        assert!(!calendar.is_late(recorded_on, date(2024, 5, 1)));
        assert!(!calendar.is_late(recorded_on, date(2024, 5, 7)));
        assert!(calendar.is_late(recorded_on, date(2024, 5, 8)));
    }

    #[test]
    fn case_file_deadline_is_30_calendar_days() {
        assert_eq!(case_file_deadline(date(2024, 5, 1)), date(2024, 5, 31));
        assert_eq!(case_file_deadline(date(2024, 12, 15)), date(2025, 1, 14));
        assert_eq!(case_file_deadline(date(2024, 2, 1)), date(2024, 3, 2));
        assert_eq!(case_file_deadline(NaiveDate::MAX), NaiveDate::MAX);
    }

    #[test]
    fn deadline_serializes_to_json() {
        let deadline = WorkCalendar::builtin().upload_deadline(date(2027, 1, 4));

        let json = serde_json::to_value(&deadline).expect("serialize deadline");

        assert_eq!(
            json,
            serde_json::json!({
                "date": "2027-01-06",
                "calendar_complete": false,
                "warnings": [{
                    "kind": "holidays_unknown",
                    "year": 2027,
                    "first_day": "2027-01-05",
                    "last_day": "2027-01-06",
                }],
            })
        );
        let day = WorkCalendar::builtin().is_working_day(date(2027, 1, 4));
        assert_eq!(
            serde_json::to_value(day).expect("serialize day"),
            serde_json::json!({"working": true, "source": "weekdays_only"})
        );
    }

    #[test]
    fn calendar_file_rejects_invalid_date() {
        let (error, file) = load_error(
            r#"
            [[year]]
            year = 2027
            holidays = ["2027-01-01", "2027-02-30"]
            "#,
        );

        match &error {
            CalendarError::InvalidDate {
                path,
                year,
                list,
                entry,
            } => {
                assert_eq!(path, file.path());
                assert_eq!(*year, 2027);
                assert_eq!(*list, "holidays");
                assert_eq!(entry, "2027-02-30");
            }
            other => panic!("expected InvalidDate, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("\"2027-02-30\""), "{message}");
        assert!(message.contains("year 2027"), "{message}");
    }

    #[test]
    fn calendar_file_rejects_date_in_wrong_year() {
        let (error, file) = load_error(
            r#"
            [[year]]
            year = 2027
            workdays = ["2028-01-08"]
            "#,
        );

        match &error {
            CalendarError::WrongYear {
                path,
                year,
                list,
                date: listed,
            } => {
                assert_eq!(path, file.path());
                assert_eq!(*year, 2027);
                assert_eq!(*list, "workdays");
                assert_eq!(*listed, date(2028, 1, 8));
            }
            other => panic!("expected WrongYear, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains("2028-01-08"), "{message}");
        assert!(message.contains("table of year 2028"), "{message}");
    }

    #[test]
    fn calendar_file_rejects_holiday_that_is_workday() {
        let (error, file) = load_error(
            r#"
            [[year]]
            year = 2027
            holidays = ["2027-02-06", "2027-02-14"]
            workdays = ["2027-02-14"]
            "#,
        );

        match &error {
            CalendarError::HolidayAndWorkday {
                path,
                year,
                date: listed,
            } => {
                assert_eq!(path, file.path());
                assert_eq!(*year, 2027);
                assert_eq!(*listed, date(2027, 2, 14));
            }
            other => panic!("expected HolidayAndWorkday, got {other:?}"),
        }
        assert!(error.to_string().contains("2027-02-14"));
    }

    #[test]
    fn calendar_file_rejects_duplicate_year() {
        let (error, _file) = load_error(
            r#"
            [[year]]
            year = 2027
            holidays = ["2027-01-01"]

            [[year]]
            year = 2027
            workdays = ["2027-02-14"]
            "#,
        );

        assert!(
            matches!(error, CalendarError::DuplicateYear { year: 2027, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn calendar_file_rejects_misspelled_list() {
        let (error, _file) = load_error(
            r#"
            [[year]]
            year = 2027
            holiday = ["2027-01-01"]
            "#,
        );

        assert!(matches!(error, CalendarError::Parse { .. }), "{error:?}");
        assert!(error.to_string().contains("holiday"), "{error}");
    }

    #[test]
    fn calendar_file_rejects_unparsable_toml() {
        let (error, file) = load_error("[[year]\nyear = 2027\n");

        assert!(matches!(error, CalendarError::Parse { .. }), "{error:?}");
        assert!(error
            .to_string()
            .contains(&file.path().display().to_string()));
    }

    #[test]
    fn calendar_file_rejects_unrepresentable_year() {
        let (error, _file) = load_error("[[year]]\nyear = 2000000000\n");

        assert!(
            matches!(
                error,
                CalendarError::YearOutOfRange {
                    year: 2_000_000_000,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn missing_calendar_file_is_read_error() {
        let directory = tempfile::tempdir().expect("create temp dir");
        let path = directory.path().join("missing.toml");

        let error = WorkCalendar::from_file(&path).expect_err("missing file");

        assert!(matches!(error, CalendarError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.toml"), "{error}");
    }
}
