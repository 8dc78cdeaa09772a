//! The stage line-up of the main job, in order.

use crate::runner::Runner;

/// Builds the runner with every stage this build has, in pipeline order.
pub fn runner() -> Runner {
    Runner {
        recording_stages: vec![
            Box::new(crate::continuity::ContinuityStage),
        ],
        batch_stages: vec![
            Box::new(crate::continuity::SessionStage),
            Box::new(crate::split::SplitStage),
        ],
    }
}
