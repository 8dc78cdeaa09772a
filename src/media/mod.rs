//! Media glue: the container index readers and the GStreamer helpers.
//!
//! The index readers (`mp4`, `ts`) read timing from the container's own
//! tables; GStreamer is used for what only a demuxer or decoder can tell
//! (other containers, decoding), through launch descriptions kept in
//! `pipelines/`.

pub mod discover;
pub mod index;
pub mod mp4;
pub mod mp4_writer;
pub mod pipeline;
pub mod ts;

use std::sync::OnceLock;

/// Initializes GStreamer once per process; returns the error text when the
/// library or its plugins are missing.
pub fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gstreamer::init().map_err(|e| e.to_string()))
        .clone()
}

/// GStreamer's version, for manifests; `unavailable` when it cannot start.
pub fn gstreamer_version() -> String {
    match init() {
        Ok(()) => gstreamer::version_string().to_string(),
        Err(_) => "unavailable".to_string(),
    }
}
