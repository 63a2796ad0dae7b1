//! Guardrails in Converse and ConverseStream (`guardrailConfig`), defined through the admin API.
//!
//! A guardrail is defined under `"guardrails"` in `POST /_emulator/config`, keyed by its id
//! (`[a-z0-9]{1,64}`): `blockedWords` (checked against the request's text and the answer),
//! `blockedOutputWords` (checked against the answer only), `blockedInputMessage`,
//! `blockedOutputMessage` (what the answer becomes when the guardrail intervenes; Bedrock's
//! default, `Sorry, the model cannot answer this question.`, unless set) and `versions` (the
//! numbered versions that exist besides `DRAFT`, default 1). `null` removes one.
//!
//! A request names one with `guardrailConfig: {guardrailIdentifier, guardrailVersion, trace?,
//! streamProcessingMode?}` (botocore's `GuardrailConfiguration` and
//! `GuardrailStreamConfiguration`). The identifier is the id or the guardrail's ARN
//! (`arn:aws:bedrock:REGION:ACCOUNT:guardrail/ID`, of the emulator's region and account); the
//! version `DRAFT` or a number up to `versions`. Members outside the model's patterns and enums
//! are refused with Bedrock's `1 validation error detected: …`; a guardrail or version that
//! does not exist is a `ValidationException`, in Bedrock's words: `The guardrail identifier or
//! version provided in the request does not exist.` An empty (or absent) identifier applies no
//! guardrail (the emulator has no account-level guardrail); an identifier without a version is
//! refused (`Value null at 'guardrailConfig.guardrailVersion'…`).
//!
//! Assessment, deterministic: a blocked word matches case-insensitively as a whole word (or
//! phrase): not inside a longer word. The input is the text of the request's `guardContent`
//! blocks if it has any, otherwise every text block of `system` and `messages`. A match in the
//! input intervenes before the model runs: the answer is `blockedInputMessage`. Otherwise the
//! model's answer (its text, or a tool call's input JSON) is checked against `blockedWords`
//! and `blockedOutputWords`: a match replaces it with `blockedOutputMessage`. Either way
//! `stopReason` is `guardrail_intervened` and the output tokens are the message's. With
//! `trace` `enabled` or `enabled_full`, the answer carries `trace.guardrail`
//! ([`GuardrailUse::trace`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::checks::full_match;
use crate::error::BedrockError;
use crate::generate::{tokens_for, Generated, StopReason, GUARDRAIL_BLOCKED_MESSAGE};
use crate::identity::Identity;
use crate::tier::{missing, not_in_enum};

/// botocore's `GuardrailIdentifier` pattern.
pub const IDENTIFIER_PATTERN: &str =
    r"(|([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+))";
/// botocore's `GuardrailVersion` pattern.
pub const VERSION_PATTERN: &str = r"(|([1-9][0-9]{0,7})|(DRAFT))";
/// The ids the admin API accepts for a guardrail.
const ID_PATTERN: &str = "[a-z0-9]{1,64}";
/// The longest blocked message Bedrock accepts.
const MAX_MESSAGE_CHARS: usize = 500;
/// Characters a guardrail text unit holds (what `wordPolicyUnits` counts).
const TEXT_UNIT_CHARS: usize = 1000;

/// Bedrock's answer for a guardrail or version it does not hold.
pub const NOT_FOUND_MESSAGE: &str =
    "The guardrail identifier or version provided in the request does not exist.";

/// A guardrail, as defined through the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guardrail {
    /// Words (or phrases) blocked in the input and in the answer.
    pub blocked_words: Vec<String>,
    /// Words (or phrases) blocked in the answer only.
    pub blocked_output_words: Vec<String>,
    /// The answer when the input is blocked.
    pub blocked_input_message: String,
    /// The answer when the model's answer is blocked.
    pub blocked_output_message: String,
    /// Numbered versions that exist (1..=versions), besides `DRAFT`.
    pub versions: u32,
}

impl Default for Guardrail {
    fn default() -> Self {
        Self {
            blocked_words: Vec::new(),
            blocked_output_words: Vec::new(),
            blocked_input_message: GUARDRAIL_BLOCKED_MESSAGE.to_owned(),
            blocked_output_message: GUARDRAIL_BLOCKED_MESSAGE.to_owned(),
            versions: 1,
        }
    }
}

