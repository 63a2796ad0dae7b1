//! metrics-publisher's domain: the periods it publishes and its watermark, what a period's
//! figures are (from the per-request metrics, the batch registry and the Provisioned
//! Throughputs), the datums it publishes and their batching to PutMetricData's limits.
//! No AWS SDK type appears here; the CloudWatch and Bedrock adapters convert at the boundary.

mod advice;
mod datums;
mod periods;
mod usage;
mod utilisation;

pub use advice::*;
pub use datums::*;
pub use periods::*;
pub use usage::*;
pub use utilisation::*;

#[cfg(test)]
mod tests;
