//! The audit log: every use of stored footage, as an append-only chain.
//!
//! Article 16 forbids reading archived footage on one's own authority and
//! Article 19 makes deleting or altering records misconduct, so each
//! ingest, read, export, approval, justification, promotion and permitted
//! deletion appends an event (actor, action, object, time, detail) to the
//! catalog's `audit_events`. Each event carries the SHA-256 of the event
//! before it and its own SHA-256 over all of that, so `evidence audit
//! verify` finds an event that was changed, removed or moved and names it.
//!
//! Other modules call [`record`] (or [`record_once`] for a stage that may
//! run again after a crash). Stored footage is opened only through
//! [`read_stored`] (or [`log_read`]), which logs the `read` event first.
//!
//! Events cut off the end of the chain have no successor to name them.
//! So each event recorded through [`record`], and the last event when a
//! command ends, is also anchored in the object store ([`anchor`]).
//! `audit verify` names a tail that the newest anchor vouches for but the
//! catalog lacks. It also checks that
//! every object an ingest, derive or export event names is still stored
//! as recorded ([`objects`]).

use std::fmt::Write as _;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::catalog::{AuditEventRow, Catalog, CatalogError};
use crate::i18n::{Lang, Text};
use crate::runner::Services;
use crate::store::StoreError;

pub mod anchor;
pub mod objects;

use anchor::AnchorKey;
use objects::{ObjectProblem, ObjectsError};

/// The predecessor of the first event: 64 zeros, the size of a SHA-256.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What was done to the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// An upload became a stored original.
    Ingest,
    /// Stored footage was read (copied out, decoded, split, redacted).
    Read,
    /// A copy left the product (a disclosure export, a package).
    Export,
    /// A disclosure request was filed.
    Request,
    Approve,
    Reject,
    /// A gap was justified (Article 6).
    Justify,
    /// A late upload was explained (Article 11).
    DelayFiling,
    /// A recording was kept long-term (Article 13).
    Promote,
    /// An object whose retention had ended was deleted.
    Delete,
    /// A derived artefact (clip, redacted copy) was stored.
    Derive,
    /// A case was processed again with its current record.
    Reprocess,
    /// A compliance report was made.
    Report,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ingest => "ingest",
            Action::Read => "read",
            Action::Export => "export",
            Action::Request => "request",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Justify => "justify",
            Action::DelayFiling => "delay_filing",
            Action::Promote => "promote",
            Action::Delete => "delete",
            Action::Derive => "derive",
            Action::Reprocess => "reprocess",
            Action::Report => "report",
        }
    }
}

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("audit event {action} on {object} not recorded: {source}")]
    Catalog {
        action: &'static str,
        object: String,
        source: CatalogError,
    },
}

impl AuditError {
    pub fn is_retryable(&self) -> bool {
        let AuditError::Catalog { source, .. } = self;
        source.is_retryable()
    }

    /// The catalog failure underneath, for callers whose errors carry one.
    pub fn into_catalog(self) -> CatalogError {
        let AuditError::Catalog { source, .. } = self;
        source
    }

    pub fn text(&self) -> Text {
        let AuditError::Catalog {
            action,
            object,
            source,
        } = self;
        Text::new(
            format!("审计事件 {action}（{object}）未能记录：{source}"),
            self.to_string(),
        )
    }
}

/// Appends an event by the acting person of `services` and anchors it in
/// the object store.
pub fn record(
    services: &Services,
    action: Action,
    object: &str,
    detail: serde_json::Value,
) -> Result<AuditEventRow, AuditError> {
    let row = record_as(&services.catalog, &services.actor, action, object, detail)?;
    anchor_event(services, &row);
    Ok(row)
}

