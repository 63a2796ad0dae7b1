//! The models the emulator knows, with their output-token limits.

/// Output-token limit used for Provisioned Throughput ARNs and models added at start.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4096;

const FOUNDATION_MODELS: &[(&str, u32)] = &[
    ("anthropic.claude-3-haiku-20240307-v1:0", 4096),
    ("anthropic.claude-3-sonnet-20240229-v1:0", 4096),
    ("anthropic.claude-3-opus-20240229-v1:0", 4096),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", 8192),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", 8192),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", 8192),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", 8192),
    ("anthropic.claude-v2", 4096),
    ("anthropic.claude-v2:1", 4096),
    ("anthropic.claude-instant-v1", 4096),
    ("amazon.nova-micro-v1:0", 5120),
    ("amazon.nova-lite-v1:0", 5120),
    ("amazon.nova-pro-v1:0", 5120),
    ("amazon.titan-text-express-v1", 8192),
    ("meta.llama3-8b-instruct-v1:0", 2048),
    ("meta.llama3-70b-instruct-v1:0", 2048),
    ("mistral.mistral-large-2402-v1:0", 8192),
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
    /// profile id, or foundation-model / inference-profile / provisioned-model ARN), or `None`
    /// when Bedrock would reject the identifier.
    pub fn max_output_tokens(&self, model_id: &str) -> Option<u32> {
        if let Some(resource) = model_id.strip_prefix("arn:") {
            return self.arn_limit(resource);
        }
        self.id_limit(model_id)
    }

    fn id_limit(&self, model_id: &str) -> Option<u32> {
        let base = INFERENCE_PROFILE_PREFIXES
            .iter()
            .find_map(|prefix| model_id.strip_prefix(prefix))
            .unwrap_or(model_id);
        FOUNDATION_MODELS
            .iter()
            .find(|(id, _)| *id == base)
            .map(|(_, limit)| *limit)
            .or_else(|| {
                self.extra
                    .iter()
                    .any(|id| id == model_id)
                    .then_some(DEFAULT_MAX_OUTPUT_TOKENS)
            })
    }

    /// `aws:bedrock:REGION:ACCOUNT:TYPE/ID` (the part after `arn:`).
    fn arn_limit(&self, resource: &str) -> Option<u32> {
        let mut parts = resource.splitn(5, ':');
        let (partition, service) = (parts.next()?, parts.next()?);
        let (_region, _account, rest) = (parts.next()?, parts.next()?, parts.next()?);
        if !partition.starts_with("aws") || service != "bedrock" {
            return None;
        }
        let (kind, id) = rest.split_once('/')?;
        match kind {
            "foundation-model" | "inference-profile" => self.id_limit(id),
            "provisioned-model" if !id.is_empty() => Some(DEFAULT_MAX_OUTPUT_TOKENS),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_ids_profiles_and_arns() {
        let catalog = Catalog::new(vec!["custom.model-v1".into()]);
        assert_eq!(
            catalog.max_output_tokens("anthropic.claude-3-haiku-20240307-v1:0"),
            Some(4096)
        );
        assert_eq!(
            catalog.max_output_tokens("us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            Some(8192)
        );
        assert_eq!(
            catalog.max_output_tokens(
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2"
            ),
            Some(4096)
        );
        assert_eq!(
            catalog.max_output_tokens(
                "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123"
            ),
            Some(DEFAULT_MAX_OUTPUT_TOKENS)
        );
        assert_eq!(catalog.max_output_tokens("custom.model-v1"), Some(4096));
        assert_eq!(catalog.max_output_tokens("openai.gpt-9"), None);
        assert_eq!(catalog.max_output_tokens("arn:aws:s3:::bucket/key"), None);
    }
}
