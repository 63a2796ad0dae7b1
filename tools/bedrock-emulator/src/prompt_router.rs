//! Prompt routers: a Converse or ConverseStream call whose `modelId` is a prompt router's ARN
//! (`arn:aws:bedrock:REGION:ACCOUNT:default-prompt-router/NAME` or `…:prompt-router/ID`) is
//! served by one of the router's two models, chosen by the length of the prompt: requests of
//! at least `thresholdChars` characters (counted as input tokens are: text blocks' characters,
//! other blocks' serialised size, tool definitions) go to the second (larger) model, shorter
//! ones to the first. The call is then answered, checked and counted exactly as a call to that
//! model, and the answer (the Converse response, the stream's `metadata` event) carries
//! `trace: {"promptRouter": {"invokedModelId": "<its ARN>"}}`.
//!
//! Built in: the default router [`DEFAULT_ROUTER_ID`] of the emulator's region and account,
//! between Claude 3 Haiku and Claude 3.5 Sonnet at [`DEFAULT_THRESHOLD_CHARS`]. More (or that
//! one changed) under `"promptRouters"` in `POST /_emulator/config`, keyed by ARN: `{"models":
//! [short, long], "thresholdChars": N, "name": "…"}`; `null` removes one (the built-in one then
//! answers again at its ARN).
//!
//! Control plane (service `bedrock`): `GetPromptRouter` (`GET /prompt-routers/{promptRouterArn}`)
//! and `ListPromptRouters` (`GET /prompt-routers`, `type`, `maxResults`, `nextToken`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{profile_base, Catalog};
use crate::checks::full_match;
use crate::identity::Identity;

/// The prompt router ARNs the emulator serves: botocore's `PromptRouterArn` pattern, widened
/// to the `prompt-router/` ARNs of custom routers (which the runtime's `ConversationalModelId`
/// pattern accepts).
pub const ARN_PATTERN: &str =
    r"arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:(default-)?prompt-router/[a-zA-Z0-9-:.]+";
/// botocore's `PromptRouterName` pattern.
const NAME_PATTERN: &str = "([0-9a-zA-Z][ _-]?)+";
/// The resource id of the built-in default router.
pub const DEFAULT_ROUTER_ID: &str = "anthropic.claude:1";
/// The built-in router's name.
pub const DEFAULT_ROUTER_NAME: &str = "Anthropic Prompt Router";
/// The built-in router's model for shorter prompts.
pub const DEFAULT_SHORT_MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// The built-in router's model for longer prompts (and its fallback model).
pub const DEFAULT_LONG_MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// Prompts of at least this many characters go to the larger model, unless configured.
pub const DEFAULT_THRESHOLD_CHARS: u64 = 2000;

/// A prompt router: two models, and the prompt length from which the second serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptRouter {
    /// `[short, long]`: model ids (foundation models or inference profiles) served on demand.
    pub models: [String; 2],
    pub threshold_chars: u64,
    /// Its `promptRouterName`; the ARN's resource id when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl PromptRouter {
    /// The built-in default router.
    pub fn builtin() -> Self {
        Self {
            models: [
                DEFAULT_SHORT_MODEL.to_owned(),
                DEFAULT_LONG_MODEL.to_owned(),
            ],
            threshold_chars: DEFAULT_THRESHOLD_CHARS,
            name: Some(DEFAULT_ROUTER_NAME.to_owned()),
        }
    }

    /// The model that serves a prompt of `chars` characters.
    pub fn pick(&self, chars: usize) -> &str {
        let long = u64::try_from(chars).unwrap_or(u64::MAX) >= self.threshold_chars;
        &self.models[usize::from(long)]
    }
}

/// The built-in default router's ARN in an account and region.
pub fn default_router_arn(identity: &Identity) -> String {
    format!(
        "arn:aws:bedrock:{}:{}:default-prompt-router/{DEFAULT_ROUTER_ID}",
        identity.region, identity.account
    )
}

/// Whether a model identifier is a prompt router ARN (known or not).
pub fn is_prompt_router_arn(model_id: &str) -> bool {
    model_id.starts_with("arn:")
        && (model_id.contains(":default-prompt-router/") || model_id.contains(":prompt-router/"))
}

/// The ARN a router reports for a model it invokes (botocore's `InvokedModelId`): a
/// foundation model's ARN, or an inference profile's.
pub fn invoked_model_arn(identity: &Identity, model_id: &str) -> String {
    let Identity { region, account } = identity;
    if profile_base(model_id).is_some() {
        format!("arn:aws:bedrock:{region}:{account}:inference-profile/{model_id}")
    } else {
        format!("arn:aws:bedrock:{region}::foundation-model/{model_id}")
    }
}

/// A partial update of a [`PromptRouter`]: absent fields keep their value; a new router needs
/// `models`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptRouterPatch {
    pub models: Option<Vec<String>>,
    pub threshold_chars: Option<u64>,
    pub name: Option<String>,
}