/// A partial update of a [`Guardrail`]: absent fields keep their value (a new guardrail
/// starts from the defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardrailPatch {
    pub blocked_words: Option<Vec<String>>,
    pub blocked_output_words: Option<Vec<String>>,
    pub blocked_input_message: Option<String>,
    pub blocked_output_message: Option<String>,
    pub versions: Option<u32>,
}

impl GuardrailPatch {
    fn validate(&self, id: &str) -> Result<(), String> {
        if !full_match(ID_PATTERN, id) {
            return Err(format!(
                "guardrails: the id {id:?} must match {ID_PATTERN} (the guardrail id, not its ARN)"
            ));
        }
        let words = [
            ("blockedWords", &self.blocked_words),
            ("blockedOutputWords", &self.blocked_output_words),
        ];
        for (name, words) in words {
            for word in words.iter().flatten() {
                if word.trim().is_empty() {
                    return Err(format!("guardrails.{id}.{name}: a word must not be blank"));
                }
            }
        }
        let messages = [
            ("blockedInputMessage", &self.blocked_input_message),
            ("blockedOutputMessage", &self.blocked_output_message),
        ];
        for (name, message) in messages {
            if let Some(message) = message {
                let length = message.chars().count();
                if message.trim().is_empty() || length > MAX_MESSAGE_CHARS {
                    return Err(format!(
                        "guardrails.{id}.{name} must hold 1 to {MAX_MESSAGE_CHARS} characters, not blank"
                    ));
                }
            }
        }
        Ok(())
    }

    fn apply(&self, to: &mut Guardrail) {
        if let Some(v) = &self.blocked_words {
            to.blocked_words.clone_from(v);
        }
        if let Some(v) = &self.blocked_output_words {
            to.blocked_output_words.clone_from(v);
        }
        if let Some(v) = &self.blocked_input_message {
            to.blocked_input_message.clone_from(v);
        }
        if let Some(v) = &self.blocked_output_message {
            to.blocked_output_message.clone_from(v);
        }
        if let Some(v) = self.versions {
            to.versions = v;
        }
    }
}

/// Applies the `"guardrails"` part of a config patch: each id's patch (`null` removes it).
pub fn patch_guardrails(
    guardrails: &mut BTreeMap<String, Guardrail>,
    patches: &BTreeMap<String, Option<GuardrailPatch>>,
) -> Result<(), String> {
    for (id, patch) in patches {
        match patch {
            Some(patch) => {
                patch.validate(id)?;
                patch.apply(guardrails.entry(id.clone()).or_default());
            }
            None => {
                guardrails.remove(id);
            }
        }
    }
    Ok(())
}

/// A request's `guardrailConfig`, checked and resolved to a guardrail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailRequest {
    /// The guardrail's id (the identifier's, if it was an ARN).
    pub id: String,
    pub guardrail: Guardrail,
    /// Whether the answer carries `trace.guardrail`.
    pub trace: bool,
}

fn malformed(member: &str, expected: &str) -> BedrockError {
    BedrockError::validation(format!(
        "Malformed input request: guardrailConfig.{member}: expected {expected}"
    ))
}

fn pattern_violation(value: &str, at: &str, pattern: &str) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
    ))
}

/// A string member of `guardrailConfig` (`None` when absent or `null`).
fn string_member<'a>(config: &'a Value, member: &str) -> Result<Option<&'a str>, BedrockError> {
    match config.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(member, "a string")),
    }
}

fn enum_member(config: &Value, member: &str, set: &[&str]) -> Result<Option<String>, BedrockError> {
    let Some(value) = config.get(member).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match value.as_str() {
        Some(s) if set.contains(&s) => Ok(Some(s.to_owned())),
        _ => Err(not_in_enum(
            value,
            &format!("guardrailConfig.{member}"),
            set,
        )),
    }
}

/// The guardrail id an identifier names: the id itself, or the id of a guardrail ARN of the
/// emulator's region and account (`None` for another's).
fn guardrail_id<'a>(identifier: &'a str, identity: &Identity) -> Option<&'a str> {
    let Some(resource) = identifier.strip_prefix("arn:") else {
        return Some(identifier);
    };
    let mut parts = resource.splitn(5, ':');
    let (_partition, _service) = (parts.next()?, parts.next()?);
    let (region, account, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if region != identity.region || account != identity.account {
        return None;
    }
    rest.strip_prefix("guardrail/")
}

