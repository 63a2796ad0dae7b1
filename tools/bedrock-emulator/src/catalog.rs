//! The models the emulator knows, with their output-token limits and how they are served.

use crate::error::BedrockError;

/// Output-token limit of models added at start.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4096;

/// How Bedrock serves a foundation model to on-demand callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDemand {
    /// By its model id or foundation-model ARN.
    Direct,
    /// Only through a cross-region inference profile (`us.…`, an inference-profile ARN).
    ProfileOnly,
}

use OnDemand::{Direct, ProfileOnly};

const FOUNDATION_MODELS: &[(&str, u32, OnDemand)] = &[
    ("anthropic.claude-3-haiku-20240307-v1:0", 4096, Direct),
    ("anthropic.claude-3-sonnet-20240229-v1:0", 4096, Direct),
    ("anthropic.claude-3-opus-20240229-v1:0", 4096, Direct),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", 8192, Direct),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", 8192, Direct),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", 8192, Direct),
    (
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        8192,
        ProfileOnly,
    ),
    (
        "anthropic.claude-sonnet-4-20250514-v1:0",
        64000,
        ProfileOnly,
    ),
    ("anthropic.claude-opus-4-20250514-v1:0", 32000, ProfileOnly),
    (
        "anthropic.claude-opus-4-1-20250805-v1:0",
        32000,
        ProfileOnly,
    ),
    (
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        64000,
        ProfileOnly,
    ),
    (
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        64000,
        ProfileOnly,
    ),
    ("anthropic.claude-v2", 4096, Direct),
    ("anthropic.claude-v2:1", 4096, Direct),
    ("anthropic.claude-instant-v1", 4096, Direct),
    ("amazon.nova-micro-v1:0", 5120, Direct),
    ("amazon.nova-lite-v1:0", 5120, Direct),
    ("amazon.nova-pro-v1:0", 5120, Direct),
    ("amazon.nova-premier-v1:0", 10000, ProfileOnly),
    ("amazon.titan-text-express-v1", 8192, Direct),
    ("meta.llama3-8b-instruct-v1:0", 2048, Direct),
    ("meta.llama3-70b-instruct-v1:0", 2048, Direct),
    ("mistral.mistral-large-2402-v1:0", 8192, Direct),
];

const INFERENCE_PROFILE_PREFIXES: &[&str] = &["us.", "eu.", "apac.", "global."];

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    extra: Vec<String>,
}

impl Catalog {
    pub fn new(extra: Vec<String>) -> Self {
        Self { extra }
    }

    /// The output-token limit of a model identifier as Bedrock accepts it (model id, inference
    /// profile id, or foundation-model / inference-profile / provisioned-model ARN), or the
    /// ValidationException Bedrock answers for it.
    pub fn max_output_tokens(&self, model_id: &str) -> Result<u32, BedrockError> {
        match model_id.strip_prefix("arn:") {
            Some(resource) => self.arn_limit(resource),
            None => self.id_limit(model_id),
        }
        .ok_or_else(|| BedrockError::validation("The provided model identifier is invalid."))?
    }

    /// `None` when the identifier is unknown.
    fn id_limit(&self, model_id: &str) -> Option<Result<u32, BedrockError>> {
        match profile_base(model_id) {
            Some(base) => self.foundation_limit(base, true),
            None => self.foundation_limit(model_id, false),
        }
        .or_else(|| {
            self.extra
                .iter()
                .any(|id| id == model_id)
                .then_some(Ok(DEFAULT_MAX_OUTPUT_TOKENS))
        })
    }

    fn foundation_limit(&self, base: &str, via_profile: bool) -> Option<Result<u32, BedrockError>> {
        let (_, limit, on_demand) = FOUNDATION_MODELS.iter().find(|(id, ..)| *id == base)?;
        Some(if *on_demand == ProfileOnly && !via_profile {
            Err(profile_required(base))
        } else {
            Ok(*limit)
        })
    }

    /// `aws:bedrock:REGION:ACCOUNT:TYPE/ID` (the part after `arn:`).
    fn arn_limit(&self, resource: &str) -> Option<Result<u32, BedrockError>> {
        let mut parts = resource.splitn(5, ':');
        let (partition, service) = (parts.next()?, parts.next()?);
        let (_region, _account, rest) = (parts.next()?, parts.next()?, parts.next()?);
        if !partition.starts_with("aws") || service != "bedrock" {
            return None;
        }
        let (kind, id) = rest.split_once('/')?;
        match kind {
            "foundation-model" => self.foundation_limit(id, false),
            "inference-profile" => self.foundation_limit(profile_base(id).unwrap_or(id), true),
            // Provisioned Throughput ARNs are resolved by the Provisioned Throughput registry
            // (`ProvisionedState::max_output_tokens`): an ARN it does not hold is not a model.
            _ => None,
        }
    }

