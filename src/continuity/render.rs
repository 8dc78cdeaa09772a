//! The readable continuity report, in Chinese or English.
//!
//! `check` prints files and sections; `process` prints the same sections
//! after its own file list. Times are shown in the configured zone.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::i18n::Lang;

use super::{CheckReport, ContinuityReport};

fn local(time: DateTime<Utc>, timezone: chrono_tz::Tz) -> String {
    time.with_timezone(&timezone)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// Renders the result of `evidence check`.
pub fn render_check(report: &CheckReport, lang: Lang, timezone: chrono_tz::Tz) -> String {
    let mut out = String::new();
    for file in &report.files {
        let _ = writeln!(out, "{}", file.path);
        if let Some(reason) = &file.reason {
            let _ = writeln!(
                out,
                "  {}: {}",
                lang.pick("无法读取", "unreadable"),
                reason.get(lang)
            );
        }
        let _ = writeln!(
            out,
            "  {}: {} ({})",
            lang.pick("开始时间", "start"),
            local(file.start, timezone),
            start_source_label(file.start_source, lang)
        );
        for track in &file.tracks {
            let _ = writeln!(
                out,
                "  {} #{} {} {}: {} {} – {} s, {} {}",
                lang.pick("轨道", "track"),
                track.index,
                track.kind,
                track.codec,
                lang.pick("时间", "time"),
                track.start.map_or("-".into(), |s| format!("{s:.3}")),
                track.end.map_or("-".into(), |e| format!("{e:.3}")),
                track.frames,
                lang.pick("帧", "frames"),
            );
        }
        if file.readable && file.findings.is_empty() {
            let _ = writeln!(out, "  {}", lang.pick("未发现异常", "no anomaly"));
        }
        for finding in &file.findings {
            let _ = writeln!(out, "  [{}] {}", finding.kind, finding.message.get(lang));
        }
    }
    out.push_str(&render_sections(&report.continuity, lang, timezone));
    if let Some(path) = &report.timeline {
        let _ = writeln!(out, "{}: {path}", lang.pick("时间轴图", "timeline picture"));
    }
    for error in &report.errors {
        let _ = writeln!(out, "{}: {}", lang.pick("错误", "error"), error.get(lang));
    }
    out
}

/// Returns the label of a recording's start source in the reader's language.
fn start_source_label(source: crate::probe::StartSource, lang: Lang) -> &'static str {
    use crate::probe::StartSource;
    match source {
        StartSource::Container => lang.pick("容器创建时间", "container creation time"),
        StartSource::FileName => lang.pick("文件名", "file name"),
        StartSource::UploadTime => lang.pick("上传时间", "upload time"),
    }
}

/// Returns the label of a unit gap's kind (`head`, `tail`, `gap`,
/// `no_footage`) in the reader's language, or an unknown kind unchanged.
fn gap_kind_label(kind: &str, lang: Lang) -> &str {
    match kind {
        "head" => lang.pick("开头", "head"),
        "tail" => lang.pick("结尾", "tail"),
        "gap" => lang.pick("中断", "gap"),
        "no_footage" => lang.pick("无录像", "no footage"),
        other => other,
    }
}

