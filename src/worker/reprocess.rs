//! `evidence reprocess --case ID`: the case's work again, with the case
//! record and settings as they stand now.
//!
//! Unit coverage, splitting and storage run again from the recordings in
//! the catalog. Clips already made stay where they are: a changed record
//! or changed settings add new clip versions beside them, and an unchanged
//! one writes nothing. Each exported disclosure item that names an older
//! version of a clip gets its redacted copy made again from the newest
//! version ([`crate::redact::rerun`]). The old copies stay. The run is
//! logged in the audit chain.

use crate::audit::{self, Action};
use crate::i18n::Text;
use crate::report::ProcessReport;
use crate::runner::{Runner, Services};

use super::stages;

/// Reprocesses a stored case; the error is the reason it could not start.
pub fn reprocess(
    services: &Services,
    runner: &Runner,
    case_id: &str,
) -> Result<ProcessReport, Text> {
    crate::case::check_id(case_id).map_err(|m| {
        Text::new(
            format!("案件编号 {case_id} 无效：{}", m.zh),
            format!("case id {case_id} is not valid: {}", m.en),
        )
    })?;
    let case = stages::stored_case(services, case_id).map_err(|e| e.message)?;
    let mut report = stages::process_case(services, runner, &case).map_err(|e| e.message)?;
    report.sections.insert("case_id".into(), case_id.into());

    let remade = crate::redact::rerun::remake_for_case(services, case_id).map_err(|e| e.text())?;
    for failure in &remade.failed {
        report.errors.push(Text::new(
            format!(
                "申请 {} 第 {} 项的脱敏副本未能重新生成：{}",
                failure.request_id, failure.position, failure.reason.zh
            ),
            format!(
                "the redacted copy of request {} item {} was not remade: {}",
                failure.request_id, failure.position, failure.reason.en
            ),
        ));
    }
    report.sections.insert(
        "redactions".into(),
        serde_json::to_value(&remade.remade).expect("remade copies serialize"),
    );
    report.sections.insert(
        "redactions_failed".into(),
        serde_json::to_value(&remade.failed).expect("failures serialize"),
    );

    let clips: Vec<serde_json::Value> = report
        .sections
        .get("clips")
        .and_then(|c| c.as_array())
        .map(|clips| {
            clips
                .iter()
                .map(|c| serde_json::json!({ "unit_id": c["unit_id"], "device": c["device"], "version": c["version"], "sha256": c["sha256"], "status": c["status"] }))
                .collect()
        })
        .unwrap_or_default();
    audit::record(
        services,
        Action::Reprocess,
        case_id,
        serde_json::json!({
            "clips": clips,
            "redactions": remade.remade.iter().map(|r| &r.object).collect::<Vec<_>>(),
            "errors": report.errors.len(),
        }),
    )
    .map_err(|e| e.text())?;
    Ok(report)
}

/// Stores a corrected record for the case; its id must be the case's.
pub fn replace_record(
    services: &Services,
    case_id: &str,
    case: &crate::case::CaseRecord,
) -> Result<(), Text> {
    if case.case_id != case_id {
        return Err(Text::new(
            format!("案件记录的编号是 {}，不是 {case_id}", case.case_id),
            format!("the case record is for {}, not {case_id}", case.case_id),
        ));
    }
    let json = serde_json::to_string(case).expect("a case record serializes");
    services
        .catalog
        .upsert_case(case_id, &json, &chrono::Utc::now().to_rfc3339())
        .map_err(|e| Text::new(format!("目录库错误：{e}"), format!("catalog error: {e}")))
}

/// Renders the clips of a reprocessed case for people.
pub fn render_text(report: &ProcessReport, lang: crate::i18n::Lang) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let case_id = report
        .sections
        .get("case_id")
        .and_then(|c| c.as_str())
        .unwrap_or("");
    let _ = writeln!(
        out,
        "{} {case_id}",
        lang.pick("已重新处理案件", "case reprocessed:")
    );
    for clip in report
        .sections
        .get("clips")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        use crate::split::output::ClipStatus;
        let status = match serde_json::from_value(clip["status"].clone()) {
            Ok(ClipStatus::Created) => lang.pick("新建", "created"),
            Ok(ClipStatus::Unchanged) => lang.pick("未变化", "unchanged"),
            Ok(ClipStatus::Recovered) => lang.pick("已补登", "recovered"),
            Err(_) => clip["status"].as_str().unwrap_or(""),
        };
        let _ = writeln!(
            out,
            "  {} {} v{} ({status}) {}",
            clip["unit_id"].as_str().unwrap_or(""),
            clip["device"].as_str().unwrap_or(""),
            clip["version"],
            clip["sha256"].as_str().unwrap_or("")
        );
    }
    for missing in report
        .sections
        .get("clips_missing")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        let reason = &missing["reason"][match lang {
            crate::i18n::Lang::Zh => "zh",
            crate::i18n::Lang::En => "en",
        }];
        let _ = writeln!(
            out,
            "  {} {}: {}",
            missing["unit_id"].as_str().unwrap_or(""),
            lang.pick("无片段", "no clip"),
            reason.as_str().unwrap_or("")
        );
    }
    for copy in report
        .sections
        .get("redactions")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "  {} {} #{}: {} v{} → {} {}",
            lang.pick("脱敏副本已重新生成", "redacted copy remade"),
            copy["request_id"].as_str().unwrap_or(""),
            copy["position"],
            copy["unit_id"].as_str().unwrap_or(""),
            copy["clip_version"],
            copy["object"].as_str().unwrap_or(""),
            copy["sha256"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            out,
            "    {} {}",
            lang.pick("原副本保留：", "earlier copy kept:"),
            copy["replaces"].as_str().unwrap_or("")
        );
    }
    for error in &report.errors {
        let _ = writeln!(out, "  {}: {}", lang.pick("错误", "error"), error.get(lang));
    }
    out
}
