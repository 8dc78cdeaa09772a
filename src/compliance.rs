//! The compliance report (Article 18): the bureau's periodic check of its
//! footage and records over a period.
//!
//! `evidence report --from DATE --to DATE` covers the recordings made in
//! the period (by recording start, else upload time). It lists every recording,
//! late uploads (Article 11) with their delay filings, unexplained gaps
//! (Article 6), units of the period's cases without footage (Article 9),
//! evidence objects without their separate backup (Article 12), retention
//! and long-term promotions (Articles 12, 13), and fixity checks run in the
//! period (Article 18). Gaps and unit coverage are measured again from the
//! recordings with the continuity stage, so the report does not depend on
//! which commands ran before. The coverage pictures (one per case, one for
//! the whole period) are stored in the routine tier under `reports/` and,
//! with `--out`, written beside the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::case::CaseRecord;
use crate::catalog::{CatalogError, FixityRow, RecordingRow};
use crate::continuity::deadlines::UploadDeadline;
use crate::continuity::session::WallGap;
use crate::continuity::units::UnitCoverage;
use crate::continuity::{analyze_batch, analyze_recording, ContinuityReport, RecordingFacts};
use crate::i18n::{Lang, Text};
use crate::runner::{RecordingJob, Services, StageError};
use crate::store::retention::RetentionPolicy;
use crate::store::Tier;
use crate::worker::stages;

