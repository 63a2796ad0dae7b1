//! The checks of the Provisioned Throughput operations, with the constraints of botocore's
//! `bedrock` service model (2023-04-20).

use serde::Deserialize;

use crate::checks::Violations;
use crate::error::BedrockError;

/// `ProvisionedModelName` (also the name part of `ProvisionedModelId`).
pub const NAME_PATTERN: &str = r"([0-9a-zA-Z][_-]?)+";
/// `ProvisionedModelId`: a name (or id) or a Provisioned Throughput ARN.
pub const IDENTIFIER_PATTERN: &str = r"((([0-9a-zA-Z][_-]?)+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:provisioned-model/[a-z0-9]{12}))";
/// `ModelIdentifier`.
pub const MODEL_ID_PATTERN: &str = r"arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:(([0-9]{12}:custom-model/((imported)|([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}))(([:][a-z0-9-]{1,63}){0,2})?/[a-z0-9]{12})|(:foundation-model/([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}([.]?[a-z0-9-]{1,63})([:][a-z0-9-]{1,63}){0,2})))|(([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}([.]?[a-z0-9-]{1,63})([:][a-z0-9-]{1,63}){0,2}))|(([0-9a-zA-Z][_-]?)+)";
/// `ModelArn` (`modelArnEquals`).
pub const MODEL_ARN_PATTERN: &str = r"arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:(([0-9]{12}:custom-model/((imported)|([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}))(([:][a-z0-9-]{1,63}){0,2})?/[a-z0-9]{12})|(:foundation-model/[a-z0-9-]{1,63}[.]{1}([a-z0-9-]{1,63}[.]){0,2}[a-z0-9-]{1,63}([:][a-z0-9-]{1,63}){0,2}))";
/// `IdempotencyToken`.
pub const TOKEN_PATTERN: &str = r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?";
/// `TagKey` and `TagValue`.
pub const TAG_PATTERN: &str = r"[a-zA-Z0-9\s._:/=+@-]*";
/// `TaggableResourcesArn`'s length bounds (its pattern is checked by what it names).
const RESOURCE_ARN_LENGTH: (usize, usize) = (20, 1011);
/// Tags one resource may carry (`TooManyTagsException` beyond), and a request may hold.
pub const MAX_TAGS_PER_RESOURCE: usize = 50;
const MAX_TAGS_PER_REQUEST: usize = 200;

/// `CommitmentDuration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commitment {
    OneMonth,
    SixMonths,
}

impl Commitment {
    pub fn as_str(self) -> &'static str {
        match self {
            Commitment::OneMonth => "OneMonth",
            Commitment::SixMonths => "SixMonths",
        }
    }

    pub fn months(self) -> u32 {
        match self {
            Commitment::OneMonth => 1,
            Commitment::SixMonths => 6,
        }
    }
}

/// A `Tag`, members optional so that a missing one is reported as Bedrock reports it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TagIn {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// A checked tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// The body of `CreateProvisionedModelThroughput`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    pub client_request_token: Option<String>,
    pub model_units: Option<i64>,
    pub provisioned_model_name: Option<String>,
    pub model_id: Option<String>,
    pub commitment_duration: Option<String>,
    pub tags: Option<Vec<TagIn>>,
}

/// A create request that satisfies the model's constraints.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub client_request_token: Option<String>,
    pub model_units: u32,
    pub name: String,
    pub model_id: String,
    pub commitment: Option<Commitment>,
    pub tags: Vec<Tag>,
}

/// The body of `UpdateProvisionedModelThroughput`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRequest {
    pub desired_provisioned_model_name: Option<String>,
    pub desired_model_id: Option<String>,
}

/// The bodies of `TagResource`, `UntagResource` and `ListTagsForResource`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagsRequest {
    #[serde(rename = "resourceARN")]
    pub resource_arn: Option<String>,
    pub tags: Option<Vec<TagIn>>,
    pub tag_keys: Option<Vec<String>>,
}

/// A list of tags: at most 200, each key 1–128 and value 0–256 of the tag pattern.
fn check_tags(v: &mut Violations, tags: &[TagIn], path: &str) -> Vec<Tag> {
    if tags.len() > MAX_TAGS_PER_REQUEST {
        v.push(format!(
            "Value at '{path}' failed to satisfy constraint: Member must have length less than or equal to {MAX_TAGS_PER_REQUEST}"
        ));
    }
    let mut checked = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let at = format!("{path}.{}.member", i + 1);
        match &tag.key {
            Some(key) => v.string(key, &format!("{at}.key"), (1, 128), TAG_PATTERN),
            None => v.required(&format!("{at}.key")),
        }
        match &tag.value {
            Some(value) => v.string(value, &format!("{at}.value"), (0, 256), TAG_PATTERN),
            None => v.required(&format!("{at}.value")),
        }
        if let (Some(key), Some(value)) = (&tag.key, &tag.value) {
            checked.push(Tag {
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    checked
}

/// A request body as JSON; an empty body is an empty object, as the SDKs may send it.
pub fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &[u8]) -> Result<T, BedrockError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| BedrockError::validation(format!("Malformed request body: {e}")))
}

