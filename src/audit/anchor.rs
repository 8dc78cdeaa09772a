//! Head anchors: the latest audit event, copied out of the catalog into the
//! object store, so that events cut off the end of the chain are seen.
//!
//! A removed or changed event is found through the event after it, but the
//! last events of the chain have nothing after them: whoever can delete
//! rows from the catalog can shorten the chain and it still verifies. So
//! after each event is appended, a small object `audit/head/<seq>-<hash>.json`
//! goes into the evidence tier. The store never overwrites a key, and S3
//! locks the object like the footage beside it, so the hand that rewrites
//! the catalog cannot take an anchor back. `audit verify` compares the
//! chain with the anchors.
//!
//! The key carries the sequence number and the event hash, so workers that
//! append to one PostgreSQL catalog write different keys, and an anchor
//! written again after a crash has the same bytes under the same key.

use serde::{Deserialize, Serialize};

use crate::catalog::AuditEventRow;
use crate::store::{ObjectStore, StoreError, Tier};

/// Tier of the anchors: evidence objects never expire by lifecycle and are
/// object-locked where the store supports it.
pub const ANCHOR_TIER: Tier = Tier::Evidence;

/// Key prefix of the anchors inside their tier.
pub const ANCHOR_PREFIX: &str = "audit/head/";

/// Digits of the zero-padded sequence number in a key, so that keys sort
/// by sequence: a chain of 10^12 events is far beyond any bureau.
const SEQ_DIGITS: usize = 12;

/// Content of one anchor: the event it vouches for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
    pub at: String,
    pub action: String,
    pub object: String,
}

impl Anchor {
    pub fn of(event: &AuditEventRow) -> Anchor {
        Anchor {
            seq: event.seq,
            hash: event.hash.clone(),
            at: event.at.clone(),
            action: event.action.clone(),
            object: event.object.clone(),
        }
    }

    pub fn key(&self) -> String {
        anchor_key(self.seq, &self.hash)
    }
}

/// An anchor found in the store, as its key names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnchorKey {
    pub seq: i64,
    pub hash: String,
    pub key: String,
}

pub fn anchor_key(seq: i64, hash: &str) -> String {
    format!(
        "{ANCHOR_PREFIX}{seq:0width$}-{hash}.json",
        width = SEQ_DIGITS
    )
}

/// Returns whether a key of the anchor tier is an audit anchor, which
/// carries no manifest because its key says all it vouches for.
pub fn is_anchor(key: &str) -> bool {
    key.starts_with(ANCHOR_PREFIX)
}

/// Reads the sequence number and hash out of an anchor key; `None` for a
/// key of another shape.
pub fn parse_anchor_key(key: &str) -> Option<AnchorKey> {
    let name = key.strip_prefix(ANCHOR_PREFIX)?.strip_suffix(".json")?;
    let (seq, hash) = name.split_once('-')?;
    let is_hash = hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit());
    if !is_hash || seq.is_empty() || !seq.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(AnchorKey {
        seq: seq.parse().ok()?,
        hash: hash.to_string(),
        key: key.to_string(),
    })
}

/// Writes the anchor of `event` unless it is already stored. The bytes
/// depend only on the event, so two processes racing to write the same
/// anchor write the same bytes, which the store accepts under one key.
pub fn write_anchor(store: &dyn ObjectStore, event: &AuditEventRow) -> Result<(), StoreError> {
    let anchor = Anchor::of(event);
    if store.head(ANCHOR_TIER, &anchor.key())?.is_some() {
        return Ok(());
    }
    let bytes = serde_json::to_vec(&anchor).expect("an anchor serializes");
    store.put_small(ANCHOR_TIER, &anchor.key(), &bytes)?;
    Ok(())
}

/// Lists every anchor in the store, by sequence number. Keys under the
/// prefix that are not anchors are skipped.
pub fn list_anchors(store: &dyn ObjectStore) -> Result<Vec<AnchorKey>, StoreError> {
    let mut anchors: Vec<AnchorKey> = store
        .list(ANCHOR_TIER, ANCHOR_PREFIX)?
        .iter()
        .filter_map(|key| parse_anchor_key(key))
        .collect();
    anchors.sort_by_key(|a| a.seq);
    Ok(anchors)
}

