//! Keeps law-enforcement camera footage as evidence.
//!
//! The stages run in this order, each a module with a small contract:
//!
//! ```text
//! upload ─▶ ingest ─▶ probe ─▶ continuity ─▶ split ─▶ redact ─▶ store
//! ```
//!
//! `runner` owns the order, the spans and the retries, and `stages` lists
//! the line-up; `catalog` and `store` are what every stage shares; `media`
//! holds the container readers and the GStreamer glue.

pub mod audit;
pub mod calendar;
pub mod case;
pub mod catalog;
pub mod compliance;
pub mod config;
pub mod continuity;
pub mod disclose;
pub mod finding;
pub mod i18n;
pub mod ingest;
pub mod media;
pub mod naming;
pub mod probe;
pub mod redact;
pub mod report;
pub mod roles;
pub mod runner;
pub mod split;
pub mod stages;
pub mod status;
pub mod store;
pub mod timeline;
pub mod worker;
