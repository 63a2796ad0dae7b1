//! The faults the emulator can inject: Bedrock's exceptions answered instead of a message, and
//! exceptions sent in the middle of a ConverseStream.

use axum::http::StatusCode;
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::BedrockError;

/// An exception answered instead of a message, at a configured rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Throttling,
    ModelNotReady,
    ServiceUnavailable,
    AccessDenied,
    ResourceNotFound,
    ModelTimeout,
    ModelError,
    InternalServer,
}

/// Everything that names or answers one fault, so that adding a fault is one table row.
pub struct FaultSpec {
    /// Its rate in `POST /_emulator/config`.
    pub rate_field: &'static str,
    /// Its counter in `GET /_emulator/stats`.
    pub stat_field: &'static str,
    /// The HTTP status and `x-amzn-errortype` Bedrock answers with (botocore's service model).
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: &'static str,
}

const INTERNAL_MESSAGE: &str =
    "The system encountered an unexpected error during processing. Try your request again.";

impl Fault {
    /// In the order their rates are tried on each call.
    pub const ALL: [Fault; 8] = [
        Fault::Throttling,
        Fault::ModelNotReady,
        Fault::ServiceUnavailable,
        Fault::AccessDenied,
        Fault::ResourceNotFound,
        Fault::ModelTimeout,
        Fault::ModelError,
        Fault::InternalServer,
    ];

    pub const fn spec(self) -> FaultSpec {
        let (rate_field, stat_field, status, error_type, message) = match self {
            Fault::Throttling => (
                "throttleRate",
                "throttled",
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            ),
            Fault::ModelNotReady => (
                "modelNotReadyRate",
                "modelNotReady",
                StatusCode::TOO_MANY_REQUESTS,
                "ModelNotReadyException",
                "Model is not ready to serve inference requests. Try again later.",
            ),
            Fault::ServiceUnavailable => (
                "serviceUnavailableRate",
                "serviceUnavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "Bedrock is unable to process your request.",
            ),
            Fault::AccessDenied => (
                "accessDeniedRate",
                "accessDenied",
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
            ),
            Fault::ResourceNotFound => (
                "resourceNotFoundRate",
                "resourceNotFound",
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "This model version has reached the end of its life. Please refer to the AWS documentation for more details.",
            ),
            Fault::ModelTimeout => (
                "modelTimeoutRate",
                "modelTimeout",
                StatusCode::REQUEST_TIMEOUT,
                "ModelTimeoutException",
                "Model has timed out in processing the request. Try your request again.",
            ),
            Fault::ModelError => (
                "modelErrorRate",
                "modelError",
                StatusCode::FAILED_DEPENDENCY,
                "ModelErrorException",
                "The model returned the following errors: Internal server error",
            ),
            Fault::InternalServer => (
                "internalServerRate",
                "internalServer",
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                INTERNAL_MESSAGE,
            ),
        };
        FaultSpec {
            rate_field,
            stat_field,
            status,
            error_type,
            message,
        }
    }

    pub fn error(self) -> BedrockError {
        let spec = self.spec();
        BedrockError::new(spec.status, spec.error_type, spec.message)
    }

    fn from_rate_field(name: &str) -> Option<Fault> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.spec().rate_field == name)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A fault is named by its rate field in config patches (`{"throttleRate": 0.5}`).
impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Fault::from_rate_field(&name)
            .ok_or_else(|| de::Error::custom(format!("unknown field `{name}`")))
    }
}

/// One rate (0..=1) per fault; serialised as every fault's rate field.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates([f64; Fault::ALL.len()]);

impl FaultRates {
    pub fn get(&self, fault: Fault) -> f64 {
        self.0[fault.index()]
    }

    pub fn set(&mut self, fault: Fault, rate: f64) {
        self.0[fault.index()] = rate;
    }
}

impl Serialize for FaultRates {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Fault::ALL.len()))?;
        for fault in Fault::ALL {
            map.serialize_entry(fault.spec().rate_field, &self.get(fault))?;
        }
        map.end()
    }
}

/// One counter per fault; serialised as every fault's stat field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts([u64; Fault::ALL.len()]);

impl FaultCounts {
    pub fn get(&self, fault: Fault) -> u64 {
        self.0[fault.index()]
    }

    pub fn count(&mut self, fault: Fault) {
        self.0[fault.index()] += 1;
    }
}

impl Serialize for FaultCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Fault::ALL.len()))?;
        for fault in Fault::ALL {
            map.serialize_entry(fault.spec().stat_field, &self.get(fault))?;
        }
        map.end()
    }
}