/// Anchors the newest event of the chain. [`record`] anchors its own
/// events; this covers the ones appended through [`record_as`] (reads,
/// justifications, promotions), which has no store at hand. It runs when
/// [`Services`] is dropped at the end of a command. A failed anchor write
/// is only logged, so the error returned is a failed read of the chain.
pub fn anchor_latest(services: &Services) -> Result<(), AuditError> {
    let last = services
        .catalog
        .last_audit_event()
        .map_err(|source| AuditError::Catalog {
            action: "anchor",
            object: anchor::ANCHOR_PREFIX.to_string(),
            source,
        })?;
    if let Some(last) = last {
        anchor_event(services, &last);
    }
    Ok(())
}

/// Writes the anchor of an event that is already in the chain. A failed
/// write loses no event, and the next anchor vouches for this one too,
/// so it is logged and the command goes on.
fn anchor_event(services: &Services, event: &AuditEventRow) {
    if let Err(error) = anchor::write_anchor(services.store.as_ref(), event) {
        tracing::warn!(
            seq = event.seq,
            %error,
            "audit head anchor not written; a later event's anchor covers this event"
        );
    }
}

/// Appends an event unless one of the same action on the same object is
/// already in the chain: a stage rerun after a crash logs its fact once.
pub fn record_once(
    services: &Services,
    action: Action,
    object: &str,
    detail: serde_json::Value,
) -> Result<(), AuditError> {
    let wrap = |source| AuditError::Catalog {
        action: action.as_str(),
        object: object.to_string(),
        source,
    };
    if services
        .catalog
        .has_audit_event(action.as_str(), object)
        .map_err(wrap)?
    {
        return Ok(());
    }
    record(services, action, object, detail).map(|_| ())
}

/// Appends an event by `actor`.
pub fn record_as(
    catalog: &Catalog,
    actor: &str,
    action: Action,
    object: &str,
    detail: serde_json::Value,
) -> Result<AuditEventRow, AuditError> {
    let at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let detail_json = detail.to_string();
    let hash_of = |prev: &str| event_hash(prev, &at, actor, action.as_str(), object, &detail_json);
    let row = catalog
        .append_audit_event(
            &at,
            actor,
            action.as_str(),
            object,
            &detail_json,
            GENESIS,
            &hash_of,
        )
        .map_err(|source| AuditError::Catalog {
            action: action.as_str(),
            object: object.to_string(),
            source,
        })?;
    tracing::debug!(
        seq = row.seq,
        action = action.as_str(),
        object,
        "audit event recorded"
    );
    Ok(row)
}

/// SHA-256 over the predecessor's hash and the event's fields, as a JSON
/// array so that no field can bleed into the next. The sequence number is
/// left out, so that a moved event still matches its own hash and is
/// reported as moved rather than changed.
pub fn event_hash(
    prev_hash: &str,
    at: &str,
    actor: &str,
    action: &str,
    object: &str,
    detail_json: &str,
) -> String {
    let fields = serde_json::json!([prev_hash, at, actor, action, object, detail_json]);
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

/// How an event breaks the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Its fields no longer match its hash, or its hash was rewritten.
    Changed,
    /// One or more events before it are gone.
    Removed,
    /// It stands before an event that was recorded before it.
    Reordered,
}

/// One break of the chain, naming the event.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub seq: i64,
    pub kind: ProblemKind,
    pub action: String,
    pub object: String,
    pub at: String,
    pub message: Text,
}

/// Events that the newest anchor vouches for but the chain lacks.
#[derive(Clone, Debug, Serialize)]
pub struct MissingTail {
    /// First missing sequence number: one past the chain's last event.
    pub from_seq: i64,
    /// Last missing sequence number: the newest anchor's event.
    pub to_seq: i64,
    /// Key of the newest anchor, in the evidence tier.
    pub anchor_key: String,
    pub anchor_hash: String,
    /// The anchored event as the anchor describes it, where it can be read.
    pub anchor_action: Option<String>,
    pub anchor_object: Option<String>,
    pub anchor_at: Option<String>,
    pub message: Text,
}