    /// The model a Provisioned Throughput may be bought for, as the catalog names it: a
    /// foundation-model id or ARN (served on demand or only through profiles alike), optionally
    /// with the context suffix of Bedrock's provisioning ids (`…-v1:0:200k`), or an extra model.
    /// `None` for anything else (inference profiles, unknown models, other ARNs).
    pub fn provisionable(&self, model_id: &str) -> Option<String> {
        let id = match model_id.strip_prefix("arn:") {
            Some(resource) => {
                let mut parts = resource.splitn(5, ':');
                let (partition, service) = (parts.next()?, parts.next()?);
                let (_region, account, rest) = (parts.next()?, parts.next()?, parts.next()?);
                if !partition.starts_with("aws") || service != "bedrock" || !account.is_empty() {
                    return None;
                }
                rest.strip_prefix("foundation-model/")?
            }
            None => model_id,
        };
        let known = |id: &str| {
            FOUNDATION_MODELS.iter().any(|(known, ..)| *known == id)
                || self.extra.iter().any(|extra| extra == id)
        };
        if known(id) {
            return Some(id.to_owned());
        }
        let (base, context) = id.rsplit_once(':')?;
        let digits = context.strip_suffix('k')?;
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && known(base))
            .then(|| base.to_owned())
    }

    /// The output-token limit of a model served through a Provisioned Throughput (a model
    /// [`Catalog::provisionable`] named): on-demand restrictions do not apply.
    pub fn provisioned_limit(&self, base: &str) -> Option<u32> {
        match self.foundation_limit(base, true) {
            Some(Ok(limit)) => Some(limit),
            _ => self
                .extra
                .iter()
                .any(|id| id == base)
                .then_some(DEFAULT_MAX_OUTPUT_TOKENS),
        }
    }
}

/// The foundation model behind a cross-region inference profile id (`us.anthropic…`).
pub(crate) fn profile_base(model_id: &str) -> Option<&str> {
    INFERENCE_PROFILE_PREFIXES
        .iter()
        .find_map(|prefix| model_id.strip_prefix(prefix))
}

/// Bedrock's answer to an on-demand call of a model it serves only through inference profiles.
fn profile_required(model_id: &str) -> BedrockError {
    BedrockError::validation(format!(
        "Invocation of model ID {model_id} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_ids_profiles_and_arns() {
        let catalog = Catalog::new(vec!["custom.model-v1".into()]);
        assert_eq!(
            catalog.max_output_tokens("anthropic.claude-3-haiku-20240307-v1:0"),
            Ok(4096)
        );
        assert_eq!(
            catalog.max_output_tokens("us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            Ok(8192)
        );
        assert_eq!(
            catalog.max_output_tokens(
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2"
            ),
            Ok(4096)
        );
        // A Provisioned Throughput ARN is the registry's to resolve, not the catalog's.
        assert!(catalog
            .max_output_tokens("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123")
            .is_err());
        assert_eq!(catalog.max_output_tokens("custom.model-v1"), Ok(4096));
        assert!(catalog.max_output_tokens("openai.gpt-9").is_err());
        assert!(catalog
            .max_output_tokens("arn:aws:s3:::bucket/key")
            .is_err());
    }

    #[test]
    fn profile_only_models_are_served_through_profiles_only() {
        let catalog = Catalog::default();
        const SONNET_4_5: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
        for on_demand in [
            SONNET_4_5.to_owned(),
            format!("arn:aws:bedrock:us-east-1::foundation-model/{SONNET_4_5}"),
        ] {
            let error = catalog.max_output_tokens(&on_demand).unwrap_err();
            assert_eq!(error.error_type, "ValidationException");
            assert_eq!(
                error.message,
                "Invocation of model ID anthropic.claude-sonnet-4-5-20250929-v1:0 with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
            );
        }
        for prefix in ["us.", "eu.", "apac.", "global."] {
            assert_eq!(
                catalog.max_output_tokens(&format!("{prefix}{SONNET_4_5}")),
                Ok(64000)
            );
        }
        assert_eq!(
            catalog.max_output_tokens(&format!(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{SONNET_4_5}"
            )),
            Ok(64000)
        );
        for (id, limit) in [
            ("anthropic.claude-3-7-sonnet-20250219-v1:0", 8192),
            ("anthropic.claude-sonnet-4-20250514-v1:0", 64000),
            ("anthropic.claude-opus-4-20250514-v1:0", 32000),
            ("anthropic.claude-opus-4-1-20250805-v1:0", 32000),
            ("anthropic.claude-haiku-4-5-20251001-v1:0", 64000),
            ("amazon.nova-premier-v1:0", 10000),
        ] {
            assert!(catalog.max_output_tokens(id).is_err(), "{id}");
            assert_eq!(
                catalog.max_output_tokens(&format!("us.{id}")),
                Ok(limit),
                "{id}"
            );
        }
    }

    #[test]
    fn provisionable_models_are_foundation_models_with_or_without_context() {
        let catalog = Catalog::new(vec!["custom.model-v1".into()]);
        const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
        for id in [
            HAIKU.to_owned(),
            format!("{HAIKU}:200k"),
            format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"),
            format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}:48k"),
        ] {
            assert_eq!(catalog.provisionable(&id).as_deref(), Some(HAIKU), "{id}");
        }
        assert_eq!(
            catalog
                .provisionable("anthropic.claude-sonnet-4-5-20250929-v1:0")
                .as_deref(),
            Some("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            "models served on demand only through profiles can be provisioned"
        );
        assert_eq!(
            catalog.provisionable("custom.model-v1").as_deref(),
            Some("custom.model-v1")
        );
        for refused in [
            format!("us.{HAIKU}"),
            format!("{HAIKU}:k"),
            format!("{HAIKU}:12x"),
            "vendor.unknown-v1".to_owned(),
            format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{HAIKU}"),
            "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdefabcdef".to_owned(),
        ] {
            assert_eq!(catalog.provisionable(&refused), None, "{refused}");
        }
        assert_eq!(
            catalog.provisioned_limit("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some(64000)
        );
        assert_eq!(
            catalog.provisioned_limit("custom.model-v1"),
            Some(DEFAULT_MAX_OUTPUT_TOKENS)
        );
        assert_eq!(catalog.provisioned_limit("vendor.unknown-v1"), None);
    }
}
