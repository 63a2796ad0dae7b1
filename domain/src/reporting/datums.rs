//! The datums metrics-publisher publishes, their units and dimensions, and their batching to
//! PutMetricData's limits (count, bytes, values), with a digest that makes a retry idempotent.

use sha2::{Digest, Sha256};

/// Every period is five minutes, aligned on the epoch (so on the hour).
pub const PERIOD_SECONDS: i64 = 300;
/// Minutes in a period: the resolution of the peak-minute figures.
pub const MINUTES_PER_PERIOD: usize = 5;

/// The per-request metrics' dimension of the model (see `adapters::emf`).
pub const MODEL_DIMENSION: &str = "ModelId";
/// The per-request metrics' (and the reports') dimension of the service tier that served a
/// request.
pub const SERVICE_TIER_DIMENSION: &str = "ServiceTier";
/// The dimension of deferred requests' metrics: where they were answered (`batch`, `flex`, …).
pub const PLACEMENT_DIMENSION: &str = "Placement";
/// The per-request metrics' dimension of the capacity that served a request.
pub const ROUTE_DIMENSION: &str = "Route";
/// The route value of Provisioned Throughput.
pub const PROVISIONED_ROUTE: &str = "provisioned";
/// The reports' dimension of a Provisioned Throughput.
pub const PROVISIONED_DIMENSION: &str = "ProvisionedModelArn";
/// The model dimension value of requests refused before a model was chosen.
pub const NO_MODEL: &str = "none";

// ---------------------------------------------------------------------------------------------
// CloudWatch's shapes

/// The CloudWatch units the reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Percent,
    /// Dollars: CloudWatch has no currency unit.
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Percent => "Percent",
            Self::None => "None",
        }
    }
}

/// Dimension names and values, in the order given.
pub type Dimensions = Vec<(String, String)>;

/// What a datum carries: one value, or distinct values with how often each was seen.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Value(f64),
    Values { values: Vec<f64>, counts: Vec<f64> },
}

/// One PutMetricData datum.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: String,
    pub dimensions: Dimensions,
    /// Epoch seconds.
    pub timestamp: i64,
    pub sample: Sample,
    pub unit: Unit,
}

impl Datum {
    pub fn value(
        name: &str,
        dimensions: Dimensions,
        timestamp: i64,
        value: f64,
        unit: Unit,
    ) -> Self {
        Self {
            name: name.to_owned(),
            dimensions,
            timestamp,
            sample: Sample::Value(value),
            unit,
        }
    }
}

/// A metric: namespace, name and dimensions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricId {
    pub namespace: String,
    pub name: String,
    pub dimensions: Dimensions,
}

/// One GetMetricData `MetricStat` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `^[a-z][a-zA-Z0-9_]*$`, unique in a request.
    pub id: String,
    pub metric: MetricId,
    /// `Sum`, `Average`, `SampleCount`…
    pub stat: String,
    pub period_seconds: i32,
}

/// A query's answer: (epoch seconds, value) pairs.
pub type Series = Vec<(i64, f64)>;

/// Why CloudWatch refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Still throttled after the client's retries.
    #[error("CloudWatch throttled the call: {0}")]
    Throttled(String),
    /// A refusal the same request would meet again (validation, access).
    #[error("CloudWatch refused the call: {0}")]
    Refused(String),
    /// 5xx, network, timeout: worth another try later.
    #[error("CloudWatch call failed: {0}")]
    Unavailable(String),
}

/// Why the publisher's state (its watermark) could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("report state store: {0}")]
pub struct StateError(pub String);

/// Why Bedrock's Provisioned Throughput list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Provisioned Throughput list: {0}")]
pub struct InventoryError(pub String);

/// A datum PutMetricData would refuse whatever the batching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatumError {
    #[error("datum {name} has {count} dimensions; PutMetricData allows {MAX_DIMENSIONS}")]
    TooManyDimensions { name: String, count: usize },
    #[error("datum {name} has a value that is not a finite number")]
    NotFinite { name: String },
    #[error("datum {name} has {values} values and {counts} counts")]
    CountsMismatch {
        name: String,
        values: usize,
        counts: usize,
    },
    #[error("datum {name} alone is larger than a PutMetricData request may be")]
    TooLarge { name: String },
}

// ---------------------------------------------------------------------------------------------
// PutMetricData's limits and the batching of datums

/// Datums in one PutMetricData request.
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
/// A request's size, uncompressed (1 MB).
pub const MAX_REQUEST_BYTES: usize = 1_048_576;
/// Dimensions of one datum.
pub const MAX_DIMENSIONS: usize = 30;
/// `Values` (and `Counts`) of one datum.
pub const MAX_VALUES: usize = 150;

