//! The worker: processes every upload as it arrives, as durable jobs.
//!
//! `evidence worker --watch DIR` scans the upload folder, queues each
//! complete file as an `ingest` job in the catalog, and runs queued jobs
//! one at a time. Each stage is a job of its own ([`stages`]), claimed
//! under a lease that the worker renews while it works. A job whose error
//! a retry can cure goes back to the queue with exponential backoff; any
//! other failure leaves it `failed` with its reason, visible in
//! `evidence status`. A worker killed at any point leaves its job
//! `running` under a lease: a worker on the same machine takes it back at
//! once when the owner's process is gone, any other when the lease runs
//! out, and since every stage is idempotent the rerun neither loses nor
//! doubles an artefact.
//!
//! The queue is a table of the catalog rather than apalis: apalis-sql keeps
//! its jobs through sqlx in a pool and schema of its own beside the
//! rusqlite catalog and drives async tower services, so a claim could not
//! share the catalog's connection, dialect switch and lease query, and the
//! synchronous GStreamer stages would run inside `spawn_blocking`.

pub mod incoming;
pub mod reprocess;
pub mod stages;
pub mod watch;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use serde::Serialize;
use thiserror::Error;

use crate::catalog::{CatalogError, JobRow};
use crate::i18n::Text;
use crate::runner::{Runner, Services, StageError};
use stages::{FollowUp, Kind, Payload};

/// Lifetime of a claim without renewal: long enough to ride out a busy
/// catalog, short enough that another machine takes over a dead worker's
/// job within a minute.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How long a file must stay unchanged before it counts as complete: a
/// station's copy writes continuously, so seconds of silence mean it ended.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(5);

/// Pause between scans when there is nothing to do.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Attempts before a retryable failure counts as a failure.
const MAX_ATTEMPTS: u32 = 5;

/// First retry delay, doubled per attempt: 2, 4, 8, 16 s, so a store or
/// catalog that is back within half a minute loses no job.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);

/// A fault-injection point for the crash tests: `KIND:start` or `KIND:end`
/// makes the worker stop there (claimed, or done but not settled) until
/// it is killed.
const STALL_VARIABLE: &str = "EVIDENCE_WORKER_STALL";

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("cannot read the upload folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{}", .0.en)]
    Incoming(Text),
}

impl WorkerError {
    pub fn text(&self) -> Text {
        match self {
            WorkerError::Folder { path, source } => Text::new(
                format!("无法读取上传文件夹 {}：{source}", path.display()),
                self.to_string(),
            ),
            WorkerError::Catalog(e) => Text::new(format!("目录库错误：{e}"), self.to_string()),
            WorkerError::Incoming(text) => text.clone(),
        }
    }
}

/// Settings of one worker run.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub watch: PathBuf,
    /// A prefix of the store's bucket that stations upload into.
    pub s3_incoming: Option<String>,
    pub settle: Duration,
    pub lease: Duration,
    /// Exit once no job is queued or running (here or on another worker)
    /// and no upload is still being written.
    pub until_idle: bool,
}

/// Counts of one worker run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerSummary {
    pub owner: String,
    pub jobs_done: usize,
    pub jobs_retried: usize,
    pub jobs_failed: usize,
    pub leases_taken_back: usize,
}

