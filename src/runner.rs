//! The runner: the order of the stages, their spans, their retries.
//!
//! A `job` is one uploaded file; it passes through the per-recording stages
//! (ingest, probe, then whatever later stages are registered), each inside
//! a `stage` span. Stages that need the whole batch (sessions of chapter
//! files, units of a case) run after every file is through. One file's
//! failure never stops the batch: it becomes that file's status.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info_span, warn};

use crate::case::CaseRecord;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::finding::Finding;
use crate::i18n::{Lang, Text};
use crate::ingest::{self, Ingested};
use crate::naming::{self, NameInfo};
use crate::probe::{self, Probe};
use crate::report::{FileReport, ProcessReport};
use crate::store::{LocalStore, ObjectStore, Tier};

/// Attempts of a stage whose error reports that a retry can help.
const STAGE_ATTEMPTS: u32 = 3;

/// First retry delay, doubled on each attempt: long enough for a locked
/// catalog or a busy disk to clear.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Files at least this large get a progress bar when stderr is a terminal.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

/// Settings, catalog and store: the services every stage shares.
pub struct Services {
    pub data_dir: PathBuf,
    pub config: Config,
    pub catalog: Catalog,
    pub store: Box<dyn ObjectStore>,
    pub ingest_tier: Tier,
    pub actor: String,
    pub lang: Lang,
}

impl Services {
    /// Opens the catalog and the local store under the data directory.
    pub fn open(data_dir: &Path, lang: Lang) -> anyhow::Result<Services> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            let text = Text::new(
                format!("无法创建数据目录 {}：{}", data_dir.display(), crate::i18n::io_error_zh(&e)),
                format!("cannot create data directory {}: {e}", data_dir.display()),
            );
            anyhow::anyhow!(text.get(lang).to_string())
        })?;
        let config = Config::load(data_dir).map_err(|e| anyhow::anyhow!(e.text().get(lang).to_string()))?;
        let catalog = Catalog::open_configured(data_dir, &config.catalog)?;
        let retention = crate::store::retention::RetentionPolicy::from_config(&config.store);
        let store_error = |e: crate::store::StoreError| anyhow::anyhow!(e.text().get(lang).to_string());
        let store: Box<dyn ObjectStore> = match config.store.backend {
            crate::config::Backend::Local => Box::new(
                LocalStore::open(&data_dir.join("store"))
                    .map_err(store_error)?
                    .with_retention(retention)
                    .with_backup(config.store.local.backup_dir.as_deref(), data_dir)
                    .map_err(store_error)?,
            ),
            crate::config::Backend::S3 => {
                let resume = Catalog::open_configured(data_dir, &config.catalog)?;
                Box::new(
                    crate::store::s3::S3Store::open(&config.store, data_dir, Some(Arc::new(resume)))
                        .map_err(store_error)?,
                )
            }
        };
        let ingest_tier = Tier::parse(&config.ingest_tier).ok_or_else(|| {
            anyhow::anyhow!(
                "{}",
                lang.pick(
                    &format!("配置：ingest_tier {:?} 不是存储层（routine、evidence、longterm、public）", config.ingest_tier),
                    &format!("config: ingest_tier {:?} is not a tier (routine, evidence, longterm, public)", config.ingest_tier),
                )
            )
        })?;
        Ok(Services {
            data_dir: data_dir.to_path_buf(),
            actor: config.actor(),
            config,
            catalog,
            store,
            ingest_tier,
            lang,
        })
    }
}

impl Drop for Services {
    /// Anchors the audit chain's last event when a command or a worker is
    /// done, which covers events appended without a store at hand.
    fn drop(&mut self) {
        if let Err(error) = crate::audit::anchor_latest(self) {
            warn!(%error, "audit chain's last event not anchored");
        }
    }
}

/// An error of one stage on one recording.
#[derive(Debug)]
pub struct StageError {
    pub message: Text,
    pub is_retryable: bool,
}

