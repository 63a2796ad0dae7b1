//! The account and region the emulator's resources (batch jobs, Provisioned Throughputs) and
//! events belong to.

/// The account and region of resource ARNs and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub region: String,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            account: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
        }
    }
}