/// Runs the worker until killed, or until idle with `until_idle`.
pub fn run(
    services: &Services,
    runner: &Runner,
    options: &WorkerOptions,
) -> Result<WorkerSummary, WorkerError> {
    if !options.watch.is_dir() {
        return Err(WorkerError::Folder {
            path: options.watch.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
        });
    }
    let owner = owner_id();
    let mut summary = WorkerSummary {
        owner: owner.clone(),
        leases_taken_back: take_back_dead_leases(services)?,
        ..WorkerSummary::default()
    };
    tracing::info!(%owner, watch = %options.watch.display(), "worker started");
    let stall = std::env::var(STALL_VARIABLE).ok();
    let mut watcher =
        watch::Watcher::new(&options.watch, options.settle).skipping(&services.data_dir);
    let incoming = match &options.s3_incoming {
        Some(prefix) => Some(
            incoming::Incoming::open(&services.config.store, prefix)
                .map_err(WorkerError::Incoming)?,
        ),
        None => None,
    };

    loop {
        let (settled, growing) = watcher.scan();
        for file in settled {
            let kind = if file.is_case_record() {
                Kind::CaseRecord
            } else {
                Kind::Ingest
            };
            let payload = Payload {
                path: Some(file.path.clone()),
                ..Payload::default()
            };
            if enqueue(services, kind, &file.subject(), &payload)? {
                tracing::info!(path = %file.path.display(), kind = kind.as_str(), "upload queued");
            }
        }
        if let Some(incoming) = &incoming {
            queue_incoming(services, incoming)?;
        }

        let now_ms = unix_ms();
        let claimed = services.catalog.claim_job(
            &owner,
            &Utc::now().to_rfc3339(),
            now_ms,
            now_ms + options.lease.as_millis() as i64,
        )?;
        let Some(job) = claimed else {
            if options.until_idle && growing == 0 && !has_pending(services)? {
                break;
            }
            summary.leases_taken_back += take_back_dead_leases(services)?;
            std::thread::sleep(IDLE_POLL);
            continue;
        };

        let span =
            tracing::info_span!("job", id = job.job_id, kind = %job.kind, subject = %job.subject);
        let _entered = span.enter();
        stall_if_asked(stall.as_deref(), &job.kind, "start");
        let outcome = run_leased(services, runner, &job, &owner, options.lease);
        stall_if_asked(stall.as_deref(), &job.kind, "end");
        match settle(services, &job, &owner, outcome)? {
            Settled::Done => summary.jobs_done += 1,
            Settled::Retry => summary.jobs_retried += 1,
            Settled::Failed => summary.jobs_failed += 1,
            Settled::Lost => {}
        }
    }
    Ok(summary)
}

enum Settled {
    Done,
    Retry,
    Failed,
    /// Another worker took the job over meanwhile; it settles it.
    Lost,
}

/// Runs the job while a second thread renews its lease. A panic in a
/// stage becomes a failure of the job instead of the end of the worker.
fn run_leased(
    services: &Services,
    runner: &Runner,
    job: &JobRow,
    owner: &str,
    lease: Duration,
) -> Result<Vec<FollowUp>, StageError> {
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let renew_every = lease / 3;
            let mut waited = Duration::ZERO;
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
                if waited >= renew_every {
                    waited = Duration::ZERO;
                    let until = unix_ms() + lease.as_millis() as i64;
                    match services.catalog.renew_lease(job.job_id, owner, until) {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = job.job_id, "lease lost to another worker")
                        }
                        Err(error) => tracing::warn!(job = job.job_id, %error, "lease not renewed"),
                    }
                }
            }
        });
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| stages::run_job(services, runner, job)));
        finished.store(true, Ordering::Relaxed);
        result.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(StageError::permanent(Text::new(
                format!("处理中断（程序错误）：{what}"),
                format!("the stage panicked: {what}"),
            )))
        })
    })
}