/// What the request's envelope (namespace, operation, keys) may take, beside the datums.
pub(crate) const ENVELOPE_BYTES: usize = 1024;

/// An upper bound on a datum's encoded size, in the larger of the two encodings the SDKs use
/// (JSON, where a number takes up to 24 characters and a string may double when escaped; CBOR
/// is smaller).
pub(crate) fn encoded_size(datum: &Datum) -> usize {
    let dimensions: usize = datum
        .dimensions
        .iter()
        .map(|(n, v)| 32 + 2 * (n.len() + v.len()))
        .sum();
    let sample = match &datum.sample {
        Sample::Value(_) => 40,
        Sample::Values { values, counts } => 40 + 26 * (values.len() + counts.len()),
    };
    96 + 2 * datum.name.len() + dimensions + sample
}

pub(crate) fn finite(datum: &Datum) -> bool {
    match &datum.sample {
        Sample::Value(v) => v.is_finite(),
        Sample::Values { values, counts } => values.iter().chain(counts).all(|v| v.is_finite()),
    }
}

/// Checks a datum and splits one with more than [`MAX_VALUES`] values into several of the same
/// metric and time (CloudWatch aggregates them as one).
pub(crate) fn split(datum: Datum) -> Result<Vec<Datum>, DatumError> {
    if datum.dimensions.len() > MAX_DIMENSIONS {
        return Err(DatumError::TooManyDimensions {
            name: datum.name,
            count: datum.dimensions.len(),
        });
    }
    if !finite(&datum) {
        return Err(DatumError::NotFinite { name: datum.name });
    }
    match &datum.sample {
        Sample::Values { values, counts } if !counts.is_empty() && counts.len() != values.len() => {
            Err(DatumError::CountsMismatch {
                name: datum.name.clone(),
                values: values.len(),
                counts: counts.len(),
            })
        }
        Sample::Values { values, counts } if values.len() > MAX_VALUES => Ok(values
            .chunks(MAX_VALUES)
            .enumerate()
            .map(|(i, chunk)| {
                let counts = if counts.is_empty() {
                    Vec::new()
                } else {
                    counts[i * MAX_VALUES..i * MAX_VALUES + chunk.len()].to_vec()
                };
                Datum {
                    sample: Sample::Values {
                        values: chunk.to_vec(),
                        counts,
                    },
                    ..datum.clone()
                }
            })
            .collect()),
        _ => Ok(vec![datum]),
    }
}

/// The datums as PutMetricData requests, in order, each within the API's limits: at most
/// [`MAX_DATUMS_PER_REQUEST`] datums and [`MAX_REQUEST_BYTES`] uncompressed, no datum with more
/// than [`MAX_DIMENSIONS`] dimensions or [`MAX_VALUES`] values.
pub fn requests(namespace: &str, datums: Vec<Datum>) -> Result<Vec<Vec<Datum>>, DatumError> {
    let budget = MAX_REQUEST_BYTES - ENVELOPE_BYTES - 2 * namespace.len();
    let mut out: Vec<Vec<Datum>> = Vec::new();
    let mut current: Vec<Datum> = Vec::new();
    let mut size = 0;
    for datum in datums {
        for datum in split(datum)? {
            let datum_size = encoded_size(&datum);
            if datum_size > budget {
                return Err(DatumError::TooLarge { name: datum.name });
            }
            if current.len() == MAX_DATUMS_PER_REQUEST || size + datum_size > budget {
                out.push(std::mem::take(&mut current));
                size = 0;
            }
            size += datum_size;
            current.push(datum);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// A digest of one request's datums: how a run that resumes a period recognises the requests
/// CloudWatch already accepted, so that it sends none of them twice.
pub fn request_digest(namespace: &str, datums: &[Datum]) -> String {
    let mut hash = Sha256::new();
    hash.update(namespace.as_bytes());
    for d in datums {
        hash.update([0]);
        hash.update(d.name.as_bytes());
        for (n, v) in &d.dimensions {
            hash.update([1]);
            hash.update(n.as_bytes());
            hash.update([2]);
            hash.update(v.as_bytes());
        }
        hash.update(d.timestamp.to_be_bytes());
        hash.update(d.unit.as_str().as_bytes());
        match &d.sample {
            Sample::Value(v) => hash.update(v.to_bits().to_be_bytes()),
            Sample::Values { values, counts } => {
                for v in values.iter().chain(counts) {
                    hash.update(v.to_bits().to_be_bytes());
                }
            }
        }
    }
    hex::encode(&hash.finalize()[..16])
}

// ---------------------------------------------------------------------------------------------
// Periods and the watermark
