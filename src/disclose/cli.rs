//! The `evidence disclose` commands.

use std::path::PathBuf;

use crate::i18n::{Lang, Text};
use crate::redact::cli::encoder_settings;
use crate::redact::{DEFAULT_QUALITY, DEFAULT_SPEED_PRESET};
use crate::runner::Services;

use super::{Purpose, RequestView};

#[derive(Debug, clap::Subcommand)]
pub enum DiscloseAction {
    /// File a request: purpose, items (recording SHA-256 or TIER/KEY of a clip) and a redaction spec
    Request {
        /// Purpose of the request
        #[arg(long, value_enum)]
        purpose: Purpose,

        /// An item to disclose: a recording's SHA-256 or a stored clip as TIER/KEY (repeat for more)
        #[arg(long = "item", required = true)]
        items: Vec<String>,

        /// Redaction spec (JSON) applied to every item
        #[arg(long, value_name = "SPEC.json")]
        spec: PathBuf,

        /// Free-text note: the requesting body, case number, legal basis
        #[arg(long)]
        note: Option<String>,
    },
    /// Approve a request (approver role; not the requester)
    Approve {
        request_id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a request with a reason (approver role; not the requester)
    Reject {
        request_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Export an approved request: watermarked, redacted copies and a receipt
    Export {
        request_id: String,

        /// Folder for the exported copies and the receipt
        #[arg(long, value_name = "DIR")]
        out: PathBuf,

        /// x264 speed preset of the re-encoded copies
        #[arg(long, default_value = DEFAULT_SPEED_PRESET)]
        preset: String,

        /// x264 constant quality (CRF), 0–35
        #[arg(long, default_value_t = DEFAULT_QUALITY)]
        quality: u32,
    },
    /// Show one request with its items, decisions and exports
    Show { request_id: String },
    /// List every request
    List,
}

/// Runs one action; returns the exit code or the message to print.
pub fn run(action: &DiscloseAction, services: &Services, json: bool) -> Result<u8, Text> {
    let lang = services.lang;
    let print_view = |view: &RequestView| {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(view).expect("a request serializes")
            );
        } else {
            print!("{}", render_view(view, lang));
        }
    };
    match action {
        DiscloseAction::Request {
            purpose,
            items,
            spec,
            note,
        } => {
            let view = super::request(services, *purpose, items, spec, note.as_deref())
                .map_err(|e| e.message())?;
            print_view(&view);
        }
        DiscloseAction::Approve { request_id, note } => {
            let view =
                super::approve(services, request_id, note.as_deref()).map_err(|e| e.message())?;
            print_view(&view);
        }
        DiscloseAction::Reject { request_id, reason } => {
            let view = super::reject(services, request_id, reason).map_err(|e| e.message())?;
            print_view(&view);
        }
        DiscloseAction::Export {
            request_id,
            out,
            preset,
            quality,
        } => {
            let encoder = encoder_settings(preset, *quality)?;
            crate::redact::cli::refuse_folder_in_store(
                &services.data_dir,
                &services.config,
                out,
                out,
            )?;
            let outcome =
                super::export(services, request_id, out, encoder).map_err(|e| e.message())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome).expect("an export serializes")
                );
            } else {
                println!(
                    "{} {} → {}",
                    lang.pick("已导出", "exported"),
                    outcome.request_id,
                    outcome.out_dir
                );
                println!(
                    "{} {}",
                    lang.pick("回执：", "receipt:"),
                    outcome.receipt_text
                );
                for item in &outcome.receipt.items {
                    println!("  {} {}", item.output_file, item.output_sha256);
                }
            }
        }
        DiscloseAction::Show { request_id } => {
            let view = super::show(services, request_id).map_err(|e| e.message())?;
            print_view(&view);
        }
        DiscloseAction::List => {
            let rows = super::list(services).map_err(|e| e.message())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("rows serialize")
                );
            } else {
                for row in rows {
                    println!(
                        "{}  {}  {}  {}  {}",
                        row.request_id,
                        row.status,
                        Purpose::text(&row.purpose).get(lang),
                        row.requester,
                        row.created_at
                    );
                }
            }
        }
    }
    Ok(0)
}

fn render_view(view: &RequestView, lang: Lang) -> String {
    let r = &view.request;
    let mut out = format!(
        "{} {}  {} {}\n{} {}  {} {}  {} {}\n",
        lang.pick("申请", "request"),
        r.request_id,
        lang.pick("状态", "status"),
        r.status,
        lang.pick("申请人", "requester"),
        r.requester,
        lang.pick("用途", "purpose"),
        Purpose::text(&r.purpose).get(lang),
        lang.pick("时间", "at"),
        r.created_at
    );
    for item in &view.items {
        out.push_str(&format!(
            "  #{} {} ({}/{})\n",
            item.position, item.sha256, item.tier, item.key
        ));
    }
    for decision in &view.decisions {
        out.push_str(&format!(
            "  {} {} {} {}\n",
            decision.decision,
            decision.actor,
            decision.decided_at,
            decision.reason.as_deref().unwrap_or("")
        ));
    }
    for export in &view.exports {
        out.push_str(&format!(
            "  {} public/{} {}\n",
            lang.pick("导出", "export"),
            export.key,
            export.sha256
        ));
    }
    out
}
