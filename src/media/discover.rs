//! Stream listing through GStreamer, for containers without an index reader.
//!
//! Matroska, AVI, MPEG-PS and the like are probed with GStreamer's
//! discoverer. Its timing comes from a demuxer, which may correct the very
//! faults the continuity stage looks for, so reports say so.

use std::path::Path;

use gstreamer as gst;
use gstreamer_pbutils as pbutils;
use pbutils::prelude::*;
use serde::Serialize;

/// Discovery gives up after this long: a damaged file must not hang the
/// batch, and a healthy file is typed well within it.
const DISCOVER_TIMEOUT_SECONDS: u64 = 10;

#[derive(Clone, Debug, Serialize)]
pub struct DiscoveredStream {
    /// `video`, `audio`, `subtitle` or `other`.
    pub kind: String,
    /// The caps' media type, such as `video/x-h264`.
    pub codec: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Discovered {
    /// The container's media type, such as `video/x-matroska`.
    pub container: Option<String>,
    pub duration: Option<f64>,
    pub streams: Vec<DiscoveredStream>,
}

/// Lists a file's streams, or returns why GStreamer could not.
pub fn discover(path: &Path) -> Result<Discovered, String> {
    super::init()?;
    let absolute = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    let uri = gst::glib::filename_to_uri(&absolute, None).map_err(|e| e.to_string())?;
    let discoverer = pbutils::Discoverer::new(gst::ClockTime::from_seconds(DISCOVER_TIMEOUT_SECONDS))
        .map_err(|e| e.to_string())?;
    let info = discoverer.discover_uri(&uri).map_err(|e| e.to_string())?;
    if info.result() != pbutils::DiscovererResult::Ok {
        return Err(format!("{:?}", info.result()));
    }

    let container = info
        .container_streams()
        .first()
        .and_then(|s| s.caps())
        .and_then(|caps| caps.structure(0).map(|s| s.name().to_string()));
    let mut streams = Vec::new();
    for stream in info.stream_list() {
        if stream.is::<pbutils::DiscovererContainerInfo>() {
            continue;
        }
        let codec = stream
            .caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().to_string()))
            .unwrap_or_else(|| "unknown".to_string());
        let (kind, width, height) = if let Some(video) = stream.downcast_ref::<pbutils::DiscovererVideoInfo>() {
            ("video", Some(video.width()), Some(video.height()))
        } else if stream.is::<pbutils::DiscovererAudioInfo>() {
            ("audio", None, None)
        } else if stream.is::<pbutils::DiscovererSubtitleInfo>() {
            ("subtitle", None, None)
        } else {
            ("other", None, None)
        };
        streams.push(DiscoveredStream {
            kind: kind.to_string(),
            codec,
            width,
            height,
        });
    }
    if streams.is_empty() {
        return Err("no streams found".to_string());
    }
    Ok(Discovered {
        container,
        duration: info.duration().map(|d| d.nseconds() as f64 / 1e9),
        streams,
    })
}