/// The outcome of `evidence audit verify`.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub checked: usize,
    pub intact: bool,
    /// Hash of the last event in the catalog.
    pub head_hash: Option<String>,
    pub problems: Vec<Problem>,
    /// Anchors found in the object store.
    pub anchors: usize,
    /// The newest anchor: the last event the chain must reach.
    pub anchor: Option<AnchorKey>,
    pub missing_tail: Option<MissingTail>,
    /// Objects named by events and looked up; `null` with `--no-objects`.
    pub objects_checked: Option<usize>,
    pub objects_missing: Vec<ObjectProblem>,
    pub objects_changed: Vec<ObjectProblem>,
}

/// Checks of `audit verify` beyond the chain.
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    /// Look up the objects that ingest, derive and export events name.
    pub objects: bool,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions { objects: true }
    }
}

/// Failure of `audit verify` to finish.
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("the audit chain cannot be read: {0}")]
    Catalog(#[from] CatalogError),
    #[error("the audit anchors cannot be listed from the store: {0}")]
    Anchors(#[source] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectsError),
}

impl VerifyError {
    pub fn text(&self) -> Text {
        match self {
            VerifyError::Catalog(e) => Text::new(format!("无法读取审计链：{e}"), self.to_string()),
            VerifyError::Anchors(e) => {
                Text::new(format!("无法从存储中列出审计锚点：{e}"), self.to_string())
            }
            VerifyError::Objects(e) => e.text(),
        }
    }
}

impl VerifyReport {
    pub fn render_text(&self, lang: Lang) -> String {
        let mut out = String::new();
        if self.intact {
            let _ = writeln!(
                out,
                "{} {} {}",
                lang.pick("审计链完整：已核验", "audit chain intact:"),
                self.checked,
                lang.pick("条事件", "events checked")
            );
        } else {
            let is_chain_whole = self.problems.is_empty() && self.missing_tail.is_none();
            let headline = if is_chain_whole {
                lang.pick(
                    "审计链完整，但存储对象与记录不符：已核验",
                    "audit chain intact but stored objects differ:",
                )
            } else {
                lang.pick("审计链已被改动：已核验", "audit chain broken:")
            };
            let _ = writeln!(
                out,
                "{} {} {}{}{} {}",
                headline,
                self.checked,
                lang.pick("条事件", "events checked"),
                lang.pick("，", ", "),
                self.problems.len()
                    + usize::from(self.missing_tail.is_some())
                    + self.objects_missing.len()
                    + self.objects_changed.len(),
                lang.pick("处问题", "problems")
            );
        }
        if let Some(head) = &self.head_hash {
            let _ = writeln!(out, "  {} {head}", lang.pick("最新事件哈希", "head hash"));
        }
        match &self.anchor {
            Some(anchor) => {
                let _ = writeln!(
                    out,
                    "  {} #{} {} ({} {})",
                    lang.pick("最新锚点", "newest anchor"),
                    anchor.seq,
                    anchor.hash,
                    self.anchors,
                    lang.pick("个锚点", "anchors")
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {}",
                    lang.pick(
                        "存储中没有审计锚点：无法发现链尾被截断",
                        "no audit anchors in the store: a cut-off tail cannot be seen"
                    )
                );
            }
        }
        if let Some(tail) = &self.missing_tail {
            let _ = writeln!(out, "  {}", tail.message.get(lang));
        }
        for problem in &self.problems {
            let _ = writeln!(
                out,
                "  #{} {} {}: {}",
                problem.seq,
                problem.action,
                problem.object,
                problem.message.get(lang)
            );
        }
        let separator = lang.pick("，", ", ");
        match self.objects_checked {
            Some(checked) => {
                let _ = writeln!(
                    out,
                    "  {} {checked}{separator}{} {}{separator}{} {}",
                    lang.pick("已查对存储对象", "stored objects looked up:"),
                    lang.pick("缺失", "missing"),
                    self.objects_missing.len(),
                    lang.pick("不符", "changed"),
                    self.objects_changed.len()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {}",
                    lang.pick(
                        "未查对存储对象（--no-objects）",
                        "stored objects not looked up (--no-objects)"
                    )
                );
            }
        }
        for object in self.objects_missing.iter().chain(&self.objects_changed) {
            let _ = writeln!(out, "  {}", object.message.get(lang));
        }
        out
    }
}

/// Walks the chain and names every event that was changed, removed or
/// moved, compares it with the anchors in the object store, and looks up
/// the objects its events name.
pub fn verify(services: &Services, options: VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let events = services.catalog.audit_events()?;
    let mut report = verify_events(&events);

    let anchors = anchor::list_all_anchors(services.store.as_ref()).map_err(VerifyError::Anchors)?;
    let (anchor_problems, missing_tail) = compare_anchors(&events, &anchors);
    for problem in anchor_problems {
        if !report.problems.iter().any(|p| p.seq == problem.seq) {
            report.problems.push(problem);
        }
    }
    report.missing_tail = missing_tail.map(|mut tail| {
        describe_tail(services.store.as_ref(), &mut tail);
        tail
    });
    report.anchors = anchors.len();
    report.anchor = anchors.last().cloned();

    if options.objects {
        let objects = objects::check_objects(services.store.as_ref(), &services.catalog, &events)?;
        report.objects_checked = Some(objects.checked);
        report.objects_missing = objects.missing;
        report.objects_changed = objects.changed;
    }
    report.intact = report.problems.is_empty()
        && report.missing_tail.is_none()
        && report.objects_missing.is_empty()
        && report.objects_changed.is_empty();
    Ok(report)
}

/// Compares the chain with the anchors: returns the events whose hash is
/// not the one anchored for their sequence number (the chain was rewritten
/// from there), and the tail the newest anchor vouches for but the chain
/// lacks. Events removed from inside the chain or moved are left to
/// [`verify_events`], which names them by their neighbours.
fn compare_anchors(
    events: &[AuditEventRow],
    anchors: &[AnchorKey],
) -> (Vec<Problem>, Option<MissingTail>) {
    let by_seq: std::collections::HashMap<i64, &AuditEventRow> =
        events.iter().map(|e| (e.seq, e)).collect();
    let mut anchored_at: std::collections::HashMap<&str, Vec<i64>> =
        std::collections::HashMap::new();
    for anchor in anchors {
        anchored_at
            .entry(anchor.hash.as_str())
            .or_default()
            .push(anchor.seq);
    }
    let mut problems = Vec::new();
    for anchor in anchors {
        let Some(event) = by_seq.get(&anchor.seq) else {
            continue;
        };
        // An event anchored under another number was moved, which the
        // chain walk names as reordered.
        let is_moved = anchored_at
            .get(event.hash.as_str())
            .is_some_and(|seqs| seqs.iter().any(|&seq| seq != event.seq));
        if event.hash == anchor.hash || is_moved {
            continue;
        }
        problems.push(Problem {
            seq: event.seq,
            kind: ProblemKind::Changed,
            action: event.action.clone(),
            object: event.object.clone(),
            at: event.at.clone(),
            message: Text::new(
                format!(
                    "事件 #{} 的哈希不是存储中锚点 {} 记录的哈希 {}：审计链从此处起被改写过",
                    event.seq, anchor.key, anchor.hash
                ),
                format!(
                    "event #{} does not have the hash {} that anchor {} recorded: the chain was rewritten from here on",
                    event.seq, anchor.hash, anchor.key
                ),
            ),
        });
        // Every later event differs too once the chain was rewritten, so
        // the first one is what the auditor needs.
        break;
    }

    let last_seq = events.last().map(|e| e.seq).unwrap_or(0);
    let missing_tail = anchors
        .last()
        .filter(|newest| newest.seq > last_seq)
        .map(|newest| MissingTail {
            from_seq: last_seq + 1,
            to_seq: newest.seq,
            anchor_key: newest.key.clone(),
            anchor_hash: newest.hash.clone(),
            anchor_action: None,
            anchor_object: None,
            anchor_at: None,
            message: Text::new("", ""),
        });
    (problems, missing_tail)
}

/// Fills in the anchored event's description and the message of a
/// missing tail; an anchor whose content cannot be read still has its key.
fn describe_tail(store: &dyn crate::store::ObjectStore, tail: &mut MissingTail) {
    let content = anchor::read_anchor(store, &tail.anchor_key).or_else(|error| match store.backup() {
        Some(backup) => anchor::read_anchor(backup, &tail.anchor_key),
        None => Err(error),
    });
    match content {
        Ok(Some(content)) if content.seq == tail.to_seq && content.hash == tail.anchor_hash => {
            tail.anchor_action = Some(content.action);
            tail.anchor_object = Some(content.object);
            tail.anchor_at = Some(content.at);
        }
        Ok(_) => {
            tracing::warn!(key = %tail.anchor_key, "audit anchor content does not match its key")
        }
        Err(error) => {
            tracing::warn!(key = %tail.anchor_key, %error, "audit anchor content not readable")
        }
    }
    let range = if tail.from_seq == tail.to_seq {
        format!("#{}", tail.to_seq)
    } else {
        format!("#{}..#{}", tail.from_seq, tail.to_seq)
    };
    let described = match (&tail.anchor_action, &tail.anchor_object, &tail.anchor_at) {
        (Some(action), Some(object), Some(at)) => Some((action, object, at)),
        _ => None,
    };
    let (zh_event, en_event) = match described {
        Some((action, object, at)) => (
            format!("{action} {object}（{at}）"),
            format!("{action} {object} at {at}"),
        ),
        None => (
            String::from("（锚点内容无法读取）"),
            String::from("(anchor content not readable)"),
        ),
    };
    tail.message = Text::new(
        format!(
            "事件 {range} 缺失：存储中的锚点 {} 表明事件 #{} 是 {zh_event}，哈希 {}；审计链只到 #{}",
            tail.anchor_key,
            tail.to_seq,
            tail.anchor_hash,
            tail.from_seq - 1
        ),
        format!(
            "{} {range} {}: the anchor {} says event #{} was {en_event} with hash {}; the chain ends at #{}",
            if tail.from_seq == tail.to_seq { "event" } else { "events" },
            if tail.from_seq == tail.to_seq { "is missing" } else { "are missing" },
            tail.anchor_key,
            tail.to_seq,
            tail.anchor_hash,
            tail.from_seq - 1
        ),
    );
}

fn verify_events(events: &[AuditEventRow]) -> VerifyReport {
    let position_of_hash: std::collections::HashMap<&str, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.hash.as_str(), i))
        .collect();
    let mut problems = Vec::new();
    let problem = |event: &AuditEventRow, kind, message| Problem {
        seq: event.seq,
        kind,
        action: event.action.clone(),
        object: event.object.clone(),
        at: event.at.clone(),
        message,
    };

    for (i, event) in events.iter().enumerate() {
        let recomputed = event_hash(
            &event.prev_hash,
            &event.at,
            &event.actor,
            &event.action,
            &event.object,
            &event.detail_json,
        );
        if recomputed != event.hash {
            problems.push(problem(
                event,
                ProblemKind::Changed,
                Text::new(
                    format!("事件 #{} 的内容与其哈希不符：记录后被改动过", event.seq),
                    format!(
                        "event #{} does not match its hash: it was changed after it was recorded",
                        event.seq
                    ),
                ),
            ));
        }

        let expected_prev = if i == 0 {
            GENESIS
        } else {
            events[i - 1].hash.as_str()
        };
        if event.prev_hash == expected_prev {
            continue;
        }
        let previous_seq = if i == 0 { 0 } else { events[i - 1].seq };
        match position_of_hash.get(event.prev_hash.as_str()) {
            Some(&j) if j > i => problems.push(problem(
                event,
                ProblemKind::Reordered,
                Text::new(
                    format!("事件 #{} 排在事件 #{} 之前，但记录时间在其之后：事件顺序被调换过", event.seq, events[j].seq),
                    format!(
                        "event #{} stands before event #{} although it was recorded after it: events were reordered",
                        event.seq, events[j].seq
                    ),
                ),
            )),
            Some(_) => problems.push(problem(
                event,
                ProblemKind::Reordered,
                Text::new(
                    format!("事件 #{} 不接在事件 #{} 之后：事件顺序被调换过", event.seq, previous_seq),
                    format!("event #{} does not follow event #{}: events were reordered", event.seq, previous_seq),
                ),
            )),
            None if i > 0 && event.seq == previous_seq + 1 && event.prev_hash != GENESIS => problems.push(problem(
                &events[i - 1],
                ProblemKind::Changed,
                Text::new(
                    format!("事件 #{} 的哈希被改写过：其后的事件 #{} 指向另一个哈希", previous_seq, event.seq),
                    format!("event #{} had its hash rewritten: event #{} after it links to another hash", previous_seq, event.seq),
                ),
            )),
            None => problems.push(problem(
                event,
                ProblemKind::Removed,
                Text::new(
                    format!("事件 #{} 之前（#{} 之后）的事件被删除了", event.seq, previous_seq),
                    format!("events before #{} (after #{}) were removed", event.seq, previous_seq),
                ),
            )),
        }
    }

    VerifyReport {
        checked: events.len(),
        intact: problems.is_empty(),
        head_hash: events.last().map(|e| e.hash.clone()),
        problems,
        anchors: 0,
        anchor: None,
        missing_tail: None,
        objects_checked: None,
        objects_missing: Vec::new(),
        objects_changed: Vec::new(),
    }
}

