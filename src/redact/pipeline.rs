//! The GStreamer side of redaction: launch descriptions, element lookup,
//! and waiting on appsinks and buses without hanging on a failed pipeline.
//!
//! The descriptions live in `pipelines/redact-*.launch` with named
//! elements; code sets locations and encoder settings as properties.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::RedactError;

/// How long one wait on an appsink lasts before the bus is checked for an
/// error: short enough to notice a failure at once, long enough not to spin.
const PULL_POLL: Duration = Duration::from_millis(100);

/// Longest wait for a muxer to finish its file after the last buffer; the
/// index of a long recording is written in well under this.
const FINISH_TIMEOUT: Duration = Duration::from_secs(600);

const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        "redact-decode",
        include_str!("../../pipelines/redact-decode.launch"),
    ),
    (
        "redact-streams",
        include_str!("../../pipelines/redact-streams.launch"),
    ),
    (
        "redact-audio-decode",
        include_str!("../../pipelines/redact-audio-decode.launch"),
    ),
    (
        "redact-encode",
        include_str!("../../pipelines/redact-encode.launch"),
    ),
    (
        "redact-encode-video",
        include_str!("../../pipelines/redact-encode-video.launch"),
    ),
    (
        "redact-gop-decode",
        include_str!("../../pipelines/redact-gop-decode.launch"),
    ),
    (
        "redact-gop-encode",
        include_str!("../../pipelines/redact-gop-encode.launch"),
    ),
    (
        "redact-splice",
        include_str!("../../pipelines/redact-splice.launch"),
    ),
    (
        "redact-splice-video",
        include_str!("../../pipelines/redact-splice-video.launch"),
    ),
];

/// A running pipeline with the first error its bus reported.
pub struct Running {
    pub pipeline: gst::Pipeline,
    name: &'static str,
    error: Arc<Mutex<Option<String>>>,
    /// Set when a thread feeding from this pipeline gave up, so that the
    /// other threads waiting on it stop too instead of waiting forever.
    cancelled: AtomicBool,
}

impl Running {
    /// Parses a named description; the pipeline is left in NULL state so
    /// that properties can be set first.
    pub fn build(name: &'static str) -> Result<Running, RedactError> {
        crate::media::init().map_err(|message| RedactError::Pipeline { name, message })?;
        let (_, text) = DESCRIPTIONS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("every pipeline name used in code has a description");
        let pipeline = gst::parse::launch(text.trim())
            .map_err(|e| RedactError::Pipeline {
                name,
                message: e.to_string(),
            })?
            .downcast::<gst::Pipeline>()
            .map_err(|_| RedactError::Pipeline {
                name,
                message: "not a pipeline".into(),
            })?;

        // Errors are caught on the streaming thread as they are posted, so
        // every thread waiting on this pipeline sees them.
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        pipeline
            .bus()
            .expect("a pipeline has a bus")
            .set_sync_handler(move |_, message| {
                if let gst::MessageView::Error(err) = message.view() {
                    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                    if slot.is_none() {
                        let source = err.src().map(|s| s.name().to_string()).unwrap_or_default();
                        *slot = Some(format!("{source}: {} ({:?})", err.error(), err.debug()));
                    }
                }
                gst::BusSyncReply::Pass
            });
        Ok(Running {
            pipeline,
            name,
            error,
            cancelled: AtomicBool::new(false),
        })
    }

    pub fn element(&self, name: &str) -> Result<gst::Element, RedactError> {
        self.pipeline
            .by_name(name)
            .ok_or_else(|| RedactError::Pipeline {
                name: self.name,
                message: format!("no element named {name:?}"),
            })
    }

    pub fn appsink(&self, name: &str) -> Result<gst_app::AppSink, RedactError> {
        self.element(name)?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| self.failure(format!("{name} is not an appsink")))
    }

    pub fn appsrc(&self, name: &str) -> Result<gst_app::AppSrc, RedactError> {
        self.element(name)?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| self.failure(format!("{name} is not an appsrc")))
    }

    pub fn failure(&self, message: String) -> RedactError {
        RedactError::Pipeline {
            name: self.name,
            message,
        }
    }

    /// Makes every later `pull` on this pipeline fail.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Returns the first error the pipeline posted, if any.
    pub fn check(&self) -> Result<(), RedactError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(RedactError::Cancelled);
        }
        match self.error.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(message) => Err(self.failure(message)),
            None => Ok(()),
        }
    }

    pub fn play(&self) -> Result<(), RedactError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| self.failure(format!("cannot start: {e}; {:?}", self.check().err())))?;
        Ok(())
    }

    /// Returns the next sample of an appsink, `None` at end of stream, or
    /// the pipeline's error.
    pub fn pull(&self, sink: &gst_app::AppSink) -> Result<Option<gst::Sample>, RedactError> {
        loop {
            if let Some(sample) =
                sink.try_pull_sample(gst::ClockTime::from_mseconds(PULL_POLL.as_millis() as u64))
            {
                return Ok(Some(sample));
            }
            self.check()?;
            if sink.is_eos() {
                return Ok(None);
            }
        }
    }

    /// Pushes one buffer, turning a refused push into the pipeline's error.
    pub fn push(&self, source: &gst_app::AppSrc, buffer: gst::Buffer) -> Result<(), RedactError> {
        source.push_buffer(buffer).map_err(|flow| {
            self.check().err().unwrap_or_else(|| {
                self.failure(format!("push into {} refused: {flow:?}", source.name()))
            })
        })?;
        Ok(())
    }

    /// Waits until every sink has seen end of stream (the muxer has written
    /// its index), then stops the pipeline.
    pub fn finish(&self) -> Result<(), RedactError> {
        let bus = self.pipeline.bus().expect("a pipeline has a bus");
        let deadline = std::time::Instant::now() + FINISH_TIMEOUT;
        let result = loop {
            if let Err(error) = self.check() {
                break Err(error);
            }
            if std::time::Instant::now() > deadline {
                break Err(self.failure("timed out waiting for the end of stream".into()));
            }
            if let Some(message) = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(PULL_POLL.as_millis() as u64),
                &[gst::MessageType::Eos],
            ) {
                if let gst::MessageView::Eos(_) = message.view() {
                    break Ok(());
                }
            }
        };
        self.stop();
        result
    }

    pub fn stop(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Converts a buffer time to seconds on the presentation timeline through
/// the sample's segment (running time), so edit lists and seeks are honoured.
pub fn running_seconds(
    sample: &gst::Sample,
    pts: Option<gst::ClockTime>,
) -> Option<gst::ClockTime> {
    let pts = pts?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    segment.to_running_time(pts)
}
