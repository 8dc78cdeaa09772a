//! The `evidence split` command: clips of a case's units from the
//! recordings already ingested, after ingesting any files given with it.
//!
//! Exit codes: 0 when every unit with footage got its clip, 1 when the
//! command could not start (invalid case record, config or data directory),
//! 3 when a clip or an input failed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{insert_sections, split_case, SplitOptions};
use crate::case::CaseRecord;
use crate::i18n::{Lang, Text};
use crate::report::{FileStatus, ProcessReport};
use crate::runner::Services;

#[derive(Debug, clap::Args)]
pub struct SplitArgs {
    /// Case record (JSON) whose units are split
    #[arg(long, value_name = "CASE.json")]
    pub case: PathBuf,

    /// Files or folders to ingest first; without them, the recordings already ingested are used
    pub paths: Vec<PathBuf>,

    /// Re-encode the partial GOP at each boundary (or the whole video where the stream does not allow splicing), so that nothing before or after the unit is stored
    #[arg(long)]
    pub reencode: bool,
}

/// Runs the command; returns the exit code, or the message of a failure
/// that kept it from starting.
pub fn run(args: &SplitArgs, data_dir: &Path, lang: Lang, json: bool) -> Result<u8, Text> {
    let case = CaseRecord::load(&args.case)
        .map_err(|e| Text::new(e.message(Lang::Zh), e.message(Lang::En)))?;
    let services = Services::open(data_dir, lang)
        .map_err(|e| Text::new(format!("{e:#}"), format!("{e:#}")))?;

    let mut report = if args.paths.is_empty() {
        ProcessReport::new(&services)
    } else {
        crate::stages::runner().process(&services, &args.paths, None)
    };
    let record = serde_json::to_string(&case).expect("a case record serializes");
    if let Err(error) =
        services
            .catalog
            .upsert_case(&case.case_id, &record, &Utc::now().to_rfc3339())
    {
        tracing::warn!(case = %case.case_id, %error, "case record not stored in the catalog");
    }

    let outcome = split_case(
        &services,
        &case,
        SplitOptions {
            reencode: args.reencode,
        },
    );
    insert_sections(&mut report, &outcome);
    report.sections.insert(
        "case_id".into(),
        serde_json::Value::String(case.case_id.clone()),
    );

    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        // The process report shows the clips among its sections.
        if args.paths.is_empty() {
            print!("{}", render_clips(&outcome, lang));
        } else {
            print!("{}", report.render_text(lang));
        }
    }
    let failed = !outcome.errors.is_empty() || report.count(FileStatus::Failed) > 0;
    Ok(if failed { 3 } else { 0 })
}

/// Renders the clips of a split for people.
pub fn render_clips(outcome: &super::SplitOutcome, lang: Lang) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", lang.pick("案件", "case"), outcome.case_id);
    for clip in &outcome.clips {
        let status = match clip.status {
            super::output::ClipStatus::Created => lang.pick("新建", "created"),
            super::output::ClipStatus::Unchanged => lang.pick("未变化", "unchanged"),
            super::output::ClipStatus::Recovered => lang.pick("已补登", "recovered"),
        };
        let _ = writeln!(
            out,
            "  {} {} v{} ({status}): {} → {}, {:.2} s, {} {}",
            clip.unit_id,
            clip.device,
            clip.version,
            clip.from.to_rfc3339(),
            clip.to.to_rfc3339(),
            clip.duration,
            lang.pick("方法", "method"),
            clip.method,
        );
        let _ = writeln!(out, "    {}", clip.path);
        let _ = writeln!(out, "    SHA-256 {}  SM3 {}", clip.sha256, clip.sm3);
        if clip.preroll > 0.0 {
            let _ = writeln!(
                out,
                "    {} {:.3} s",
                lang.pick(
                    "边界前隐藏的预读画面（编辑列表隐藏，不播放）",
                    "hidden preroll before the boundary (kept for decoding, not presented)"
                ),
                clip.preroll
            );
        }
        for gap in &clip.gaps {
            let kind = gap["kind"].as_str().unwrap_or("");
            let seconds = gap["seconds"].as_f64().unwrap_or(0.0);
            let what = match kind {
                "between_recordings" => lang.pick(
                    "录像中断（片段中保留为空白）",
                    "recording gap (kept in the clip as nothing presented)",
                ),
                "before_first_recording" => lang.pick(
                    "检查开始时没有录像",
                    "no recording at the start of the unit",
                ),
                "after_last_recording" => lang.pick(
                    "检查结束前录像已停止",
                    "recording stopped before the end of the unit",
                ),
                _ => lang.pick("录像时间重叠", "recordings overlap"),
            };
            let _ = writeln!(
                out,
                "    {what}: {} → {} ({seconds:.2} s)",
                gap["from"].as_str().unwrap_or(""),
                gap["to"].as_str().unwrap_or("")
            );
        }
        for dropped in &clip.tracks.dropped {
            let reason = &dropped["reason"][match lang {
                Lang::Zh => "zh",
                Lang::En => "en",
            }];
            let _ = writeln!(
                out,
                "    {} {} ({}): {}",
                lang.pick("未保留的轨道", "track not kept"),
                dropped["track_id"],
                dropped["codec"].as_str().unwrap_or(""),
                reason.as_str().unwrap_or("")
            );
        }
    }
    for missing in &outcome.missing {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            missing.unit_id,
            missing.device.as_deref().unwrap_or("-"),
            missing.reason.get(lang)
        );
    }
    for error in &outcome.errors {
        let _ = writeln!(out, "  {}: {}", lang.pick("错误", "error"), error.get(lang));
    }
    out
}