/// The guardrail a Converse request's `guardrailConfig` names (`None` without one, or with an
/// empty identifier), or the `ValidationException` Bedrock answers for it.
pub fn requested(
    request: &Value,
    lookup: impl Fn(&str) -> Option<Guardrail>,
    identity: &Identity,
) -> Result<Option<GuardrailRequest>, BedrockError> {
    let Some(config) = request.get("guardrailConfig").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if !config.is_object() {
        return Err(BedrockError::validation(
            "Malformed input request: guardrailConfig: expected a structure",
        ));
    }
    let identifier = string_member(config, "guardrailIdentifier")?.unwrap_or_default();
    if identifier.len() > 2048 {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{identifier}' at 'guardrailConfig.guardrailIdentifier' failed to satisfy constraint: Member must have length less than or equal to 2048"
        )));
    }
    if !full_match(IDENTIFIER_PATTERN, identifier) {
        return Err(pattern_violation(
            identifier,
            "guardrailConfig.guardrailIdentifier",
            IDENTIFIER_PATTERN,
        ));
    }
    let version = string_member(config, "guardrailVersion")?.unwrap_or_default();
    if !full_match(VERSION_PATTERN, version) {
        return Err(pattern_violation(
            version,
            "guardrailConfig.guardrailVersion",
            VERSION_PATTERN,
        ));
    }
    let trace = enum_member(config, "trace", &["enabled", "disabled", "enabled_full"])?;
    enum_member(config, "streamProcessingMode", &["sync", "async"])?;
    if identifier.is_empty() {
        return Ok(None);
    }
    if version.is_empty() {
        return Err(missing("guardrailConfig.guardrailVersion"));
    }
    let not_found = || BedrockError::validation(NOT_FOUND_MESSAGE);
    let id = guardrail_id(identifier, identity).ok_or_else(not_found)?;
    let guardrail = lookup(id).ok_or_else(not_found)?;
    if version != "DRAFT" {
        let number: u32 = version.parse().map_err(|_| not_found())?;
        if number > guardrail.versions {
            return Err(not_found());
        }
    }
    Ok(Some(GuardrailRequest {
        id: id.to_owned(),
        guardrail,
        trace: matches!(trace.as_deref(), Some("enabled" | "enabled_full")),
    }))
}

/// Whether `word` occurs in `text` as a whole word (or phrase), case-insensitively.
fn contains_word(text: &str, word: &str) -> bool {
    let (text, word) = (text.to_lowercase(), word.trim().to_lowercase());
    if word.is_empty() {
        return false;
    }
    text.match_indices(&word).any(|(at, found)| {
        let before = text[..at].chars().next_back();
        let after = text[at + found.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The words of `words` found in `text`, in their order, each once.
pub fn matches<'a>(words: impl IntoIterator<Item = &'a String>, text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for word in words {
        if !found.contains(word) && contains_word(text, word) {
            found.push(word.clone());
        }
    }
    found
}

/// The text of a content or system block that a guardrail assesses as guarded content.
fn guard_content_text(block: &Value) -> Option<&str> {
    block
        .get("guardContent")
        .and_then(|g| g.get("text"))
        .and_then(|t| t.get("text"))
        .and_then(Value::as_str)
}

/// The text a guardrail assesses in a Converse request: its `guardContent` blocks' text if it
/// has any, otherwise every text block of `system` and `messages` (one text, a line apart).
pub fn input_text(request: &Value) -> String {
    let blocks: Vec<&Value> = request
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            request
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("content").and_then(Value::as_array))
                .flatten(),
        )
        .collect();
    let guarded: Vec<&str> = blocks
        .iter()
        .filter_map(|b| guard_content_text(b))
        .collect();
    let texts = if guarded.is_empty() {
        blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect()
    } else {
        guarded
    };
    texts.join("\n")
}

/// What a guardrail found in the model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputAssessment {
    /// Characters of the answer assessed.
    pub chars: usize,
    /// Blocked words found in it.
    pub matches: Vec<String>,
    /// The answer as the model wrote it.
    pub original: String,
}