impl StageError {
    pub fn permanent(message: Text) -> StageError {
        StageError {
            message,
            is_retryable: false,
        }
    }
}

/// A recording on its way through the stages.
pub struct RecordingJob {
    pub path: PathBuf,
    pub name: Option<NameInfo>,
    pub ingested: Option<Ingested>,
    pub probe: Option<Probe>,
    /// Findings of the stages after the probe.
    pub findings: Vec<Finding>,
}

/// A stage that works on one recording at a time.
pub trait RecordingStage: Send + Sync {
    fn name(&self) -> &'static str;
    fn run(&self, services: &Services, job: &mut RecordingJob) -> Result<(), StageError>;
}

/// A stage that needs every recording of the batch (sessions, units).
pub trait BatchStage: Send + Sync {
    fn name(&self) -> &'static str;
    fn run(
        &self,
        services: &Services,
        case: Option<&CaseRecord>,
        jobs: &mut [RecordingJob],
        report: &mut ProcessReport,
    ) -> Result<(), StageError>;
}

pub struct Runner {
    pub recording_stages: Vec<Box<dyn RecordingStage>>,
    pub batch_stages: Vec<Box<dyn BatchStage>>,
}

/// One input of a batch: a file to process, an entry skipped with a
/// reason, or a path that could not be read, whose footage is therefore
/// not stored.
pub enum Input {
    File(PathBuf),
    Skipped { path: PathBuf, reason: Text },
    Unreadable { path: PathBuf, reason: Text },
}

impl Runner {
    /// Processes the given files and folders and builds the report.
    pub fn process(
        &self,
        services: &Services,
        inputs: &[PathBuf],
        case: Option<Arc<CaseRecord>>,
    ) -> ProcessReport {
        let mut report = ProcessReport::new(services);
        if let Some(case) = &case {
            let json = serde_json::to_string(case.as_ref()).expect("a case record serializes");
            if let Err(error) = services.catalog.upsert_case(&case.case_id, &json, &Utc::now().to_rfc3339()) {
                warn!(case = %case.case_id, %error, "case record not stored in the catalog");
            }
        }

        let mut jobs = Vec::new();
        for input in collect_inputs_outside(inputs, Some(&services.data_dir)) {
            match input {
                Input::Skipped { path, reason } => {
                    report.files.push(FileReport::skipped(&path, reason));
                }
                Input::Unreadable { path, reason } => {
                    report.files.push(FileReport::failed(&path, reason));
                }
                Input::File(path) if is_case_record(&path) => {
                    report.files.push(FileReport::skipped(&path, case_record_skipped()));
                }
                Input::File(path) => {
                    let (file_report, job) = self.process_file(services, &path);
                    report.files.push(file_report);
                    if let Some(job) = job {
                        jobs.push(job);
                    }
                }
            }
        }

        for stage in &self.batch_stages {
            let span = info_span!("stage", stage = stage.name());
            let _entered = span.enter();
            if let Err(error) = stage.run(services, case.as_deref(), &mut jobs, &mut report) {
                warn!(error = %error.message, "batch stage failed");
                report.errors.push(error.message);
            }
        }
        report
    }