/// A read of stored footage, described for its `read` event (Article 16).
#[derive(Clone, Debug)]
pub struct StoredRead<'a> {
    pub tier: crate::store::Tier,
    pub key: &'a str,
    /// The object's SHA-256 when the caller knows it (a recording, a
    /// disclosure item): the event's object, so that every use of one
    /// recording is found under its hash, as ingest and export log it.
    pub sha256: Option<&'a str>,
    /// The purpose of the read: `split`, `redact`, `fixity check`, ...
    pub purpose: &'static str,
    /// More facts for the event's detail, such as the request number.
    pub extra: Option<(&'static str, &'a str)>,
}

impl StoredRead<'_> {
    /// Returns the event's object: the SHA-256, else `TIER/KEY`.
    pub fn object(&self) -> String {
        match self.sha256 {
            Some(sha256) => sha256.to_string(),
            None => format!("{}/{}", self.tier.as_str(), self.key),
        }
    }

    fn detail(&self) -> serde_json::Value {
        let mut detail = serde_json::json!({
            "tier": self.tier.as_str(),
            "key": self.key,
            "purpose": self.purpose,
        });
        if let Some((name, value)) = self.extra {
            detail[name] = serde_json::Value::String(value.to_string());
        }
        detail
    }
}

/// Proof that a read of a stored object was logged. It is the only way
/// the product opens stored footage, so every reader logs first.
#[derive(Debug)]
pub struct LoggedRead {
    tier: crate::store::Tier,
    key: String,
    /// Sequence number of the `read` event.
    pub seq: i64,
}

