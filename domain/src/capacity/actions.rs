//! The actions a run takes, counted per model for the capacity function's metrics.

/// A capacity action, counted per model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityAction {
    Created,
    Deleted,
    Adopted,
    /// A call failed, or a capacity ended `Failed`.
    Failed,
    /// Bedrock refused a creation for the no-commitment model-unit quota.
    QuotaRefused,
}

impl CapacityAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Deleted => "Deleted",
            Self::Adopted => "Adopted",
            Self::Failed => "Failed",
            Self::QuotaRefused => "QuotaRefused",
        }
    }
}

/// A run's actions on one model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapacityCounts {
    pub model_id: String,
    pub created: u32,
    pub deleted: u32,
    pub adopted: u32,
    pub failed: u32,
    pub quota_refused: u32,
}

impl CapacityCounts {
    pub fn add(&mut self, action: CapacityAction) {
        let counter = match action {
            CapacityAction::Created => &mut self.created,
            CapacityAction::Deleted => &mut self.deleted,
            CapacityAction::Adopted => &mut self.adopted,
            CapacityAction::Failed => &mut self.failed,
            CapacityAction::QuotaRefused => &mut self.quota_refused,
        };
        *counter += 1;
    }
}

/// Why Bedrock's Provisioned Throughput API refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// ServiceQuotaExceededException: no model units left for no-commitment capacity.
    #[error("Provisioned Throughput quota reached: {0}")]
    QuotaExceeded(String),
    /// ConflictException: a name taken, or a capacity still changing.
    #[error("Provisioned Throughput conflict: {0}")]
    Conflict(String),
    #[error("no such Provisioned Throughput: {0}")]
    NotFound(String),
    /// Validation, access: the same call would be refused again.
    #[error("Provisioned Throughput call refused: {0}")]
    Refused(String),
    /// Throttling, 5xx, network: worth another try on the next run.
    #[error("Provisioned Throughput call failed: {0}")]
    Failed(String),
}

/// Why the routing table could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingTableError {
    /// Another run wrote first: its decisions stand.
    #[error("the routing table changed since it was read")]
    Conflict,
    #[error("routing table unavailable: {0}")]
    Unavailable(String),
}