/// Records the outcome: follow-up jobs first, so that a crash between the
/// two only reruns this job, whose follow-ups are then already queued.
fn settle(
    services: &Services,
    job: &JobRow,
    owner: &str,
    outcome: Result<Vec<FollowUp>, StageError>,
) -> Result<Settled, WorkerError> {
    let now = Utc::now().to_rfc3339();
    let (status, not_before, error, settled) = match outcome {
        Ok(follow_ups) => {
            for follow_up in follow_ups {
                if follow_up.again {
                    let json =
                        serde_json::to_string(&follow_up.payload).expect("a payload serializes");
                    services.catalog.requeue_job(
                        follow_up.kind.as_str(),
                        &follow_up.subject,
                        &json,
                        &now,
                        unix_ms(),
                    )?;
                } else {
                    enqueue(
                        services,
                        follow_up.kind,
                        &follow_up.subject,
                        &follow_up.payload,
                    )?;
                }
            }
            ("done", unix_ms(), None, Settled::Done)
        }
        Err(error) if error.is_retryable && job.attempts < MAX_ATTEMPTS => {
            let delay = FIRST_BACKOFF * 2u32.pow(job.attempts.saturating_sub(1));
            tracing::warn!(attempt = job.attempts, delay_s = delay.as_secs(), error = %error.message, "job will be retried");
            (
                "queued",
                unix_ms() + delay.as_millis() as i64,
                Some(error.message),
                Settled::Retry,
            )
        }
        Err(error) => {
            tracing::error!(attempts = job.attempts, error = %error.message, "job failed");
            ("failed", unix_ms(), Some(error.message), Settled::Failed)
        }
    };
    let error_json = error.map(|text| serde_json::to_string(&text).expect("a text serializes"));
    let held = services.catalog.settle_job(
        job.job_id,
        owner,
        status,
        not_before,
        error_json.as_deref(),
        &now,
    )?;
    Ok(if held { settled } else { Settled::Lost })
}

/// Queues the objects of the incoming prefix. A listing that fails is
/// logged and tried again at the next scan, since the folder may still work.
fn queue_incoming(services: &Services, incoming: &incoming::Incoming) -> Result<(), WorkerError> {
    let objects = match incoming.scan() {
        Ok(objects) => objects,
        Err(error) => {
            tracing::warn!(bucket = %incoming.bucket, error = %error.en, "incoming uploads not listed");
            return Ok(());
        }
    };
    for object in objects {
        let payload = Payload {
            s3_bucket: Some(incoming.bucket.clone()),
            s3_key: Some(object.key.clone()),
            ..Payload::default()
        };
        if enqueue(
            services,
            Kind::Ingest,
            &object.subject(&incoming.bucket),
            &payload,
        )? {
            tracing::info!(key = %object.key, "incoming upload queued");
        }
    }
    Ok(())
}

fn enqueue(
    services: &Services,
    kind: Kind,
    subject: &str,
    payload: &Payload,
) -> Result<bool, WorkerError> {
    let json = serde_json::to_string(payload).expect("a payload serializes");
    Ok(services.catalog.enqueue_job(
        kind.as_str(),
        subject,
        &json,
        &Utc::now().to_rfc3339(),
        unix_ms(),
    )?)
}

fn has_pending(services: &Services) -> Result<bool, WorkerError> {
    Ok(services
        .catalog
        .jobs()?
        .iter()
        .any(|job| job.status == "queued" || job.status == "running"))
}

/// Frees the leases of workers of this machine whose process is gone.
fn take_back_dead_leases(services: &Services) -> Result<usize, WorkerError> {
    let host = host_name();
    let mut owners: Vec<String> = services
        .catalog
        .jobs()?
        .into_iter()
        .filter(|job| job.status == "running")
        .filter_map(|job| job.lease_owner)
        .filter(|owner| owner_is_dead_here(owner, &host))
        .collect();
    owners.sort();
    owners.dedup();
    let mut taken = 0;
    for owner in owners {
        taken += services
            .catalog
            .release_leases_of(&owner, &Utc::now().to_rfc3339())?;
        tracing::info!(%owner, "leases of a dead worker taken back");
    }
    Ok(taken)
}

/// `HOST:PID`: enough to tell whether the owner still lives on this machine.
fn owner_id() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

fn owner_is_dead_here(owner: &str, host: &str) -> bool {
    let Some((owner_host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if owner_host != host || pid == std::process::id() as i32 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn stall_if_asked(stall: Option<&str>, kind: &str, point: &str) {
    if stall.is_some_and(|s| s == format!("{kind}:{point}")) {
        eprintln!("worker stalled at {kind}:{point}");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