/// Applies the `"promptRouters"` part of a config patch (`null` removes a router); every model
/// must be one the catalog serves on demand, by id or inference profile id.
pub fn patch_routers(
    routers: &mut BTreeMap<String, PromptRouter>,
    patches: &BTreeMap<String, Option<PromptRouterPatch>>,
    catalog: &Catalog,
    identity: &Identity,
) -> Result<(), String> {
    for (arn, patch) in patches {
        let Some(patch) = patch else {
            routers.remove(arn);
            continue;
        };
        if !full_match(ARN_PATTERN, arn) {
            return Err(format!(
                "promptRouters: {arn:?} is not a prompt router ARN ({ARN_PATTERN})"
            ));
        }
        if let Some(name) = &patch.name {
            if name.chars().count() > 64 || !full_match(NAME_PATTERN, name) {
                return Err(format!(
                    "promptRouters.{arn}.name must hold 1 to 64 characters of {NAME_PATTERN}"
                ));
            }
        }
        let mut router = match (routers.get(arn), &patch.models) {
            (Some(router), _) => router.clone(),
            (None, _) if *arn == default_router_arn(identity) => PromptRouter::builtin(),
            (None, Some(_)) => PromptRouter {
                models: Default::default(),
                threshold_chars: DEFAULT_THRESHOLD_CHARS,
                name: None,
            },
            (None, None) => {
                return Err(format!(
                    "promptRouters.{arn}: a new router needs models: [short, long]"
                ))
            }
        };
        if let Some(models) = &patch.models {
            let [short, long] = models.as_slice() else {
                return Err(format!(
                    "promptRouters.{arn}.models must name two models: [short, long]"
                ));
            };
            for model in [short, long] {
                if model.starts_with("arn:") || catalog.max_output_tokens(model).is_err() {
                    return Err(format!(
                        "promptRouters.{arn}.models: {model:?} is not a model id or inference profile id the emulator serves on demand"
                    ));
                }
            }
            router.models = [short.clone(), long.clone()];
        }
        if let Some(threshold) = patch.threshold_chars {
            router.threshold_chars = threshold;
        }
        if patch.name.is_some() {
            router.name.clone_from(&patch.name);
        }
        routers.insert(arn.clone(), router);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:prompt-router/abc123";

    fn patch(value: Value) -> BTreeMap<String, Option<PromptRouterPatch>> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_prompt_length_picks_the_model() {
        let router = PromptRouter::builtin();
        assert_eq!(router.pick(0), DEFAULT_SHORT_MODEL);
        assert_eq!(router.pick(1999), DEFAULT_SHORT_MODEL);
        assert_eq!(router.pick(2000), DEFAULT_LONG_MODEL);
        let identity = Identity::default();
        assert_eq!(
            default_router_arn(&identity),
            "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1"
        );
        assert_eq!(
            invoked_model_arn(&identity, DEFAULT_LONG_MODEL),
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        assert_eq!(
            invoked_model_arn(&identity, "us.amazon.nova-pro-v1:0"),
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0"
        );
        assert!(is_prompt_router_arn(ARN));
        assert!(!is_prompt_router_arn(DEFAULT_SHORT_MODEL));
    }

    #[test]
    fn routers_are_configured_checked_and_removed() {
        let (catalog, identity) = (Catalog::default(), Identity::default());
        let mut routers = BTreeMap::new();
        patch_routers(
            &mut routers,
            &patch(json!({ARN: {"models": ["amazon.nova-micro-v1:0", "us.amazon.nova-pro-v1:0"], "thresholdChars": 10}})),
            &catalog,
            &identity,
        )
        .unwrap();
        assert_eq!(routers[ARN].pick(10), "us.amazon.nova-pro-v1:0");
        // The built-in router's ARN starts from the built-in router.
        let default = default_router_arn(&identity);
        patch_routers(
            &mut routers,
            &patch(json!({default.clone(): {"thresholdChars": 5}})),
            &catalog,
            &identity,
        )
        .unwrap();
        assert_eq!(routers[&default].models[1], DEFAULT_LONG_MODEL);
        assert_eq!(routers[&default].threshold_chars, 5);
        for bad in [
            json!({"arn:aws:bedrock:us-east-1:123456789012:guardrail/x": {"models": [DEFAULT_SHORT_MODEL, DEFAULT_LONG_MODEL]}}),
            json!({"arn:aws:bedrock:us-east-1:123456789012:prompt-router/new": {"thresholdChars": 5}}),
            json!({ARN: {"models": [DEFAULT_SHORT_MODEL]}}),
            json!({ARN: {"models": [DEFAULT_SHORT_MODEL, "openai.gpt-9"]}}),
            json!({ARN: {"models": [DEFAULT_SHORT_MODEL, "anthropic.claude-sonnet-4-5-20250929-v1:0"]}}),
            json!({ARN: {"name": "no/slashes"}}),
        ] {
            assert!(
                patch_routers(&mut routers, &patch(bad.clone()), &catalog, &identity).is_err(),
                "{bad}"
            );
        }
        patch_routers(
            &mut routers,
            &patch(json!({ARN: null})),
            &catalog,
            &identity,
        )
        .unwrap();
        assert!(!routers.contains_key(ARN));
    }
}
