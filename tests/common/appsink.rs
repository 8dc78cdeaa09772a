//! Pulls buffers out of a real file with GStreamer for tests that compare
//! what a player would present: the split and redaction tests read
//! demuxed packets or decoded frames through the same kind of pipeline.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;

/// Builds `launch` (which names its `filesrc` "src" and its `appsink`
/// "sink"), points it at `path` and sets it playing. The caller pulls
/// samples from the sink and sets the pipeline to `Null` when done.
pub fn playing(launch: &str, path: &Path) -> (gst::Pipeline, AppSink) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(launch)
        .unwrap_or_else(|e| panic!("cannot build {launch}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline
        .by_name("src")
        .expect("the launch line names its filesrc \"src\"")
        .set_property("location", path.to_str().unwrap());
    let sink = pipeline
        .by_name("sink")
        .expect("the launch line names its appsink \"sink\"")
        .downcast::<AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, sink)
}