    fn process_file(&self, services: &Services, path: &Path) -> (FileReport, Option<RecordingJob>) {
        let span = info_span!("job", file = %path.display());
        let _entered = span.enter();

        let file_name = ingest::file_name_of(path);
        let name = naming::parse_file_name(&file_name, &services.config.name_patterns, services.config.timezone());
        let mut job = RecordingJob {
            path: path.to_path_buf(),
            name,
            ingested: None,
            probe: None,
            findings: Vec::new(),
        };

        let ingested = {
            let span = info_span!("stage", stage = "ingest");
            let _entered = span.enter();
            let bar = progress_bar(path);
            let result = with_retries("ingest", || {
                ingest::ingest(services, path, job.name.as_ref(), bar.as_ref()).map_err(|e| {
                    let text = e.text();
                    StageError {
                        is_retryable: e.is_retryable(),
                        message: Text::new(format!("导入失败：{}", text.zh), format!("ingest failed: {}", text.en)),
                    }
                })
            });
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            result
        };
        let ingested = match ingested {
            Ok(ingested) => ingested,
            Err(error) => return (FileReport::failed(path, error.message), None),
        };
        job.ingested = Some(ingested.clone());

        {
            let span = info_span!("stage", stage = "probe");
            let _entered = span.enter();
            let probe = probe::probe(&probe_source(path, &ingested), job.name.as_ref(), ingested.ingested_at);
            record_probe(services, &ingested.sha256, &probe);
            job.probe = Some(probe);
        }

        let mut errors = Vec::new();
        for stage in &self.recording_stages {
            let span = info_span!("stage", stage = stage.name());
            let _entered = span.enter();
            if let Err(error) = with_retries(stage.name(), || stage.run(services, &mut job)) {
                warn!(error = %error.message, "stage failed");
                errors.push(error.message);
            }
        }

        let mut file_report = FileReport::from_job(&job);
        file_report.errors = errors;
        (file_report, Some(job))
    }
}

/// The file the probe reads: the stored original when the store keeps it
/// as a local file, so that the probe describes exactly the evidence bytes
/// even when the upload changes or vanishes after it was read; else the
/// upload itself.
fn probe_source(upload: &Path, ingested: &Ingested) -> PathBuf {
    let stored = PathBuf::from(&ingested.location);
    if stored.is_file() {
        stored
    } else {
        upload.to_path_buf()
    }
}

/// Stores the probe's facts and findings in the catalog; a failure here
/// degrades the catalog but loses nothing, since the original is stored.
pub fn record_probe(services: &Services, sha256: &str, probe: &Probe) {
    let reason = probe.reason.as_ref().map(|r| r.en.clone());
    let start = probe.start.to_rfc3339();
    let start_source = serde_json::to_value(probe.start_source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string));
    let json = serde_json::to_string(probe).expect("a probe serializes");
    let result = services
        .catalog
        .update_probe(
            sha256,
            probe.readable,
            reason.as_deref(),
            probe.device.as_deref(),
            probe.officer.as_deref(),
            Some(&start),
            start_source.as_deref(),
            &json,
        )
        .and_then(|()| {
            let rows: Vec<_> = probe.findings.iter().map(|f| f.to_row("probe")).collect();
            services.catalog.replace_findings(sha256, "probe", &rows)
        });
    if let Err(error) = result {
        warn!(%sha256, %error, "probe results not stored in the catalog");
    }
}

