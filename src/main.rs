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
    /// Cut one clip per inspected unit and device from a case's recordings (lossless unless --reencode)
    Split(evidence::split::cli::SplitArgs),
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
    /// Cut one clip per inspected unit and device from a case's recordings (lossless unless --reencode)
    Split(evidence::split::cli::SplitArgs),
}

#[derive(Subcommand)]
enum StorageAction {
    /// Create missing buckets and install retention settings; report what each bucket supports
    Init,

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
        Command::Split(args) => evidence::split::cli::run(&args, &data_dir, lang, cli.json)
            .map(ExitCode::from)
            .map_err(|e| anyhow::anyhow!(e.get(lang).to_string())),
        Command::Storage { action: StorageAction::Init } => {
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
        Command::Verify { tier, since } => {
            let services = Services::open(&data_dir, lang)?;
            let since = match since {
                Some(text) => Some(
                    evidence::store::verify::parse_since(&text, services.config.timezone())
                        .map_err(|e| anyhow::anyhow!(e.get(lang).to_string()))?,
                ),
                None => None,
            };
            let options = evidence::store::verify::VerifyOptions { tier, since };
            let report = evidence::store::verify::verify(services.store.as_ref(), Some(&services.catalog), &options)
                .map_err(|e| anyhow::anyhow!("{}: {e}", lang.pick("核验失败", "verification failed")))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_text(lang));
            }
            Ok(if report.failed > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
        Command::Promote { recording, trigger, note } => {
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
        Command::Redact(args) => evidence::redact::cli::run(&args, &data_dir, lang, cli.json)
            .map(ExitCode::from)
            .map_err(|e| anyhow::anyhow!(e.get(lang).to_string())),
        Command::Split(args) => evidence::split::cli::run(&args, &data_dir, lang, cli.json)
            .map(ExitCode::from)
            .map_err(|e| anyhow::anyhow!(e.get(lang).to_string())),
    }
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