/// Lists the anchors of the store and of its separate backup, so that
/// anchors deleted from one copy still vouch for the chain.
pub fn list_all_anchors(store: &dyn ObjectStore) -> Result<Vec<AnchorKey>, StoreError> {
    let mut anchors = list_anchors(store)?;
    if let Some(backup) = store.backup() {
        anchors.extend(list_anchors(backup)?);
        anchors.sort_by(|a, b| a.seq.cmp(&b.seq).then_with(|| a.key.cmp(&b.key)));
        anchors.dedup_by(|a, b| a.key == b.key);
    }
    Ok(anchors)
}

/// Reads an anchor's content, to show what the missing event was.
pub fn read_anchor(store: &dyn ObjectStore, key: &str) -> Result<Option<Anchor>, StoreError> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut store.open(ANCHOR_TIER, key)?, &mut text).map_err(
        |source| StoreError::Io {
            path: key.into(),
            source,
        },
    )?;
    Ok(serde_json::from_str(&text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_key_round_trips() {
        let hash = "ab".repeat(32);
        let key = anchor_key(42, &hash);
        assert_eq!(key, format!("audit/head/000000000042-{hash}.json"));
        let parsed = parse_anchor_key(&key).unwrap();
        assert_eq!((parsed.seq, parsed.hash.as_str()), (42, hash.as_str()));
    }

    /// A chain of `n` linked events, as `record_as` would append them.
    fn chain(n: i64) -> Vec<AuditEventRow> {
        let mut events = Vec::new();
        let mut prev = crate::audit::GENESIS.to_string();
        for seq in 1..=n {
            let at = format!("2024-05-01T10:00:{seq:02}Z");
            let hash = crate::audit::event_hash(&prev, &at, "op", "read", "x", "{}");
            events.push(AuditEventRow {
                seq,
                at,
                actor: "op".into(),
                action: "read".into(),
                object: "x".into(),
                detail_json: "{}".into(),
                prev_hash: prev,
                hash: hash.clone(),
            });
            prev = hash;
        }
        events
    }

    fn anchors_of(events: &[AuditEventRow]) -> Vec<AnchorKey> {
        events
            .iter()
            .map(|e| parse_anchor_key(&anchor_key(e.seq, &e.hash)).unwrap())
            .collect()
    }

    #[test]
    fn anchored_chain_has_no_problem() {
        let events = chain(4);
        let (problems, tail) = crate::audit::compare_anchors(&events, &anchors_of(&events));
        assert!(problems.is_empty());
        assert!(tail.is_none());
    }

    #[test]
    fn cut_tail_is_the_range_past_the_chain() {
        let events = chain(5);
        let anchors = anchors_of(&events);
        let (problems, tail) = crate::audit::compare_anchors(&events[..2], &anchors);
        assert!(problems.is_empty());
        let tail = tail.unwrap();
        assert_eq!((tail.from_seq, tail.to_seq), (3, 5));
        assert_eq!(tail.anchor_hash, events[4].hash);
    }

    #[test]
    fn moved_event_is_left_to_the_chain_walk() {
        let events = chain(4);
        let anchors = anchors_of(&events);
        let mut moved = events.clone();
        moved.swap(1, 2);
        moved[1].seq = 2;
        moved[2].seq = 3;
        let (problems, tail) = crate::audit::compare_anchors(&moved, &anchors);
        assert!(problems.is_empty());
        assert!(tail.is_none());
    }

    #[test]
    fn number_reused_after_a_cut_is_named_once() {
        let events = chain(4);
        let mut anchors = anchors_of(&events);
        // Events 3 and 4 were deleted and two others appended (and
        // anchored) under the same numbers.
        let mut rewritten = events[..2].to_vec();
        for seq in 3..=4 {
            let mut event = events[seq as usize - 1].clone();
            event.object = "other".into();
            event.hash = format!("{seq:064}");
            rewritten.push(event);
        }
        anchors.extend(anchors_of(&rewritten[2..]));
        let (problems, tail) = crate::audit::compare_anchors(&rewritten, &anchors);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].seq, 3);
        assert!(tail.is_none());
    }

    #[test]
    fn foreign_keys_are_not_anchors() {
        for key in [
            "audit/head/notes.txt",
            "audit/head/12-short.json",
            "audit/head/-0000.json",
            "clips/x.json",
        ] {
            assert!(parse_anchor_key(key).is_none(), "{key}");
        }
    }
}
