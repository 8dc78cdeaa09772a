//! Launch descriptions from `pipelines/`, built into the binary.
//!
//! Descriptions name their elements; code sets file locations and other
//! values as properties on those named elements, never by pasting them into
//! the text, so a path with spaces or quotes cannot change a pipeline.

use gstreamer as gst;
use gstreamer::prelude::*;

/// The launch descriptions the product uses, by name.
const DESCRIPTIONS: &[(&str, &str)] = &[(
    "decode-check",
    include_str!("../../pipelines/decode-check.launch"),
)];

/// Parses a named launch description into a pipeline.
pub fn build(name: &str) -> Result<gst::Pipeline, String> {
    super::init()?;
    let (_, text) = DESCRIPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("no pipeline named {name:?}"))?;
    let element = gst::parse::launch(text.trim()).map_err(|e| format!("pipeline {name}: {e}"))?;
    element
        .downcast::<gst::Pipeline>()
        .map_err(|_| format!("pipeline {name} is not a pipeline"))
}

/// Returns a named element of a pipeline built from a description.
pub fn element(pipeline: &gst::Pipeline, name: &str) -> Result<gst::Element, String> {
    pipeline
        .by_name(name)
        .ok_or_else(|| format!("pipeline has no element named {name:?}"))
}