/// Checks a create request against the model's constraints (all of them reported together).
pub fn check_create(request: CreateRequest) -> Result<Accepted, BedrockError> {
    let mut v = Violations::default();
    if let Some(token) = &request.client_request_token {
        v.string(token, "clientRequestToken", (1, 256), TOKEN_PATTERN);
    }
    match request.model_units {
        Some(units) if units < 1 => v.add(
            Some(&units.to_string()),
            "modelUnits",
            "have value greater than or equal to 1",
        ),
        Some(units) if u32::try_from(units).is_err() => v.add(
            Some(&units.to_string()),
            "modelUnits",
            format!("have value less than or equal to {}", i32::MAX),
        ),
        Some(_) => {}
        None => v.required("modelUnits"),
    }
    match &request.provisioned_model_name {
        Some(name) => v.string(name, "provisionedModelName", (1, 63), NAME_PATTERN),
        None => v.required("provisionedModelName"),
    }
    match &request.model_id {
        Some(id) => v.string(id, "modelId", (1, 2048), MODEL_ID_PATTERN),
        None => v.required("modelId"),
    }
    let commitment = match request.commitment_duration.as_deref() {
        None => None,
        Some("OneMonth") => Some(Commitment::OneMonth),
        Some("SixMonths") => Some(Commitment::SixMonths),
        Some(other) => {
            v.add(
                Some(other),
                "commitmentDuration",
                "satisfy enum value set: [OneMonth, SixMonths]",
            );
            None
        }
    };
    let tags = check_tags(&mut v, request.tags.as_deref().unwrap_or_default(), "tags");
    v.into_result()?;
    Ok(Accepted {
        client_request_token: request.client_request_token,
        model_units: request
            .model_units
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or(1),
        name: request.provisioned_model_name.unwrap_or_default(),
        model_id: request.model_id.unwrap_or_default(),
        commitment,
        tags,
    })
}

/// Checks the `provisionedModelId` of Get, Update and Delete.
pub fn check_identifier(identifier: &str) -> Result<(), BedrockError> {
    identifier_violations(identifier).into_result()
}

/// The violations of a `provisionedModelId`.
fn identifier_violations(identifier: &str) -> Violations {
    let mut v = Violations::default();
    v.string(
        identifier,
        "provisionedModelId",
        (1, 2048),
        IDENTIFIER_PATTERN,
    );
    v
}

/// Checks an update request's members.
pub fn check_update(identifier: &str, request: &UpdateRequest) -> Result<(), BedrockError> {
    let mut v = identifier_violations(identifier);
    if let Some(name) = &request.desired_provisioned_model_name {
        v.string(name, "desiredProvisionedModelName", (1, 63), NAME_PATTERN);
    }
    if let Some(id) = &request.desired_model_id {
        v.string(id, "desiredModelId", (1, 2048), MODEL_ID_PATTERN);
    }
    v.into_result()
}

/// Checks a tagging request: the resource ARN and, as the operation needs them, the tags or
/// the tag keys.
pub fn check_tags_request(
    request: &TagsRequest,
    tags_required: bool,
    keys_required: bool,
) -> Result<(String, Vec<Tag>, Vec<String>), BedrockError> {
    let mut v = Violations::default();
    match &request.resource_arn {
        Some(arn) => {
            let length = arn.chars().count();
            let (min, max) = RESOURCE_ARN_LENGTH;
            if length < min {
                v.add(
                    Some(arn),
                    "resourceARN",
                    format!("have length greater than or equal to {min}"),
                );
            }
            if length > max {
                v.add(
                    Some(arn),
                    "resourceARN",
                    format!("have length less than or equal to {max}"),
                );
            }
        }
        None => v.required("resourceARN"),
    }
    let tags = match &request.tags {
        Some(tags) => check_tags(&mut v, tags, "tags"),
        None if tags_required => {
            v.required("tags");
            Vec::new()
        }
        None => Vec::new(),
    };
    let keys = match &request.tag_keys {
        Some(keys) => {
            if keys.len() > MAX_TAGS_PER_REQUEST {
                v.push(format!(
                    "Value at 'tagKeys' failed to satisfy constraint: Member must have length less than or equal to {MAX_TAGS_PER_REQUEST}"
                ));
            }
            for (i, key) in keys.iter().enumerate() {
                v.string(
                    key,
                    &format!("tagKeys.{}.member", i + 1),
                    (1, 128),
                    TAG_PATTERN,
                );
            }
            keys.clone()
        }
        None if keys_required => {
            v.required("tagKeys");
            Vec::new()
        }
        None => Vec::new(),
    };
    v.into_result()?;
    Ok((request.resource_arn.clone().unwrap_or_default(), tags, keys))
}