/// Renders sessions, units, gaps and deadlines.
pub fn render_sections(report: &ContinuityReport, lang: Lang, timezone: chrono_tz::Tz) -> String {
    let mut out = String::new();
    for session in &report.sessions {
        let _ = writeln!(
            out,
            "\n{} {} ({} {}, {} {})",
            lang.pick("录像段", "session"),
            session.session_id,
            session.files.len(),
            lang.pick("个文件", "files"),
            local(session.start, timezone),
            local(session.end, timezone),
        );
        for boundary in &session.boundaries {
            let kind = match boundary.kind.as_str() {
                "continuous" => lang.pick("连续", "continuous"),
                "gap" => lang.pick("中断", "gap"),
                _ => lang.pick("重叠", "overlap"),
            };
            let _ = writeln!(
                out,
                "  {} → {}: {kind} {:+.3} s{}",
                boundary.after,
                boundary.before,
                boundary.duration,
                boundary
                    .gap_id
                    .as_ref()
                    .map(|id| format!(" [{id}]"))
                    .unwrap_or_default()
            );
        }
    }
    if !report.unplaced.is_empty() {
        let _ = writeln!(
            out,
            "\n{}: {}",
            lang.pick(
                "无可靠开始时间、未排入时间轴的文件",
                "files without a reliable start, not placed on the timeline"
            ),
            report.unplaced.join(", ")
        );
    }
    for unit in &report.units {
        let _ = writeln!(
            out,
            "\n{} {} {} [{} – {}): {} {:.2} / {:.2} s",
            lang.pick("检查单位", "unit"),
            unit.unit_id,
            unit.device.as_deref().unwrap_or("-"),
            local(unit.from, timezone),
            local(unit.to, timezone),
            lang.pick("有录像", "covered"),
            unit.covered,
            unit.length,
        );
        for gap in &unit.gaps {
            let state = match &gap.justification {
                Some(j) => format!(
                    "{}: {} ({})",
                    lang.pick("已说明", "justified"),
                    j.reason.label().get(lang),
                    j.basis
                ),
                None => lang.pick("未说明", "unexplained").to_string(),
            };
            let _ = writeln!(
                out,
                "  {} {} {} – {} {:.2} s, {state} [{}]",
                lang.pick("缺失", "missing"),
                gap_kind_label(&gap.kind, lang),
                local(gap.from, timezone),
                local(gap.to, timezone),
                gap.duration,
                gap.gap_id
            );
        }
    }
    for (title, gaps) in [
        (
            lang.pick("未说明的中断", "unexplained gaps"),
            &report.unexplained_gaps,
        ),
        (
            lang.pick("已说明的中断", "justified gaps"),
            &report.justified_gaps,
        ),
    ] {
        if gaps.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for gap in gaps {
            let _ = writeln!(
                out,
                "  [{}] {} – {} {:.2} s{}",
                gap.gap_id,
                local(gap.from, timezone),
                local(gap.to, timezone),
                gap.duration,
                gap.justification
                    .as_ref()
                    .map(|j| format!(
                        ", {}: {} ({})",
                        j.reason.label().get(lang),
                        j.basis,
                        j.actor
                    ))
                    .unwrap_or_default()
            );
        }
    }
    if !report.deadlines.recordings.is_empty() || report.deadlines.case_file.is_some() {
        let _ = writeln!(out, "\n{}:", lang.pick("期限", "deadlines"));
    }
    for deadline in &report.deadlines.recordings {
        let state = if !deadline.late {
            lang.pick("按期", "on time")
        } else if deadline.delay_filing.is_some() {
            lang.pick("逾期（已登记延迟说明）", "late (delay filed)")
        } else {
            lang.pick("逾期", "late")
        };
        let _ = writeln!(
            out,
            "  {}: {} {}, {} {}, {} {} – {state}",
            deadline.file_name,
            lang.pick("录制于", "recorded"),
            deadline.recorded_on,
            lang.pick("导入期限", "upload deadline"),
            deadline.upload_deadline,
            lang.pick("导入于", "uploaded"),
            deadline.uploaded_on,
        );
        for warning in &deadline.warnings {
            let _ = writeln!(out, "    ! {}", warning.get(lang));
        }
    }
    if let Some(case_file) = &report.deadlines.case_file {
        let _ = writeln!(
            out,
            "  {} {}: {} {}",
            lang.pick("案件", "case"),
            case_file.case_id,
            lang.pick("立卷归档期限", "case-file deadline"),
            case_file.case_file_deadline
        );
    }
    for warning in &report.deadlines.warnings {
        let _ = writeln!(out, "  ! {}", warning.get(lang));
    }
    out
}