/// Runs a stage again while its error reports that a retry can help.
fn with_retries<T>(stage: &str, mut run: impl FnMut() -> Result<T, StageError>) -> Result<T, StageError> {
    let mut delay = RETRY_BACKOFF;
    let mut attempt = 1;
    loop {
        match run() {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable && attempt < STAGE_ATTEMPTS => {
                warn!(stage, attempt, error = %error.message, "retrying");
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn progress_bar(path: &Path) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    let bytes = std::fs::metadata(path).ok()?.len();
    if bytes < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(bytes);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(ingest::file_name_of(path));
    Some(bar)
}

/// Expands folders recursively into files, in name order. Links are
/// followed only when they stay inside the folder they were found in, and
/// linked folders are not entered, so a walk can neither escape nor loop.
pub fn collect_inputs(paths: &[PathBuf]) -> Vec<Input> {
    collect_inputs_outside(paths, None)
}

/// Expands folders like [`collect_inputs`], but reports the data directory
/// as skipped, given or met in a walk. Without this, `process .` beside the
/// default `./evidence-data` stores the catalog and the store as footage.
/// Uploads in a folder inside the data directory are still processed.
pub fn collect_inputs_outside(paths: &[PathBuf], data_dir: Option<&Path>) -> Vec<Input> {
    let excluded = data_dir.and_then(|dir| std::fs::canonicalize(dir).ok());
    let excluded = excluded.as_deref();
    let mut inputs = Vec::new();
    for path in paths {
        if is_excluded(path, excluded) {
            inputs.push(in_data_dir(path.clone()));
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => match std::fs::canonicalize(path) {
                Ok(root) => walk(path, &root, excluded, &mut inputs),
                Err(e) => inputs.push(not_readable(path, &e)),
            },
            Ok(meta) if meta.is_file() => inputs.push(Input::File(path.clone())),
            Ok(_) => inputs.push(not_regular(path.clone())),
            Err(e) => inputs.push(not_readable(path, &e)),
        }
    }
    inputs
}

/// Returns whether a file among the footage is a case record, that is a
/// JSON object with a `case_id`. Case records are read with `--case`, so
/// they are not stored as footage.
pub fn is_case_record(path: &Path) -> bool {
    /// Case records are small; a larger `.json` file is not read whole.
    const MAX_CASE_RECORD_BYTES: u64 = 4 << 20;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if !is_json || std::fs::metadata(path).map_or(true, |m| m.len() > MAX_CASE_RECORD_BYTES) {
        return false;
    }
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|value| value.get("case_id").is_some_and(|id| id.is_string()))
}

/// Returns the reason a case record found among the footage was skipped.
pub fn case_record_skipped() -> Text {
    Text::new(
        "这是案件记录，不是录像；请用 --case 指定",
        "this is a case record, not footage; give it with --case",
    )
}

fn not_readable(path: &Path, error: &std::io::Error) -> Input {
    Input::Unreadable {
        path: path.to_path_buf(),
        reason: Text::new(
            format!("无法访问：{}", crate::i18n::io_error_zh(error)),
            format!("cannot access: {error}"),
        ),
    }
}

/// Checks whether `path` resolves to the `excluded` folder itself.
fn is_excluded(path: &Path, excluded: Option<&Path>) -> bool {
    let Some(excluded) = excluded else {
        return false;
    };
    std::fs::canonicalize(path).is_ok_and(|real| real == excluded)
}

fn in_data_dir(path: PathBuf) -> Input {
    Input::Skipped {
        path,
        reason: Text::new(
            "这是本程序的数据目录（目录库和存储），不作为录像处理",
            "this is the program's data directory (catalog and store), so it is not footage",
        ),
    }
}

fn walk(dir: &Path, root: &Path, excluded: Option<&Path>, inputs: &mut Vec<Input>) {
    let mut entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(e) => {
            inputs.push(not_readable(dir, &e));
            return;
        }
    };
    entries.sort();
    for path in entries {
        let link_meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                inputs.push(not_readable(&path, &e));
                continue;
            }
        };
        if link_meta.file_type().is_symlink() {
            let target = std::fs::canonicalize(&path);
            match target {
                Ok(target) if target.starts_with(root) && target.is_file() => {
                    inputs.push(Input::File(path));
                }
                Ok(target) if target.starts_with(root) && target.is_dir() => {}
                Ok(target) if target.starts_with(root) => inputs.push(not_regular(path)),
                _ => inputs.push(Input::Skipped {
                    path,
                    reason: Text::new(
                        "链接指向所给文件夹之外（或已失效），未跟随",
                        "link points outside the given folder (or is broken) and was not followed",
                    ),
                }),
            }
        } else if link_meta.is_dir() {
            if is_excluded(&path, excluded) {
                inputs.push(in_data_dir(path));
            } else {
                walk(&path, root, excluded, inputs);
            }
        } else if link_meta.is_file() {
            inputs.push(Input::File(path));
        } else {
            inputs.push(not_regular(path));
        }
    }
}

/// Marks a pipe, socket or device as skipped, because reading one could
/// block or never end.
fn not_regular(path: PathBuf) -> Input {
    Input::Skipped {
        path,
        reason: Text::new("不是普通文件", "not a regular file"),
    }
}