impl LoggedRead {
    /// Opens the object, from the primary store or a backup copy.
    pub fn open(
        &self,
        store: &dyn crate::store::ObjectStore,
    ) -> Result<Box<dyn std::io::Read + Send>, crate::store::StoreError> {
        store.open(self.tier, &self.key)
    }

    /// Returns the store's own file when the object is one on this machine,
    /// so that a reader that needs a path (GStreamer, the index reader)
    /// reads it in place. Returns `None` when the object has to be opened.
    pub fn local_file(
        &self,
        store: &dyn crate::store::ObjectStore,
    ) -> Result<Option<std::path::PathBuf>, crate::store::StoreError> {
        let info = store
            .head(self.tier, &self.key)?
            .ok_or_else(|| crate::store::StoreError::NotFound {
                tier: self.tier.as_str(),
                key: self.key.clone(),
            })?;
        let path = std::path::PathBuf::from(info.location);
        Ok(path.is_file().then_some(path))
    }
}

/// Appends (and anchors) the `read` event of the acting person of
/// `services`, before the object is read.
pub fn read_stored(services: &Services, read: &StoredRead<'_>) -> Result<LoggedRead, AuditError> {
    let row = record(services, Action::Read, &read.object(), read.detail())?;
    Ok(LoggedRead {
        tier: read.tier,
        key: read.key.to_string(),
        seq: row.seq,
    })
}