/// What a guardrail did to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailUse {
    pub id: String,
    /// Whether the answer carries `trace.guardrail`.
    pub trace: bool,
    /// Characters of the input assessed.
    pub input_chars: usize,
    /// Blocked words found in the input (the model did not run if any).
    pub input_matches: Vec<String>,
    /// The answer's assessment; `None` when the input was blocked.
    pub output: Option<OutputAssessment>,
}

/// The answer a guardrail gives in place of the model's.
fn blocked(message: &str) -> Generated {
    Generated {
        text: message.to_owned(),
        output_tokens: tokens_for(message.len()),
        stop_reason: StopReason::GuardrailIntervened,
        stop_sequence: None,
        tool_use: None,
    }
}

impl GuardrailRequest {
    /// Assesses a call: its input (`input`, see [`input_text`]), then, if the input passes,
    /// the model's answer. Returns the answer given (the model's, or the blocked message) and
    /// what the guardrail did.
    pub fn apply(self, input: &str, answer: Generated) -> (Generated, GuardrailUse) {
        let guardrail = &self.guardrail;
        let input_matches = matches(&guardrail.blocked_words, input);
        let mut assessed = GuardrailUse {
            id: self.id,
            trace: self.trace,
            input_chars: input.chars().count(),
            input_matches,
            output: None,
        };
        if !assessed.input_matches.is_empty() {
            return (blocked(&guardrail.blocked_input_message), assessed);
        }
        let original = match &answer.tool_use {
            Some(call) => call.input_json(),
            None => answer.text.clone(),
        };
        let words = guardrail
            .blocked_words
            .iter()
            .chain(&guardrail.blocked_output_words);
        let output_matches = matches(words, &original);
        let intervened = !output_matches.is_empty();
        assessed.output = Some(OutputAssessment {
            chars: original.chars().count(),
            matches: output_matches,
            original,
        });
        if intervened {
            (blocked(&guardrail.blocked_output_message), assessed)
        } else {
            (answer, assessed)
        }
    }
}

/// One `GuardrailAssessment`: the custom words found (if any) and the invocation metrics.
fn assessment(chars: usize, matches: &[String]) -> Value {
    let units = chars.div_ceil(TEXT_UNIT_CHARS);
    let mut assessment = json!({
        "invocationMetrics": {
            "guardrailProcessingLatency": 0,
            "usage": {
                "topicPolicyUnits": 0,
                "contentPolicyUnits": 0,
                "wordPolicyUnits": units,
                "sensitiveInformationPolicyUnits": 0,
                "sensitiveInformationPolicyFreeUnits": 0,
                "contextualGroundingPolicyUnits": 0,
            },
            "guardrailCoverage": {"textCharacters": {"guarded": chars, "total": chars}},
        },
    });
    if !matches.is_empty() {
        let words: Vec<Value> = matches
            .iter()
            .map(|word| json!({"match": word, "action": "BLOCKED", "detected": true}))
            .collect();
        assessment["wordPolicy"] = json!({"customWords": words, "managedWordLists": []});
    }
    assessment
}

impl GuardrailUse {
    /// Whether the guardrail replaced the answer.
    pub fn intervened(&self) -> bool {
        self.input_blocked() || self.output.as_ref().is_some_and(|o| !o.matches.is_empty())
    }

    /// Whether the input was blocked (the model did not run).
    pub fn input_blocked(&self) -> bool {
        !self.input_matches.is_empty()
    }