#[derive(Debug, Error)]
pub enum ComplianceError {
    #[error("invalid period: {}", .0.en)]
    Period(Text),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot read recordings for the report: {0}")]
    Recordings(String),
    #[error("cannot write the report into {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ComplianceError {
    pub fn text(&self) -> Text {
        let zh = match self {
            ComplianceError::Period(message) => format!("期间无效：{}", message.zh),
            ComplianceError::Catalog(e) => format!("目录库错误：{e}"),
            ComplianceError::Recordings(message) => format!("无法读取报告所需的录像：{message}"),
            ComplianceError::Write { path, source } => {
                format!("无法把报告写入 {}：{source}", path.display())
            }
        };
        Text::new(zh, self.to_string())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    /// Inclusive: the report covers the whole last day.
    pub to: NaiveDate,
    pub timezone: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecordingLine {
    pub sha256: String,
    pub file_name: String,
    pub device: Option<String>,
    pub start: Option<String>,
    pub ingested_at: String,
    pub tier: String,
    pub retention: String,
    pub retention_ended: bool,
    pub promotions: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MissingBackup {
    pub tier: String,
    pub key: String,
    pub sha256: String,
    pub reason: Text,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FixitySummary {
    pub checked: usize,
    pub passed: usize,
    pub failed: usize,
    pub failures: Vec<FixityRow>,
    /// Recordings of the period whose original no check of the period read.
    pub never_checked: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Picture {
    pub subject: String,
    pub location: String,
    pub file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub recordings: usize,
    pub late_uploads: usize,
    pub late_uploads_without_filing: usize,
    pub unexplained_gaps: usize,
    pub justified_gaps: usize,
    pub units_without_footage: usize,
    pub evidence_without_backup: usize,
    pub retention_ended: usize,
    pub fixity_failed: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ComplianceReport {
    pub period: Period,
    pub generated_at: DateTime<Utc>,
    pub generated_by: String,
    pub totals: Totals,
    pub recordings: Vec<RecordingLine>,
    pub late_uploads: Vec<UploadDeadline>,
    pub unexplained_gaps: Vec<WallGap>,
    pub justified_gaps: Vec<WallGap>,
    pub units_without_footage: Vec<UnitCoverage>,
    pub evidence_without_backup: Vec<MissingBackup>,
    pub retention_by_tier: BTreeMap<String, usize>,
    pub fixity: FixitySummary,
    pub pictures: Vec<Picture>,
    pub notes: Vec<Text>,
}

/// Parses the `--from`/`--to` dates (`YYYY-MM-DD`, local days).
pub fn parse_period(from: &str, to: &str, timezone: &str) -> Result<Period, ComplianceError> {
    let date = |text: &str| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            ComplianceError::Period(Text::new(
                format!("{text:?} 不是 2024-05-01 这样的日期"),
                format!("{text:?} is not a date like 2024-05-01"),
            ))
        })
    };
    let (from, to) = (date(from)?, date(to)?);
    if to < from {
        return Err(ComplianceError::Period(Text::new(
            format!("--to {to} 早于 --from {from}"),
            format!("--to {to} is before --from {from}"),
        )));
    }
    Ok(Period {
        from,
        to,
        timezone: timezone.to_string(),
    })
}

/// Builds the report; with `out`, writes JSON, text and pictures there.
pub fn report(
    services: &Services,
    period: Period,
    lang: Lang,
    out: Option<&Path>,
) -> Result<ComplianceReport, ComplianceError> {
    let timezone = services.config.timezone();
    let start = local_midnight(timezone, period.from);
    let end = local_midnight(timezone, period.to.succ_opt().unwrap_or(period.to));
    let now = Utc::now();

    let rows: Vec<RecordingRow> = services
        .catalog
        .recordings()?
        .into_iter()
        .filter(|r| {
            let at = recorded_at(r);
            at >= start && at < end
        })
        .collect();

    let promotions = services.catalog.promotions()?;
    let policy = RetentionPolicy::from_config(&services.config.store);
    let mut retention_by_tier = BTreeMap::new();
    let recordings: Vec<RecordingLine> = rows
        .iter()
        .map(|row| {
            let tier = Tier::parse(&row.tier).unwrap_or(Tier::Routine);
            let stored_at: DateTime<Utc> = row.ingested_at.parse().unwrap_or(now);
            let retention = policy.retention_for(tier, stored_at);
            *retention_by_tier.entry(row.tier.clone()).or_insert(0) += 1;
            RecordingLine {
                sha256: row.sha256.clone(),
                file_name: row.file_name.clone(),
                device: row.device.clone(),
                start: row.start.clone(),
                ingested_at: row.ingested_at.clone(),
                tier: row.tier.clone(),
                retention: retention.label(),
                retention_ended: retention.has_ended(now),
                promotions: promotions
                    .iter()
                    .filter(|p| p.sha256 == row.sha256)
                    .map(|p| p.trigger.clone())
                    .collect(),
            }
        })
        .collect();

    let late_uploads: Vec<UploadDeadline> = crate::status::upload_deadlines(services, &rows)?
        .into_iter()
        .filter(|d| d.late)
        .collect();

    let mut notes = Vec::new();
    let mut jobs = Vec::new();
    for row in rows.iter().filter(|r| r.readable) {
        jobs.push(stages::load_job(services, row, None).map_err(recordings_error)?);
    }
    let overall = continuity_of(services, None, &mut jobs)?;
    let mut pictures = Vec::new();
    let period_subject = format!("{}_{}", period.from, period.to);
    if let Some(picture) = picture(
        services,
        &overall,
        None,
        &period_subject,
        &period_subject,
        out,
        &mut notes,
    )? {
        pictures.push(picture);
    }

    let mut units_without_footage = Vec::new();
    for case in cases_in(services, start, end)? {
        let mut case_jobs = stages::case_jobs(services, &case).map_err(recordings_error)?;
        let coverage = continuity_of(services, Some(&case), &mut case_jobs)?;
        units_without_footage.extend(coverage.units.iter().filter(|u| u.covered <= 0.0).cloned());
        if let Some(picture) = picture(
            services,
            &coverage,
            Some(&case),
            &case.case_id,
            &period_subject,
            out,
            &mut notes,
        )? {
            pictures.push(picture);
        }
    }

    let evidence_without_backup = missing_backups(services, &rows)?;
    let fixity = fixity_of(services, &rows, start, end)?;

    let totals = Totals {
        recordings: recordings.len(),
        late_uploads: late_uploads.len(),
        late_uploads_without_filing: late_uploads
            .iter()
            .filter(|d| d.delay_filing.is_none())
            .count(),
        unexplained_gaps: overall.unexplained_gaps.len(),
        justified_gaps: overall.justified_gaps.len(),
        units_without_footage: units_without_footage.len(),
        evidence_without_backup: evidence_without_backup.len(),
        retention_ended: recordings.iter().filter(|r| r.retention_ended).count(),
        fixity_failed: fixity.failed,
    };
    let report = ComplianceReport {
        period,
        generated_at: now,
        generated_by: services.actor.clone(),
        totals,
        recordings,
        late_uploads,
        unexplained_gaps: overall.unexplained_gaps,
        justified_gaps: overall.justified_gaps,
        units_without_footage,
        evidence_without_backup,
        retention_by_tier,
        fixity,
        pictures,
        notes,
    };

    if let Some(dir) = out {
        let base = format!("compliance-{period_subject}");
        let write = |name: String, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|source| ComplianceError::Write { path, source })
        };
        write(
            format!("{base}.json"),
            serde_json::to_string_pretty(&report)
                .expect("a report serializes")
                .as_bytes(),
        )?;
        write(
            format!("{base}.{}.txt", lang_code(lang)),
            report.render_text(lang).as_bytes(),
        )?;
    }
    Ok(report)
}

/// Returns the instant a recording counts at: its start, else its upload.
fn recorded_at(row: &RecordingRow) -> DateTime<Utc> {
    row.start
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| row.ingested_at.parse().ok())
        .unwrap_or_else(Utc::now)
}

