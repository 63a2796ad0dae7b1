//! metrics-publisher's ports: CloudWatch read ([`Cloud`]) and written ([`Sink`]), Bedrock's
//! Provisioned Throughputs ([`Inventory`]) and the watermark item ([`State`]). Its batch registry
//! is [`crate::batch::Registry`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use domain::ports::{MetricsReader, MetricsWriter, ProvisionedInventory, ReportStateStore};
use domain::reporting::{
    Datum, InventoryError, MetricId, MetricsError, ProvisionedThroughput, Query, ReportState,
    Sample, Series, StateError,
};

/// One datapoint: the metric, the second it was put at, its value.
type Point = (MetricId, i64, f64);

/// CloudWatch's metric data in one namespace, read back (ListMetrics, GetMetricData): the
/// datapoints [`add`](Self::add)ed, as invoke-with-cache's EMF would have written them. Clones
/// share their data.
///
/// `list` answers the metrics of a name whose dimension names are exactly those asked (any
/// order); `query` sums each query's datapoints into periods from the start. To make it fail:
/// [`fail`](Self::fail) fails every later call with that error.
#[derive(Clone)]
pub struct Cloud {
    namespace: String,
    points: Arc<Mutex<Vec<Point>>>,
    failure: Arc<Mutex<Option<MetricsError>>>,
}

impl Cloud {
    /// No data yet; [`add`](Self::add) writes in `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            points: Arc::default(),
            failure: Arc::default(),
        }
    }

    /// A datapoint of `name` with `dims`, put at `at` (epoch seconds).
    pub fn add(&self, name: &str, dims: &[(&str, &str)], at: i64, value: f64) {
        let id = MetricId {
            namespace: self.namespace.clone(),
            name: name.into(),
            dimensions: dims
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
        };
        self.points.lock().unwrap().push((id, at, value));
    }

    /// Every later call fails with `error`.
    pub fn fail(&self, error: MetricsError) {
        *self.failure.lock().unwrap() = Some(error);
    }

    fn check(&self) -> Result<(), MetricsError> {
        match self.failure.lock().unwrap().as_ref() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

impl MetricsReader for Cloud {
    async fn list(
        &self,
        namespace: &str,
        name: &str,
        dimension_names: &[&str],
    ) -> Result<Vec<MetricId>, MetricsError> {
        self.check()?;
        let mut ids: Vec<MetricId> = self
            .points
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _, _)| id.clone())
            .filter(|id| id.namespace == namespace && id.name == name)
            .filter(|id| {
                let mut names: Vec<&str> = id.dimensions.iter().map(|(n, _)| n.as_str()).collect();
                let mut wanted = dimension_names.to_vec();
                names.sort_unstable();
                wanted.sort_unstable();
                names == wanted
            })
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn query(
        &self,
        queries: &[Query],
        start: i64,
        end: i64,
    ) -> Result<HashMap<String, Series>, MetricsError> {
        self.check()?;
        let data = self.points.lock().unwrap();
        Ok(queries
            .iter()
            .map(|q| {
                let mut buckets: BTreeMap<i64, f64> = BTreeMap::new();
                for (id, at, v) in data.iter() {
                    if *id == q.metric && *at >= start && *at < end {
                        let p = i64::from(q.period_seconds);
                        *buckets.entry(start + (at - start) / p * p).or_default() += v;
                    }
                }
                (q.id.clone(), buckets.into_iter().collect())
            })
            .collect())
    }
}

/// CloudWatch's PutMetricData, to one namespace: every `put` asserts it is that namespace.
/// Clones share their records.
///
/// Records each accepted request's datums in `accepted` (one entry a call);
/// [`datums`](Self::datums) flattens them, [`value`](Self::value) reads one metric at one time.
/// To make it fail: [`fail`](Self::fail)`(n)` throttles the next `n` calls
/// ([`MetricsError::Throttled`], as after the adapter's retries).
#[derive(Clone)]
pub struct Sink {
    namespace: String,
    pub accepted: Arc<Mutex<Vec<Vec<Datum>>>>,
    fail_next: Arc<Mutex<usize>>,
}