/// Appends the `read` event of `actor` before the object is read, for a
/// caller that has no services at hand. That caller anchors the chain
/// with [`anchor_latest`] once its reads are logged.
pub fn log_read(catalog: &Catalog, actor: &str, read: &StoredRead<'_>) -> Result<LoggedRead, AuditError> {
    let row = record_as(catalog, actor, Action::Read, &read.object(), read.detail())?;
    Ok(LoggedRead {
        tier: read.tier,
        key: read.key.to_string(),
        seq: row.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditEventRow> {
        let mut events = Vec::new();
        let mut prev = GENESIS.to_string();
        for i in 1..=n {
            let at = format!("2024-05-01T10:00:{i:02}Z");
            let object = format!("object-{i}");
            let hash = event_hash(&prev, &at, "op", "read", &object, "{}");
            events.push(AuditEventRow {
                seq: i as i64,
                at,
                actor: "op".into(),
                action: "read".into(),
                object,
                detail_json: "{}".into(),
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        events
    }

    #[test]
    fn untouched_chain_is_intact() {
        let report = verify_events(&chain(5));
        assert!(report.intact);
        assert_eq!(report.checked, 5);
    }

    #[test]
    fn changed_field_is_named() {
        let mut events = chain(5);
        events[2].actor = "someone-else".into();
        let report = verify_events(&events);
        assert_eq!(report.problems.len(), 1);
        assert_eq!(
            (report.problems[0].seq, report.problems[0].kind),
            (3, ProblemKind::Changed)
        );
    }

    #[test]
    fn rewritten_hash_is_named_as_changed() {
        let mut events = chain(5);
        events[2].object = "other".into();
        events[2].hash = event_hash(
            &events[2].prev_hash,
            &events[2].at,
            "op",
            "read",
            "other",
            "{}",
        );
        let report = verify_events(&events);
        assert_eq!(report.problems.len(), 1);
        assert_eq!(
            (report.problems[0].seq, report.problems[0].kind),
            (3, ProblemKind::Changed)
        );
    }

    #[test]
    fn removed_event_is_named_by_its_successor() {
        let mut events = chain(5);
        events.remove(2);
        let report = verify_events(&events);
        assert_eq!(report.problems.len(), 1);
        assert_eq!(
            (report.problems[0].seq, report.problems[0].kind),
            (4, ProblemKind::Removed)
        );
    }

    #[test]
    fn swapped_events_are_named_as_reordered() {
        let mut events = chain(5);
        events.swap(1, 2);
        events[1].seq = 2;
        events[2].seq = 3;
        let report = verify_events(&events);
        assert!(!report.intact);
        assert!(report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Reordered));
        assert_eq!(report.problems[0].seq, 2);
    }
}
