//! Batch orchestration over the ports: writing job inputs, submitting jobs within the quota,
//! following them, and merging their output into one `results.jsonl` in input order. Shared
//! by batch-submit and batch-status; no AWS SDK type appears here.

mod budget;
mod direct;
mod input;
mod jobs;
mod layout;
mod lifecycle;
mod merge;
mod settings;
mod writer;

pub use budget::*;
pub use direct::*;
pub use input::*;
pub use jobs::*;
pub use layout::*;
pub use lifecycle::*;
pub use merge::*;
pub use settings::*;
pub use writer::*;

#[cfg(test)]
mod tests;
