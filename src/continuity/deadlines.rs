//! Deadlines: the upload deadline of each recording and the case-file
//! deadline of the case.
//!
//! Article 11 gives two working days after the recording day to load the
//! footage into the station, on the Chinese calendar with its holidays and
//! make-up working days (`crate::calendar`); a later load is late unless a
//! delay filing explains it. Article 10 gives 30 days after the end of the
//! action for the case file. Dates are local dates in the configured zone.
//! A calendar file that cannot be read does not stop the report: the
//! built-in calendar is used and the report says why.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::calendar::{case_file_deadline, WorkCalendar};
use crate::case::CaseRecord;
use crate::catalog::DelayFilingRow;
use crate::config::Config;
use crate::i18n::Text;

/// The upload deadline of one recording.
#[derive(Clone, Debug, Serialize)]
pub struct UploadDeadline {
    pub path: String,
    pub file_name: String,
    pub sha256: Option<String>,
    pub recorded_on: NaiveDate,
    /// The last day of an upload on time; the deadline is the end of it.
    pub upload_deadline: NaiveDate,
    pub uploaded_on: NaiveDate,
    pub late: bool,
    /// False when a day counted has unknown holidays.
    pub calendar_complete: bool,
    pub warnings: Vec<Text>,
    /// The latest delay filing for this recording, if any.
    pub delay_filing: Option<DelayFiling>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DelayFiling {
    pub reason: String,
    pub actor: String,
    pub filed_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseFileDeadline {
    pub case_id: String,
    pub action_ended_on: NaiveDate,
    pub case_file_deadline: NaiveDate,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Deadlines {
    pub recordings: Vec<UploadDeadline>,
    pub case_file: Option<CaseFileDeadline>,
    /// Problems with the calendar itself, such as an unreadable file.
    pub warnings: Vec<Text>,
}

/// The working-day calendar of the configuration, with a warning instead
/// of an error when its file cannot be used.
pub fn load_calendar(config: &Config) -> (WorkCalendar, Option<Text>) {
    let Some(path) = &config.calendar_file else {
        return (WorkCalendar::builtin(), None);
    };
    match WorkCalendar::from_file(path) {
        Ok(calendar) => (calendar, None),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "calendar file not used");
            (
                WorkCalendar::builtin(),
                Some(Text::new(
                    format!("日历文件无法使用（{error}），期限改按内置日历计算；请修正日历文件"),
                    format!("the calendar file cannot be used ({error}), so deadlines use the built-in calendar; fix the calendar file"),
                )),
            )
        }
    }
}

/// One recording for the deadline count.
pub struct Upload<'a> {
    pub path: &'a str,
    pub file_name: &'a str,
    pub sha256: Option<&'a str>,
    pub recorded_at: DateTime<Utc>,
    /// False when `recorded_at` is only the upload time.
    pub is_start_known: bool,
    pub uploaded_at: DateTime<Utc>,
}

/// Computes the upload deadline of each recording and the case-file
/// deadline of the case.
pub fn compute(
    config: &Config,
    uploads: &[Upload<'_>],
    case: Option<&CaseRecord>,
    filings: &[DelayFilingRow],
) -> Deadlines {
    let timezone = config.timezone();
    let (calendar, calendar_warning) = load_calendar(config);
    let latest_filing: HashMap<&str, &DelayFilingRow> =
        filings.iter().map(|f| (f.sha256.as_str(), f)).collect();

    let mut deadlines = Deadlines {
        warnings: calendar_warning.into_iter().collect(),
        ..Deadlines::default()
    };
    for upload in uploads {
        let recorded_on = upload.recorded_at.with_timezone(&timezone).date_naive();
        let uploaded_on = upload.uploaded_at.with_timezone(&timezone).date_naive();
        let deadline = calendar.upload_deadline(recorded_on);
        let mut warnings: Vec<Text> = deadline
            .warnings
            .iter()
            .map(|w| Text::new(w.message_zh(), w.message_en()))
            .collect();
        if !upload.is_start_known {
            warnings.push(Text::new(
                "录制时间未知（既无可信的容器时间，也无可识别的文件名），期限按导入日计算",
                "the recording time is unknown (no reliable container clock and no recognized file name), so the deadline counts from the upload day",
            ));
        }
        let delay_filing = upload
            .sha256
            .and_then(|sha| latest_filing.get(sha))
            .map(|row| DelayFiling {
                reason: row.reason.clone(),
                actor: row.actor.clone(),
                filed_at: row.filed_at.clone(),
            });
        deadlines.recordings.push(UploadDeadline {
            path: upload.path.to_string(),
            file_name: upload.file_name.to_string(),
            sha256: upload.sha256.map(str::to_string),
            recorded_on,
            upload_deadline: deadline.date,
            uploaded_on,
            late: uploaded_on > deadline.date,
            calendar_complete: deadline.calendar_complete,
            warnings,
            delay_filing,
        });
    }

    if let Some(case) = case {
        let zone: chrono_tz::Tz = case
            .timezone
            .as_deref()
            .and_then(|z| z.parse().ok())
            .unwrap_or(timezone);
        let action_ended_on = case.ended_at.with_timezone(&zone).date_naive();
        deadlines.case_file = Some(CaseFileDeadline {
            case_id: case.case_id.clone(),
            action_ended_on,
            case_file_deadline: case_file_deadline(action_ended_on),
        });
    }
    deadlines
}