impl Sink {
    /// Accepts datums put to `namespace` (and panics on any other).
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            accepted: Arc::default(),
            fail_next: Arc::default(),
        }
    }

    /// Every datum accepted, in order.
    pub fn datums(&self) -> Vec<Datum> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Throttles the next `calls` calls.
    pub fn fail(&self, calls: usize) {
        *self.fail_next.lock().unwrap() = calls;
    }

    /// The value of a metric at a time, and how many datums carried it.
    pub fn value(&self, name: &str, dims: &[(&str, &str)], at: i64) -> (f64, usize) {
        let found: Vec<f64> = self
            .datums()
            .iter()
            .filter(|d| d.name == name && d.timestamp == at)
            .filter(|d| {
                d.dimensions.len() == dims.len()
                    && d.dimensions
                        .iter()
                        .zip(dims)
                        .all(|((n, v), (dn, dv))| n == dn && v == dv)
            })
            .map(|d| match d.sample {
                Sample::Value(v) => v,
                Sample::Values { .. } => f64::NAN,
            })
            .collect();
        (found.iter().sum(), found.len())
    }
}

impl MetricsWriter for Sink {
    async fn put(&self, namespace: &str, datums: &[Datum]) -> Result<(), MetricsError> {
        assert_eq!(namespace, self.namespace);
        let mut fail = self.fail_next.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(MetricsError::Throttled("Rate exceeded".into()));
        }
        self.accepted.lock().unwrap().push(datums.to_vec());
        Ok(())
    }
}

/// Bedrock's Provisioned Throughputs (ListProvisionedModelThroughputs): those pushed on `.0`.
/// Clones share them. To make it fail: [`fail`](Self::fail) fails every later call with an
/// [`InventoryError`] of that message.
#[derive(Default, Clone)]
pub struct Inventory(
    pub Arc<Mutex<Vec<ProvisionedThroughput>>>,
    Arc<Mutex<Option<String>>>,
);

impl Inventory {
    /// Every later call fails with `InventoryError(message)`.
    pub fn fail(&self, message: &str) {
        *self.1.lock().unwrap() = Some(message.to_owned());
    }
}

impl ProvisionedInventory for Inventory {
    async fn list(&self) -> Result<Vec<ProvisionedThroughput>, InventoryError> {
        if let Some(message) = self.1.lock().unwrap().clone() {
            return Err(InventoryError(message));
        }
        Ok(self.0.lock().unwrap().clone())
    }
}

/// metrics-publisher's watermark item in `.0`, written conditionally as DynamoDB does: a `save`
/// whose version is not the stored one plus one (1 for the first) stores nothing and answers
/// `false`. Clones share it. To make it fail: [`fail`](Self::fail) fails every later call with a
/// [`StateError`] of that message.
#[derive(Default, Clone)]
pub struct State(
    pub Arc<Mutex<Option<ReportState>>>,
    Arc<Mutex<Option<String>>>,
);

impl State {
    /// The end of the last period published in full, if any.
    pub fn through(&self) -> Option<i64> {
        self.0
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.published_through)
    }

    /// Every later call fails with `StateError(message)`.
    pub fn fail(&self, message: &str) {
        *self.1.lock().unwrap() = Some(message.to_owned());
    }

    fn check(&self) -> Result<(), StateError> {
        match self.1.lock().unwrap().as_ref() {
            Some(message) => Err(StateError(message.clone())),
            None => Ok(()),
        }
    }
}

impl ReportStateStore for State {
    async fn load(&self) -> Result<Option<ReportState>, StateError> {
        self.check()?;
        Ok(self.0.lock().unwrap().clone())
    }
    async fn save(&self, state: &ReportState) -> Result<bool, StateError> {
        self.check()?;
        let mut stored = self.0.lock().unwrap();
        let current = stored.as_ref().map_or(0, |s| s.version);
        if state.version != current + 1 {
            return Ok(false);
        }
        *stored = Some(state.clone());
        Ok(true)
    }
}