fn local_midnight(timezone: chrono_tz::Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    timezone
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

fn cases_in(
    services: &Services,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<CaseRecord>, ComplianceError> {
    Ok(services
        .catalog
        .case_records()?
        .iter()
        .filter_map(|json| serde_json::from_str::<CaseRecord>(json).ok())
        .filter(|case| {
            let (from, to) = stages::case_window(case);
            from < end && to >= start
        })
        .collect())
}

/// Sessions, gaps and unit coverage of the probed recordings.
fn continuity_of(
    services: &Services,
    case: Option<&CaseRecord>,
    jobs: &mut [RecordingJob],
) -> Result<ContinuityReport, ComplianceError> {
    let justifications = crate::continuity::justify::latest_justifications(&services.catalog)?;
    let filings = services.catalog.delay_filings()?;
    let facts: Vec<RecordingFacts> = jobs
        .iter_mut()
        .filter_map(|job| {
            let ingested = job.ingested.as_ref()?;
            let probe = job.probe.as_mut()?;
            if !probe.readable {
                return None;
            }
            Some(RecordingFacts {
                path: job.path.display().to_string(),
                file_name: crate::ingest::file_name_of(&job.path),
                sha256: Some(ingested.sha256.clone()),
                device: probe.device.clone(),
                sequence: job.name.as_ref().and_then(|n| n.sequence.or(n.chapter)),
                start: probe.start,
                start_source: probe.start_source,
                uploaded_at: ingested.ingested_at,
                timing: analyze_recording(probe),
            })
        })
        .collect();
    Ok(analyze_batch(
        &services.config,
        case,
        &facts,
        &justifications,
        &filings,
    ))
}

/// Renders and stores one coverage picture; a picture that cannot be made
/// becomes a note, since the figures of the report stand without it.
fn picture(
    services: &Services,
    continuity: &ContinuityReport,
    case: Option<&CaseRecord>,
    subject: &str,
    period_subject: &str,
    out: Option<&Path>,
    notes: &mut Vec<Text>,
) -> Result<Option<Picture>, ComplianceError> {
    if continuity.sessions.is_empty() && case.is_none() {
        return Ok(None);
    }
    let png = match crate::timeline::render(continuity, case, services.config.timezone()) {
        Ok(png) => png,
        Err(message) => {
            notes.push(Text::new(
                format!("{subject} 的覆盖图未生成：{message}"),
                format!("no coverage picture for {subject}: {message}"),
            ));
            return Ok(None);
        }
    };
    let digest = crate::ingest::sha256_hex(&png);
    let name = format!("coverage-{}.png", crate::store::key_segment(subject));
    let key = format!(
        "reports/compliance/{period_subject}/{}-{}",
        &digest[..16],
        name
    );
    let stored = services
        .store
        .put_small(Tier::Routine, &key, &png)
        .and_then(|info| {
            crate::store::Manifest::for_report(
                Tier::Routine,
                &key,
                &png,
                &format!("compliance report {subject}"),
                &services.actor,
            )
            .store(services.store.as_ref())?;
            Ok(info)
        });
    let location = match stored {
        Ok(info) => info.location,
        Err(error) => {
            notes.push(Text::new(
                format!("覆盖图 {key} 未能存储：{error}"),
                format!("coverage picture {key} not stored: {error}"),
            ));
            key.clone()
        }
    };
    let file = match out {
        Some(dir) => {
            let path = dir.join(&name);
            std::fs::write(&path, &png).map_err(|source| ComplianceError::Write {
                path: path.clone(),
                source,
            })?;
            Some(path)
        }
        None => None,
    };
    Ok(Some(Picture {
        subject: subject.to_string(),
        location,
        file,
    }))
}

/// Evidence-tier originals of the period whose separate copy is missing.
fn missing_backups(
    services: &Services,
    rows: &[RecordingRow],
) -> Result<Vec<MissingBackup>, ComplianceError> {
    let mut missing = Vec::new();
    // Evidence deleted after its retention ended has no backup to keep.
    let deleted = services.catalog.deleted_keys(Tier::Evidence.as_str())?;
    for row in rows
        .iter()
        .filter(|r| r.tier == Tier::Evidence.as_str() && !deleted.contains(&r.key))
    {
        let reason = match services.store.backup() {
            None => Some(Text::new(
                "未配置单独备份（S3 为 [store.backup]，本地存储为 [store.local] backup_dir）",
                "no separate backup is configured ([store.backup] for S3, [store.local] backup_dir for the local store)",
            )),
            Some(backup) => match backup.head(Tier::Evidence, &row.key) {
                Ok(Some(_)) => None,
                Ok(None) => Some(Text::new(
                    "备份中没有该对象",
                    "the backup does not hold the object",
                )),
                Err(error) => Some(Text::new(
                    format!("无法查询备份：{error}"),
                    format!("the backup cannot be asked: {error}"),
                )),
            },
        };
        if let Some(reason) = reason {
            missing.push(MissingBackup {
                tier: row.tier.clone(),
                key: row.key.clone(),
                sha256: row.sha256.clone(),
                reason,
            });
        }
    }
    Ok(missing)
}

fn fixity_of(
    services: &Services,
    rows: &[RecordingRow],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<FixitySummary, ComplianceError> {
    let checks: Vec<FixityRow> = services
        .catalog
        .fixity_checks()?
        .into_iter()
        .filter(|c| {
            DateTime::parse_from_rfc3339(&c.checked_at)
                .map(|t| t.with_timezone(&Utc))
                .is_ok_and(|t| t >= start && t < end)
        })
        .collect();
    let passed = checks.iter().filter(|c| c.status == "ok").count();
    let never_checked = rows
        .iter()
        .filter(|r| !checks.iter().any(|c| c.key == r.key))
        .map(|r| r.sha256.clone())
        .collect();
    Ok(FixitySummary {
        checked: checks.len(),
        passed,
        failed: checks.len() - passed,
        failures: checks
            .iter()
            .filter(|c| c.status != "ok")
            .cloned()
            .collect(),
        never_checked,
    })
}

fn recordings_error(error: StageError) -> ComplianceError {
    ComplianceError::Recordings(error.message.en)
}

fn lang_code(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "zh",
        Lang::En => "en",
    }
}

impl ComplianceReport {
    pub fn render_text(&self, lang: Lang) -> String {
        let mut out = String::new();
        let t = &self.totals;
        let _ = writeln!(
            out,
            "{} {} — {} ({})",
            lang.pick(
                "执法音像记录检查报告（第十八条）",
                "Footage compliance report (Article 18)"
            ),
            self.period.from,
            self.period.to,
            self.period.timezone
        );
        let _ = writeln!(
            out,
            "{} {} {}",
            lang.pick("生成于", "generated at"),
            self.generated_at.to_rfc3339(),
            self.generated_by
        );
        let lines = [
            (lang.pick("录像", "recordings"), t.recordings),
            (lang.pick("逾期上传", "late uploads"), t.late_uploads),
            (
                lang.pick("逾期且无延迟说明", "late without a delay filing"),
                t.late_uploads_without_filing,
            ),
            (
                lang.pick("未说明的中断", "unexplained gaps"),
                t.unexplained_gaps,
            ),
            (
                lang.pick("已说明的中断", "justified gaps"),
                t.justified_gaps,
            ),
            (
                lang.pick("无录像的检查单位", "units without footage"),
                t.units_without_footage,
            ),
            (
                lang.pick("缺少单独备份的证据", "evidence without its separate backup"),
                t.evidence_without_backup,
            ),
            (
                lang.pick("保存期已满", "retention ended"),
                t.retention_ended,
            ),
            (
                lang.pick("完整性核验失败", "fixity failures"),
                t.fixity_failed,
            ),
        ];
        for (label, count) in lines {
            let _ = writeln!(out, "  {label}: {count}");
        }
        section(&mut out, lang.pick("录像", "Recordings"));
        for r in &self.recordings {
            let _ = writeln!(
                out,
                "  {} {} {} {} {} {}",
                r.sha256,
                r.file_name,
                r.device.as_deref().unwrap_or("-"),
                r.start.as_deref().unwrap_or("-"),
                r.tier,
                r.retention
            );
        }
        section(&mut out, lang.pick("逾期上传", "Late uploads"));
        for d in &self.late_uploads {
            let filing = match &d.delay_filing {
                Some(f) => format!("{}: {}", lang.pick("延迟说明", "delay filing"), f.reason),
                None => lang.pick("无延迟说明", "no delay filing").to_string(),
            };
            let _ = writeln!(
                out,
                "  {} {} {} {} {}  {filing}",
                d.file_name,
                lang.pick("期限", "due"),
                d.upload_deadline,
                lang.pick("上传", "uploaded"),
                d.uploaded_on
            );
        }
        section(&mut out, lang.pick("未说明的中断", "Unexplained gaps"));
        for g in &self.unexplained_gaps {
            let _ = writeln!(
                out,
                "  {} {} → {} ({:.1} s)",
                g.gap_id,
                g.from.to_rfc3339(),
                g.to.to_rfc3339(),
                g.duration
            );
        }
        section(
            &mut out,
            lang.pick("无录像的检查单位", "Units without footage"),
        );
        for u in &self.units_without_footage {
            let _ = writeln!(
                out,
                "  {} {} → {}",
                u.unit_id,
                u.from.to_rfc3339(),
                u.to.to_rfc3339()
            );
        }
        section(
            &mut out,
            lang.pick("缺少单独备份的证据", "Evidence without its separate backup"),
        );
        for m in &self.evidence_without_backup {
            let _ = writeln!(out, "  {} {}: {}", m.sha256, m.key, m.reason.get(lang));
        }
        section(&mut out, lang.pick("完整性核验", "Fixity checks"));
        let _ = writeln!(
            out,
            "  {} {}, {} {}, {} {}, {} {}",
            lang.pick("核验", "checked"),
            self.fixity.checked,
            lang.pick("通过", "passed"),
            self.fixity.passed,
            lang.pick("失败", "failed"),
            self.fixity.failed,
            lang.pick("本期未核验的录像", "recordings not checked in the period"),
            self.fixity.never_checked.len()
        );
        for f in &self.fixity.failures {
            let _ = writeln!(out, "  {} {}/{} {}", f.status, f.tier, f.key, f.checked_at);
        }
        section(&mut out, lang.pick("覆盖图", "Coverage pictures"));
        for p in &self.pictures {
            let _ = writeln!(
                out,
                "  {}: {}",
                p.subject,
                p.file
                    .as_ref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| p.location.clone())
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "{} {}", lang.pick("注：", "note:"), note.get(lang));
        }
        out
    }
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}");
}
