//! The `evidence` command line: a thin layer over the library's stages.
//!
//! Exit codes: 0 when every input ended in a stored original (unreadable
//! files included, since they are kept), 1 when the command could not start
//! (bad case record, config or data directory), 2 for invalid usage, 3 when
//! at least one input failed and nothing was stored for it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use evidence::case::CaseRecord;
use evidence::config::resolve_data_dir;
use evidence::i18n::Lang;
use evidence::report::FileStatus;
use evidence::runner::Services;

#[derive(Parser)]
#[command(name = "evidence", version, about = "Keeps law-enforcement camera footage as evidence / 执法记录仪音像证据管理")]
struct Cli {
    /// Data directory holding the catalog and the local store [env: EVIDENCE_DATA_DIR; default: ./evidence-data]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,

    /// Language of messages and reports (default: from the locale)
    #[arg(long, global = true, value_enum)]
    lang: Option<Lang>,

    /// Print one JSON document to stdout instead of a readable report
    #[arg(long, global = true)]
    json: bool,

    /// Log more (-v: stages and objects, -vv: decisions)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest, probe and check recordings (files or folders, searched recursively)
    Process {
        /// Files or folders of uploaded footage
        #[arg(required = true)]
        paths: Vec<PathBuf>,

        /// Case record (JSON) that the footage belongs to
        #[arg(long)]
        case: Option<PathBuf>,
    },
    /// Check continuity of recordings and print findings; stores nothing
    Check {
        /// Files or folders of footage
        #[arg(required = true)]
        paths: Vec<PathBuf>,

        /// Case record (JSON), for unit coverage and the case-file deadline
        #[arg(long)]
        case: Option<PathBuf>,

        /// Also decode every frame to find corrupt ones (slow: real-time or faster)
        #[arg(long)]
        decode: bool,

        /// Write the coverage timeline picture (PNG) to this file
        #[arg(long, value_name = "OUT.png")]
        timeline: Option<PathBuf>,
    },
    /// Record why recording stopped (Article 6) for a gap printed by check or process
    Justify {
        /// Gap id as printed by check or process, such as HB0631@2024-05-01T10:00:20
        gap_id: String,

        /// Reason code
        #[arg(long, value_enum)]
        reason: evidence::continuity::justify::Reason,

        /// What the stop rests on: a document, an approver or an account of events
        #[arg(long)]
        basis: String,
    },
    /// Record a filing that explains a late upload (Article 11)
    Delay {
        /// The recording: its SHA-256 or the path of the uploaded file
        recording: String,

        /// Why the footage was loaded late
        #[arg(long)]
        reason: String,
    },
    /// Object storage: set up buckets (lifecycle, versioning, object lock)
    Storage {
        #[command(subcommand)]
        action: StorageAction,
    },
    /// Re-hash stored objects against their manifests and name each one that fails
    Verify {
        /// Check only this tier
        #[arg(long, value_enum)]
        tier: Option<evidence::store::Tier>,

        /// Check only objects stored on or after this date (YYYY-MM-DD, local time) or instant (RFC 3339)
        #[arg(long)]
        since: Option<String>,
    },
    /// Keep a recording long-term for an Article 13 trigger (a verified copy; the original stays)
    Promote {
        /// The recording's SHA-256
        recording: String,

        /// Why it is kept long-term
        #[arg(long, value_enum)]
        trigger: evidence::store::retention::Trigger,

        /// Details; required for `other`
        #[arg(long)]
        note: Option<String>,
    },
    /// Make a redacted copy of a recording from a redaction spec (JSON)
    Redact(evidence::redact::cli::RedactArgs),
    /// Disclosure requests: request, approve, reject, export, show, list
    Disclose {
        #[command(subcommand)]
        action: evidence::disclose::cli::DiscloseAction,
    },
    /// Cut one clip per inspected unit and device from a case's recordings (lossless unless --reencode)
    Split(evidence::split::cli::SplitArgs),
    /// Process uploads as they arrive in a folder, as durable jobs with retries (operator role)
    Worker {
        /// Upload folder, searched recursively; `*.json` files in it are case records
        #[arg(long, value_name = "DIR")]
        watch: PathBuf,

        /// Also ingest every object under this prefix of the store's bucket ([store] bucket)
        #[arg(long, value_name = "PREFIX")]
        s3_incoming: Option<String>,

        /// Seconds a file must stay unchanged before it counts as complete
        #[arg(long, default_value_t = evidence::worker::DEFAULT_SETTLE.as_secs())]
        settle_secs: u64,

        /// Seconds a claimed job stays reserved without renewal before another worker may take it
        #[arg(long, default_value_t = evidence::worker::DEFAULT_LEASE.as_secs())]
        lease_secs: u64,

        /// Exit once no job is queued or running (on any worker) and no upload is still being written
        #[arg(long)]
        until_idle: bool,
    },
    /// Recordings (with SHA-256), jobs, findings and deadlines (operator or auditor role)
    Status,
    /// Rerun coverage, splitting and storage of a case with its current record and settings, and remake the redacted copies of its disclosed clips (operator role)
    Reprocess {
        /// The case id, as in its case record
        #[arg(long = "case", value_name = "ID")]
        case_id: String,

        /// A corrected case record (JSON) for this case, stored before the rerun
        #[arg(long, value_name = "CASE.json")]
        record: Option<PathBuf>,
    },
    /// Compliance report over a period (Article 18), with coverage pictures (auditor role)
    Report {
        /// First day of the period (YYYY-MM-DD, local)
        #[arg(long)]
        from: String,

        /// Last day of the period, included (YYYY-MM-DD, local)
        #[arg(long)]
        to: String,

        /// Folder to write the report (JSON and text) and its pictures into
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// The audit log of every use of stored footage
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain of the audit log and name every changed, removed or reordered event, a tail cut off its end, and each stored object its events name that is missing or changed (auditor role)
    Verify {
        /// Check only the chain and its anchors, not the objects its events name
        #[arg(long)]
        no_objects: bool,
    },
}

#[derive(Subcommand)]
enum StorageAction {
    /// Create missing buckets and install retention settings; report what each bucket supports
    Init,
    /// Delete an object whose retention has ended, with its manifest and separate backup copy; refused before then and under legal hold (approver role)
    Delete {
        /// Tier of the object named by KEY
        #[arg(long, value_enum, requires = "key")]
        tier: Option<evidence::store::Tier>,
        /// The object's key within its tier
        #[arg(requires = "tier", conflicts_with = "sha256")]
        key: Option<String>,
        /// A recording's SHA-256, instead of --tier and KEY
        #[arg(long, required_unless_present_any = ["key", "tier"])]
        sha256: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let lang = Lang::detect(cli.lang);
    init_logging(cli.verbose);

    match run(cli, lang) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}: {error:#}", lang.pick("错误", "error"));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli, lang: Lang) -> anyhow::Result<ExitCode> {
    let data_dir = resolve_data_dir(cli.data_dir);
    match cli.command {
        Command::Process { paths, case } => {
            let case = match case {
                Some(path) => Some(Arc::new(
                    CaseRecord::load(&path).map_err(|e| anyhow::anyhow!(e.message(lang)))?,
                )),
                None => None,
            };
            authorize(&data_dir, "process", evidence::roles::PROCESS, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let runner = evidence::stages::runner();
            let report = runner.process(&services, &paths, case);
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_text(lang));
            }
            Ok(if report.count(FileStatus::Failed) > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Check { paths, case, decode, timeline } => {
            let case = match case {
                Some(path) => Some(CaseRecord::load(&path).map_err(|e| anyhow::anyhow!(e.message(lang)))?),
                None => None,
            };
            authorize(&data_dir, "check", evidence::roles::CHECK, lang)?;
            let report = evidence::continuity::cli::check(&data_dir, &paths, case.as_ref(), decode, timeline.as_deref())
                .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let timezone = evidence::config::Config::load(&data_dir).map(|c| c.timezone()).unwrap_or(chrono_tz::Asia::Shanghai);
                print!("{}", evidence::continuity::render::render_check(&report, lang, timezone));
            }
            Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        Command::Justify { gap_id, reason, basis } => {
            authorize(&data_dir, "justify", evidence::roles::JUSTIFY, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let justification = evidence::continuity::justify::justify(&services.catalog, &gap_id, reason, &basis, &services.actor)
                .map_err(|e| anyhow::anyhow!(e.message().get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&justification)?);
            } else {
                println!("{} {}: {} ({})", lang.pick("已记录中断说明", "justification recorded for"), justification.gap_id, reason.label().get(lang), justification.actor);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Delay { recording, reason } => {
            authorize(&data_dir, "delay", evidence::roles::DELAY, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let filing = evidence::continuity::cli::file_delay(&services, &recording, &reason)
                .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&filing)?);
            } else {
                println!("{} {}", lang.pick("已登记延迟说明：", "delay filing recorded for"), filing["sha256"].as_str().unwrap_or(""));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Storage { action: StorageAction::Init } => {
            authorize(&data_dir, "storage init", evidence::roles::STORAGE_INIT, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let report = evidence::store::s3::init_storage(&services.config.store, &data_dir, services.store.as_ref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", lang.pick("存储初始化失败", "storage init failed")))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_text(lang));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Storage { action: StorageAction::Delete { tier, key, sha256 } } => {
            authorize(&data_dir, "storage delete", evidence::roles::STORAGE_DELETE, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let target = match (tier, key, sha256) {
                (Some(tier), Some(key), _) => evidence::store::delete::Target::Key { tier, key },
                (_, _, Some(sha256)) => evidence::store::delete::Target::Recording { sha256 },
                _ => anyhow::bail!("{}", lang.pick("请给出 --tier 和 KEY，或 --sha256", "give --tier and KEY, or --sha256")),
            };
            let report = evidence::store::delete::delete(&services, &target)
                .map_err(|e| anyhow::anyhow!(e.text().get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for deleted in &report.deleted {
                    let location = &deleted.location;
                    let primary = deleted.copy != "backup";
                    match (lang, primary) {
                        (Lang::Zh, true) => println!("已删除 {location}（主副本）"),
                        (Lang::Zh, false) => println!("已删除 {location}（备份副本）"),
                        (Lang::En, _) => println!("deleted {location} ({})", deleted.copy),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { tier, since } => {
            authorize(&data_dir, "verify", evidence::roles::VERIFY, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let since = match since {
                Some(text) => Some(
                    evidence::store::verify::parse_since(&text, services.config.timezone())
                        .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))?,
                ),
                None => None,
            };
            let options = evidence::store::verify::VerifyOptions { tier, since };
            let report = evidence::store::verify::verify(services.store.as_ref(), evidence::store::verify::Records { catalog: &services.catalog, actor: &services.actor }, &options)
                .map_err(|e| anyhow::anyhow!("{}: {e}", lang.pick("核验失败", "verification failed")))?;
            evidence::audit::anchor_latest(&services).map_err(|e| anyhow::anyhow!(e.text().get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_text(lang));
            }
            Ok(if report.failed > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
        Command::Promote { recording, trigger, note } => {
            authorize(&data_dir, "promote", evidence::roles::PROMOTE, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let promotion = evidence::store::retention::promote(
                services.store.as_ref(),
                &services.catalog,
                &recording,
                trigger,
                note.as_deref(),
                &services.actor,
            )
            .map_err(|e| anyhow::anyhow!(e.message().get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&promotion)?);
            } else {
                print!("{}", promotion.render_text(lang));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Redact(args) => {
            authorize(&data_dir, "redact", evidence::roles::REDACT, lang)?;
            evidence::redact::cli::run(&args, &data_dir, lang, cli.json)
                .map(ExitCode::from)
                .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))
        }
        Command::Disclose { action } => {
            // Approval and rejection also check, once the request is read,
            // the rule that nobody decides their own request.
            let (command, roles) = match &action {
                evidence::disclose::cli::DiscloseAction::Request { .. } => ("disclose request", evidence::roles::DISCLOSURE),
                evidence::disclose::cli::DiscloseAction::Export { .. } => ("disclose export", evidence::roles::DISCLOSURE),
                evidence::disclose::cli::DiscloseAction::Show { .. } => ("disclose show", evidence::roles::DISCLOSE_READ),
                evidence::disclose::cli::DiscloseAction::List => ("disclose list", evidence::roles::DISCLOSE_READ),
                evidence::disclose::cli::DiscloseAction::Approve { .. } => ("disclose approve", evidence::roles::DISCLOSE_DECIDE),
                evidence::disclose::cli::DiscloseAction::Reject { .. } => ("disclose reject", evidence::roles::DISCLOSE_DECIDE),
            };
            authorize(&data_dir, command, roles, lang)?;
            let services = Services::open(&data_dir, lang)?;
            evidence::disclose::cli::run(&action, &services, cli.json)
                .map(ExitCode::from)
                .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))
        }
        Command::Split(args) => {
            authorize(&data_dir, "split", evidence::roles::SPLIT, lang)?;
            evidence::split::cli::run(&args, &data_dir, lang, cli.json)
                .map(ExitCode::from)
                .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))
        }
        Command::Worker { watch, s3_incoming, settle_secs, lease_secs, until_idle } => {
            authorize(&data_dir, "worker", evidence::roles::WORKER, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let options = evidence::worker::WorkerOptions {
                watch,
                s3_incoming,
                settle: std::time::Duration::from_secs(settle_secs),
                lease: std::time::Duration::from_secs(lease_secs.max(1)),
                until_idle,
            };
            let summary = evidence::worker::run(&services, &evidence::stages::runner(), &options)
                .map_err(|e| anyhow::anyhow!(e.text().get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            }
            Ok(if summary.jobs_failed > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
        Command::Status => {
            authorize(&data_dir, "status", evidence::roles::STATUS, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let report = evidence::status::status(&services)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_text(lang));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reprocess { case_id, record } => {
            authorize(&data_dir, "reprocess", evidence::roles::REPROCESS, lang)?;
            let services = Services::open(&data_dir, lang)?;
            if let Some(path) = &record {
                let case = CaseRecord::load(path).map_err(|e| anyhow::anyhow!(e.message(lang)))?;
                evidence::worker::reprocess::replace_record(&services, &case_id, &case)
                    .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))?;
            }
            let report = evidence::worker::reprocess::reprocess(&services, &evidence::stages::runner(), &case_id)
                .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", evidence::worker::reprocess::render_text(&report, lang));
            }
            Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        Command::Report { from, to, out } => {
            authorize(&data_dir, "report", evidence::roles::REPORT, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let fail = |e: evidence::compliance::ComplianceError| anyhow::anyhow!(e.text().get(lang).to_string());
            let period = evidence::compliance::parse_period(&from, &to, &services.config.timezone).map_err(fail)?;
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("{} {}: {e}", lang.pick("无法创建文件夹", "cannot create folder"), dir.display()))?;
            }
            let report = evidence::compliance::report(&services, period, lang, out.as_deref()).map_err(fail)?;
            evidence::audit::record(&services, evidence::audit::Action::Report, &format!("{from}..{to}"), serde_json::to_value(&report.totals)?)
                .map_err(|e| anyhow::anyhow!(e.text().get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_text(lang));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { action: AuditAction::Verify { no_objects } } => {
            authorize(&data_dir, "audit verify", evidence::roles::AUDIT, lang)?;
            let services = Services::open(&data_dir, lang)?;
            let options = evidence::audit::VerifyOptions { objects: !no_objects };
            let report = evidence::audit::verify(&services, options).map_err(|e| anyhow::anyhow!(e.text().get(lang).to_string()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_text(lang));
            }
            Ok(if report.intact { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
    }
}

/// Refuses the command unless the acting person holds one of `needed`,
/// before the catalog or the store is opened; says so once when the
/// single-person default (no `[roles]`) let it run.
fn authorize(data_dir: &std::path::Path, command: &'static str, needed: &[evidence::disclose::Role], lang: Lang) -> anyhow::Result<()> {
    let config = evidence::config::Config::load(data_dir).map_err(|e| anyhow::anyhow!(e.text().get(lang).to_string()))?;
    let grant = evidence::roles::check(&config, command, needed).map_err(|e| anyhow::anyhow!(e.text().get(lang).to_string()))?;
    if let Some(notice) = grant.notice() {
        eprintln!("{}", notice.get(lang));
    }
    Ok(())
}

/// Logs to stderr; `EVIDENCE_LOG` (a tracing filter) overrides `-v`.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVIDENCE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