/// The exceptions ConverseStream can send as an event (`:exception-type`), as named in
/// botocore's `ConverseStreamOutput`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamException {
    ThrottlingException,
    ModelStreamErrorException,
    InternalServerException,
    ServiceUnavailableException,
    ValidationException,
}

impl StreamException {
    /// The event's `:exception-type`.
    pub const fn event_type(self) -> &'static str {
        match self {
            StreamException::ThrottlingException => "throttlingException",
            StreamException::ModelStreamErrorException => "modelStreamErrorException",
            StreamException::InternalServerException => "internalServerException",
            StreamException::ServiceUnavailableException => "serviceUnavailableException",
            StreamException::ValidationException => "validationException",
        }
    }

    /// The event's members: `message`, and for a model stream error the model's own status
    /// and message, as the service model defines them.
    pub fn payload(self) -> Value {
        match self {
            StreamException::ThrottlingException => {
                json!({"message": Fault::Throttling.spec().message})
            }
            StreamException::ModelStreamErrorException => json!({
                "message": INTERNAL_MESSAGE,
                "originalStatusCode": 500,
                "originalMessage": "Internal server error",
            }),
            StreamException::InternalServerException => json!({"message": INTERNAL_MESSAGE}),
            StreamException::ServiceUnavailableException => {
                json!({"message": Fault::ServiceUnavailable.spec().message})
            }
            StreamException::ValidationException => json!({
                "message": "The model returned the following errors: Output blocked by content filtering policy",
            }),
        }
    }
}

/// An exception sent in the middle of every ConverseStream answer, after some deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamError {
    pub exception: StreamException,
    /// `contentBlockDelta` events sent before the exception.
    #[serde(default)]
    pub after_deltas: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_has_its_own_names_and_bedrocks_status() {
        let mut rate_fields: Vec<_> = Fault::ALL.iter().map(|f| f.spec().rate_field).collect();
        let mut stat_fields: Vec<_> = Fault::ALL.iter().map(|f| f.spec().stat_field).collect();
        rate_fields.sort_unstable();
        rate_fields.dedup();
        stat_fields.sort_unstable();
        stat_fields.dedup();
        assert_eq!(rate_fields.len(), Fault::ALL.len());
        assert_eq!(stat_fields.len(), Fault::ALL.len());
        for (i, fault) in Fault::ALL.into_iter().enumerate() {
            assert_eq!(fault.index(), i, "ALL follows the declaration order");
            assert_eq!(Fault::from_rate_field(fault.spec().rate_field), Some(fault));
        }
        let statuses: Vec<_> = [
            Fault::AccessDenied,
            Fault::ResourceNotFound,
            Fault::ModelTimeout,
            Fault::ModelError,
            Fault::InternalServer,
        ]
        .iter()
        .map(|f| (f.error().status.as_u16(), f.error().error_type))
        .collect();
        assert_eq!(
            statuses,
            [
                (403, "AccessDeniedException"),
                (404, "ResourceNotFoundException"),
                (408, "ModelTimeoutException"),
                (424, "ModelErrorException"),
                (500, "InternalServerException"),
            ]
        );
    }

    #[test]
    fn rates_serialise_under_their_config_names() {
        let mut rates = FaultRates::default();
        rates.set(Fault::ModelTimeout, 0.5);
        let json = serde_json::to_value(rates).unwrap();
        assert_eq!(json["modelTimeoutRate"], 0.5);
        assert_eq!(json["throttleRate"], 0.0);
        assert_eq!(json.as_object().unwrap().len(), Fault::ALL.len());
    }

    #[test]
    fn stream_errors_parse_from_their_event_names() {
        let parsed: StreamError = serde_json::from_value(
            json!({"exception": "modelStreamErrorException", "afterDeltas": 2}),
        )
        .unwrap();
        for exception in [
            StreamException::ThrottlingException,
            StreamException::ModelStreamErrorException,
            StreamException::InternalServerException,
            StreamException::ServiceUnavailableException,
            StreamException::ValidationException,
        ] {
            assert_eq!(
                serde_json::to_value(exception).unwrap(),
                exception.event_type()
            );
        }
        assert_eq!(parsed.after_deltas, 2);
        assert!(parsed.exception.payload()["originalStatusCode"].is_u64());
        assert!(serde_json::from_value::<StreamError>(json!({"exception": "oops"})).is_err());
    }
}
