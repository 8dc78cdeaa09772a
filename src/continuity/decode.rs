//! Full decode of a recording, for `check --decode`: finds frames the
//! decoder cannot read, which no timing table shows.
//!
//! The `decode-check` pipeline (`filesrc ! decodebin`) decodes every
//! stream as fast as it can into fake sinks. GStreamer decoders (1.22)
//! only log a broken frame, and post on the bus once their error count
//! passes `max-errors`. That is set to 0, so the first broken frame stops
//! the decode with an error, reported with the stream time where it
//! happened. Frames that a decoder concealed but flagged as
//! corrupted before that are counted too.

use std::path::Path;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::finding::Finding;
use crate::i18n::Text;
use crate::media::pipeline;

/// Broken frames listed one by one; beyond this only the count grows, so
/// that a badly damaged file gives a readable report.
const MAX_LISTED_ERRORS: usize = 20;

#[derive(Default)]
struct Damage {
    /// Stream times in seconds (None when unknown) and the decoder's words.
    events: Vec<(Option<f64>, String)>,
    count: u64,
    /// True when a decoder gave up, so frames after the first broken one
    /// were not decoded.
    stopped: bool,
}

impl Damage {
    fn note(&mut self, at: Option<f64>, what: String) {
        self.count += 1;
        if self.events.len() < MAX_LISTED_ERRORS {
            self.events.push((at, what));
        }
    }
}

/// Decodes every stream of a file and returns a `decode_error` finding for
/// what could not be decoded; an empty list when everything decoded.
pub fn check_decode(path: &Path) -> Vec<Finding> {
    match run(path) {
        Ok(damage) if damage.count == 0 => Vec::new(),
        Ok(damage) => vec![damage_finding(&damage)],
        Err(message) => vec![Finding::new(
            "decode_error",
            Text::new(
                format!("无法完整解码：{message}"),
                format!("the file cannot be decoded to the end: {message}"),
            ),
        )
        .with_detail(serde_json::json!({ "error": message }))],
    }
}

fn run(path: &Path) -> Result<Damage, String> {
    let pipeline = pipeline::build("decode-check")?;
    let source = pipeline::element(&pipeline, "source")?;
    source.set_property("location", path.to_string_lossy().to_string());
    let decode = pipeline::element(&pipeline, "decode")?;

    let damage = Arc::new(Mutex::new(Damage::default()));
    pipeline.connect_deep_element_added(|_, _, element| {
        if element.find_property("max-errors").is_some() {
            element.set_property("max-errors", 0i32);
        }
    });
    let weak = pipeline.downgrade();
    let probe_damage = damage.clone();
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
        else {
            return;
        };
        if pipeline.add(&sink).is_err() {
            return;
        }
        let _ = sink.sync_state_with_parent();
        if let Some(sink_pad) = sink.static_pad("sink") {
            let _ = pad.link(&sink_pad);
            let damage = probe_damage.clone();
            sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer() {
                    if buffer.flags().contains(gst::BufferFlags::CORRUPTED) {
                        let at = buffer.pts().map(|t| t.nseconds() as f64 / 1e9);
                        damage
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .note(at, "corrupted frame".into());
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
    });

    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let mut failure = None;
    for message in bus.iter_timed(gst::ClockTime::NONE) {
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(error) => {
                let from_decoder = error
                    .src()
                    .is_some_and(|source| source.find_property("max-errors").is_some());
                if from_decoder {
                    let at = pipeline
                        .query_position::<gst::ClockTime>()
                        .map(|t| t.nseconds() as f64 / 1e9);
                    let mut damage = damage.lock().unwrap_or_else(|e| e.into_inner());
                    damage.note(at, error.error().to_string());
                    damage.stopped = true;
                } else {
                    failure = Some(error.error().to_string());
                }
                break;
            }
            gst::MessageView::Warning(warning) => {
                let at = pipeline
                    .query_position::<gst::ClockTime>()
                    .map(|t| t.nseconds() as f64 / 1e9);
                damage
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .note(at, warning.error().to_string());
            }
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(message) = failure {
        return Err(message);
    }
    let damage = std::mem::take(&mut *damage.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(damage)
}

fn damage_finding(damage: &Damage) -> Finding {
    let first = damage.events.first().and_then(|(at, _)| *at);
    let events: Vec<_> = damage
        .events
        .iter()
        .map(|(at, what)| serde_json::json!({ "at": at, "message": what }))
        .collect();
    let mut finding = Finding::new(
        "decode_error",
        Text::new(
            format!(
                "完整解码发现 {} 处损坏的帧或数据（首处在 {}）{}",
                damage.count,
                first.map_or("未知位置".to_string(), |at| format!("{at:.3} 秒")),
                if damage.stopped {
                    "，解码在此停止"
                } else {
                    ""
                }
            ),
            format!(
                "a full decode found {} corrupt frames or damaged stretches (first at {}){}",
                damage.count,
                first.map_or("an unknown position".to_string(), |at| format!("{at:.3} s")),
                if damage.stopped {
                    "; decoding stopped there"
                } else {
                    ""
                }
            ),
        ),
    )
    .with_detail(serde_json::json!({
        "count": damage.count,
        "events": events,
        "stopped_at_first_error": damage.stopped,
    }));
    if let Some(at) = first {
        finding = finding.at(at);
    }
    finding
}