    /// The answer's `trace.guardrail` (botocore's `GuardrailTraceAssessment`), when the request
    /// asked for a trace: `inputAssessment` keyed by the guardrail id, `outputAssessments` when
    /// the answer was assessed, and `modelOutput` (the model's own answer) when it was blocked.
    pub fn trace(&self) -> Option<Value> {
        if !self.trace {
            return None;
        }
        let mut trace = json!({
            "inputAssessment": {(self.id.as_str()): assessment(self.input_chars, &self.input_matches)},
        });
        if let Some(output) = &self.output {
            trace["outputAssessments"] =
                json!({(self.id.as_str()): [assessment(output.chars, &output.matches)]});
            if !output.matches.is_empty() {
                trace["modelOutput"] = json!([output.original]);
            }
        }
        Some(trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guardrails() -> BTreeMap<String, Guardrail> {
        let mut map = BTreeMap::new();
        let patch: BTreeMap<String, Option<GuardrailPatch>> = serde_json::from_value(json!({
            "gr1": {"blockedWords": ["Secret", "bad thing"], "blockedInputMessage": "No.",
                    "blockedOutputWords": ["calm"], "versions": 2},
        }))
        .unwrap();
        patch_guardrails(&mut map, &patch).unwrap();
        map
    }

    fn resolve(config: Value) -> Result<Option<GuardrailRequest>, BedrockError> {
        let map = guardrails();
        requested(
            &json!({"guardrailConfig": config}),
            |id| map.get(id).cloned(),
            &Identity::default(),
        )
    }

    #[test]
    fn words_match_whole_and_case_insensitively() {
        assert!(contains_word("the SECRET is out", "secret"));
        assert!(contains_word("secret.", "Secret"));
        assert!(!contains_word("a bad  thing", "bad thing"));
        assert!(contains_word("a Bad Thing!", "bad thing"));
        assert!(!contains_word("secrets", "secret"));
        assert!(!contains_word("topsecret", "secret"));
        assert!(contains_word("secrets and secret", "secret"));
        let words = vec!["b".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(matches(&words, "a b"), ["b", "a"]);
    }

    #[test]
    fn identifiers_and_versions_are_resolved() {
        let found = resolve(json!({"guardrailIdentifier": "gr1", "guardrailVersion": "DRAFT"}))
            .unwrap()
            .unwrap();
        assert_eq!((found.id.as_str(), found.trace), ("gr1", false));
        let arn = "arn:aws:bedrock:us-east-1:123456789012:guardrail/gr1";
        let by_arn = resolve(
            json!({"guardrailIdentifier": arn, "guardrailVersion": "2", "trace": "enabled_full"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!((by_arn.id.as_str(), by_arn.trace), ("gr1", true));
        assert_eq!(resolve(json!({})).unwrap(), None);
        assert_eq!(resolve(json!({"guardrailIdentifier": ""})).unwrap(), None);

        for unknown in [
            json!({"guardrailIdentifier": "gr2", "guardrailVersion": "DRAFT"}),
            json!({"guardrailIdentifier": "gr1", "guardrailVersion": "3"}),
            json!({"guardrailIdentifier": "arn:aws:bedrock:eu-west-1:123456789012:guardrail/gr1", "guardrailVersion": "1"}),
        ] {
            let error = resolve(unknown.clone()).unwrap_err();
            assert_eq!(
                (error.error_type, error.message.as_str()),
                ("ValidationException", NOT_FOUND_MESSAGE),
                "{unknown}"
            );
        }
        for (bad, expected) in [
            (
                json!({"guardrailIdentifier": "GR1", "guardrailVersion": "1"}),
                "Value 'GR1' at 'guardrailConfig.guardrailIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern",
            ),
            (
                json!({"guardrailIdentifier": "gr1", "guardrailVersion": "0"}),
                "Value '0' at 'guardrailConfig.guardrailVersion'",
            ),
            (
                json!({"guardrailIdentifier": "gr1"}),
                "Value null at 'guardrailConfig.guardrailVersion' failed to satisfy constraint: Member must not be null",
            ),
            (
                json!({"guardrailIdentifier": "gr1", "guardrailVersion": "1", "trace": "on"}),
                "Value 'on' at 'guardrailConfig.trace' failed to satisfy constraint: Member must satisfy enum value set: [enabled, disabled, enabled_full]",
            ),
            (
                json!({"guardrailIdentifier": "gr1", "guardrailVersion": "1", "streamProcessingMode": "later"}),
                "at 'guardrailConfig.streamProcessingMode'",
            ),
            (
                json!({"guardrailIdentifier": 7}),
                "Malformed input request",
            ),
        ] {
            let error = resolve(bad.clone()).unwrap_err();
            assert_eq!(error.error_type, "ValidationException");
            assert!(error.message.contains(expected), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn guarded_content_alone_is_assessed_when_there_is_some() {
        let plain = json!({
            "system": [{"text": "sys"}],
            "messages": [{"role": "user", "content": [{"text": "one"}, {"image": {}}]}],
        });
        assert_eq!(input_text(&plain), "sys\none");
        let guarded = json!({
            "messages": [{"role": "user", "content": [
                {"text": "not this"}, {"guardContent": {"text": {"text": "only this"}}},
            ]}],
        });
        assert_eq!(input_text(&guarded), "only this");
    }

    fn request(trace: bool) -> GuardrailRequest {
        GuardrailRequest {
            id: "gr1".to_owned(),
            guardrail: guardrails()["gr1"].clone(),
            trace,
        }
    }

    fn answer(text: &str) -> Generated {
        Generated {
            text: text.to_owned(),
            output_tokens: tokens_for(text.len()),
            stop_reason: StopReason::EndTurn,
            stop_sequence: None,
            tool_use: None,
        }
    }

    #[test]
    fn a_blocked_input_replaces_the_answer_before_the_model_runs() {
        let (given, used) = request(true).apply("Tell me the secret", answer("calm words"));
        assert_eq!(given.text, "No.");
        assert_eq!(given.stop_reason, StopReason::GuardrailIntervened);
        assert_eq!(given.output_tokens, 1);
        assert!(used.intervened() && used.input_blocked());
        assert_eq!(
            used.trace().unwrap(),
            json!({"inputAssessment": {"gr1": {
                "wordPolicy": {"customWords": [{"match": "Secret", "action": "BLOCKED", "detected": true}], "managedWordLists": []},
                "invocationMetrics": {
                    "guardrailProcessingLatency": 0,
                    "usage": {"topicPolicyUnits": 0, "contentPolicyUnits": 0, "wordPolicyUnits": 1,
                              "sensitiveInformationPolicyUnits": 0, "sensitiveInformationPolicyFreeUnits": 0,
                              "contextualGroundingPolicyUnits": 0},
                    "guardrailCoverage": {"textCharacters": {"guarded": 18, "total": 18}},
                },
            }}})
        );
        assert_eq!(request(false).apply("secret", answer("x")).1.trace(), None);
    }

    #[test]
    fn a_blocked_answer_is_replaced_by_the_output_message() {
        let (given, used) = request(true).apply("Hello", answer("Calm and quiet."));
        assert_eq!(given.text, GUARDRAIL_BLOCKED_MESSAGE);
        assert_eq!(given.stop_reason, StopReason::GuardrailIntervened);
        assert!(used.intervened() && !used.input_blocked());
        let trace = used.trace().unwrap();
        assert_eq!(trace["modelOutput"], json!(["Calm and quiet."]));
        assert_eq!(
            trace["outputAssessments"]["gr1"][0]["wordPolicy"]["customWords"][0]["match"],
            "calm"
        );
        assert!(trace["inputAssessment"]["gr1"].get("wordPolicy").is_none());

        let (passed, used) = request(true).apply("Hello", answer("Quiet."));
        assert_eq!(passed.text, "Quiet.");
        assert!(!used.intervened());
        let trace = used.trace().unwrap();
        assert!(trace.get("modelOutput").is_none());
        assert_eq!(
            trace["outputAssessments"]["gr1"][0]["invocationMetrics"]["guardrailCoverage"]
                ["textCharacters"]["total"],
            6
        );
    }

    #[test]
    fn the_admin_patch_is_checked_and_null_removes() {
        let mut map = guardrails();
        assert_eq!(map["gr1"].blocked_output_message, GUARDRAIL_BLOCKED_MESSAGE);
        for bad in [
            json!({"GR": {}}),
            json!({"arn:aws:bedrock:us-east-1:123456789012:guardrail/gr1": {}}),
            json!({"gr1": {"blockedWords": [" "]}}),
            json!({"gr1": {"blockedInputMessage": ""}}),
        ] {
            let patch: BTreeMap<String, Option<GuardrailPatch>> =
                serde_json::from_value(bad.clone()).unwrap();
            assert!(patch_guardrails(&mut map, &patch).is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<GuardrailPatch>(json!({"blockWords": []})).is_err());
        let patch = serde_json::from_value(json!({"gr1": {"versions": 5}})).unwrap();
        patch_guardrails(&mut map, &patch).unwrap();
        assert_eq!(map["gr1"].versions, 5);
        assert_eq!(map["gr1"].blocked_input_message, "No.");
        let patch = serde_json::from_value(json!({"gr1": null})).unwrap();
        patch_guardrails(&mut map, &patch).unwrap();
        assert!(map.is_empty());
    }
}
