//! The SAM template refuses at deploy time what the function would refuse at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use domain::routing::Schedule;

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// The `AllowedPattern` of a parameter, as written in the template (a double-quoted scalar).
fn allowed_pattern(parameter: &str) -> String {
    let block = TEMPLATE
        .split(&format!("\n  {parameter}:\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no parameter {parameter} in the template"));
    let line = block
        .lines()
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| l.trim().strip_prefix("AllowedPattern: "))
        .unwrap_or_else(|| panic!("{parameter} has no AllowedPattern"));
    line.trim_matches('"').to_owned()
}

#[test]
fn the_schedule_parameter_accepts_exactly_what_the_function_accepts() {
    let pattern = regex_lite::Regex::new(&allowed_pattern("ProvisionedSchedule")).unwrap();
    let cases = [
        "09:00-17:00",
        "22:00-06:00",
        "00:00-00:00",
        "Mon-Fri 09:00-18:00",
        "Sat,Sun 10:00-14:00",
        "Mon-Wed,Fri 08:00-12:30",
        "Fri-Mon 00:00-23:59",
        "9-5",
        "09:00",
        "9:00-17:00",
        "24:00-01:00",
        "25:00-26:00",
        "09:60-10:00",
        "mon-fri 09:00-17:00",
        "Monday 09:00-17:00",
        "Mon-Fri  09:00-17:00",
        "Mon- 09:00-17:00",
        "Mon,,Fri 09:00-17:00",
        ",Mon 09:00-17:00",
        "09:00-17:00 Mon-Fri",
        " 09:00-17:00",
        "Mon-Fri 09:00-17:00 ",
        "",
    ];
    let mut accepted = 0;
    for case in cases {
        let code = case.parse::<Schedule>().is_ok();
        assert_eq!(
            pattern.is_match(case),
            code,
            "{case:?}: the function says {code}"
        );
        accepted += usize::from(code);
    }
    assert_eq!(accepted, 7, "the cases cover both answers");
}

/// The text under `path` (a key at each level, e.g. `["Resources", "RestApi", "Properties"]`),
/// read by indentation: the template is in block style.
fn block(text: &str, path: &[&str]) -> String {
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let mut lines: Vec<&str> = text.lines().collect();
    for key in path {
        let (at, indent) = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .find_map(|(i, l)| {
                let trimmed = l.trim_start();
                [format!("{key}:"), format!("\"{key}\":")]
                    .iter()
                    .filter_map(|k| trimmed.strip_prefix(k.as_str()))
                    .find(|rest| rest.is_empty() || rest.starts_with(' '))
                    .map(|_| (i, indent_of(l)))
            })
            .unwrap_or_else(|| panic!("no {key:?} on the path {path:?}"));
        lines = lines[at + 1..]
            .iter()
            .copied()
            .take_while(|l| l.trim().is_empty() || indent_of(l) > indent)
            .collect();
    }
    lines.join("\n")
}

/// The value written after `key:` on the first line of `text` that has it.
fn scalar(text: &str, key: &str) -> Option<String> {
    let wanted = format!("{key}:");
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(&wanted)
            .map(|v| v.trim().trim_matches('"').to_owned())
    })
}

/// The keys at the top level of `text`.
fn keys_of(text: &str) -> Vec<String> {
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let lines = || text.lines().filter(|l| !l.trim().is_empty());
    let indent = lines().map(indent_of).min().unwrap_or(0);
    lines()
        .filter(|l| indent_of(l) == indent && !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            l.trim()
                .split_once(':')
                .map(|(k, _)| k.trim_matches('"').to_owned())
        })
        .collect()
}

fn has_key(text: &str, key: &str) -> bool {
    keys_of(text).iter().any(|k| k == key)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

const STREAMING_URI: &str = "uri: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/${InvokeWithCacheFunction.Arn}/response-streaming-invocations";

/// The client API's routes: path, method, whether API Gateway requires IAM (SigV4).
const ROUTES: [(&str, &str, bool); 12] = [
    ("/v1/invoke", "post", true),
    ("/v1/deferred", "post", true),
    ("/v1/deferred/{id}", "get", true),
    ("/openai/v1/files", "post", false),
    ("/openai/v1/files/{file_id}", "get", false),
    ("/openai/v1/files/{file_id}/content", "get", false),
    ("/openai/v1/batches", "post", false),
    ("/openai/v1/batches", "get", false),
    ("/openai/v1/batches/{batch_id}", "get", false),
    ("/openai/v1/batches/{batch_id}/cancel", "post", false),
    ("/openai/v1/chat/completions", "post", false),
    ("/openai/v1/models", "get", false),
];

fn definition() -> String {
    block(
        TEMPLATE,
        &["Resources", "RestApi", "Properties", "DefinitionBody"],
    )
}

#[test]
fn the_client_api_is_a_regional_rest_api_whose_routes_stream_from_the_function() {
    let api = block(TEMPLATE, &["Resources", "RestApi"]);
    assert_eq!(
        scalar(&api, "Type").as_deref(),
        Some("AWS::Serverless::Api")
    );
    // An edge-optimized endpoint drops a stream idle for 30 s, a Regional one after 5 minutes.
    let endpoint = block(&api, &["Properties", "EndpointConfiguration"]);
    assert_eq!(scalar(&endpoint, "Type").as_deref(), Some("REGIONAL"));

    let paths = block(&definition(), &["paths"]);
    assert_eq!(
        sorted(keys_of(&paths)),
        {
            let mut paths = sorted(ROUTES.iter().map(|(p, _, _)| (*p).to_owned()).collect());
            paths.dedup();
            paths
        },
        "the client API's paths"
    );
    for (path, method, _) in ROUTES {
        let integration = block(&paths, &[path, method, "x-amazon-apigateway-integration"]);
        let value = |key| scalar(&integration, key);
        assert_eq!(value("type").as_deref(), Some("aws_proxy"), "{path}");
        assert_eq!(value("httpMethod").as_deref(), Some("POST"), "{path}");
        assert_eq!(
            value("responseTransferMode").as_deref(),
            Some("STREAM"),
            "{method} {path} must stream"
        );
        assert_eq!(
            value("timeoutInMillis").as_deref(),
            Some("900000"),
            "{path}"
        );
        assert!(
            integration.lines().any(|l| l.trim() == STREAMING_URI),
            "{method} {path} must call the function's InvokeWithResponseStream:\n{integration}"
        );
    }
}

#[test]
fn iam_guards_v1_invoke_and_leaves_the_openai_routes_to_the_bearer_keys() {
    let definition = definition();
    assert!(
        !has_key(&definition, "security"),
        "no API-wide security: it would put IAM on the OpenAI routes"
    );
    let scheme = block(&definition, &["components", "securitySchemes", "sigv4"]);
    assert_eq!(
        scalar(&scheme, "x-amazon-apigateway-authtype").as_deref(),
        Some("awsSigv4")
    );
    let paths = block(&definition, &["paths"]);
    for (path, method, iam) in ROUTES {
        let operation = block(&paths, &[path, method]);
        let security = if has_key(&operation, "security") {
            block(&operation, &["security"])
        } else {
            String::new()
        };
        let lines: Vec<&str> = security
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if iam {
            assert_eq!(lines, ["- sigv4: []"], "{method} {path} requires IAM");
        } else {
            assert!(
                lines.is_empty(),
                "{method} {path} takes no API Gateway authorizer"
            );
        }
    }
    assert!(
        !has_key(
            &block(TEMPLATE, &["Resources", "RestApi", "Properties"]),
            "Auth"
        ),
        "SAM's Auth would put its default authorizer on every path"
    );
}

/// Every resource, by logical id, with its text.
fn resources() -> Vec<(String, String)> {
    let all = block(TEMPLATE, &["Resources"]);
    keys_of(&all)
        .into_iter()
        .map(|name| {
            let body = block(&all, &[&name]);
            (name, body)
        })
        .collect()
}

#[test]
fn api_gateway_may_invoke_the_function_through_those_routes_only() {
    let prefix =
        "!Sub arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestApi}/*/";
    let mut scoped = Vec::new();
    for (name, body) in resources() {
        if scalar(&body, "Type").as_deref() != Some("AWS::Lambda::Permission")
            || scalar(&body, "FunctionName").as_deref() != Some("!Ref InvokeWithCacheFunction")
        {
            continue;
        }
        assert_eq!(
            scalar(&body, "Action").as_deref(),
            Some("lambda:InvokeFunction")
        );
        assert_eq!(
            scalar(&body, "Principal").as_deref(),
            Some("apigateway.amazonaws.com")
        );
        let arn = scalar(&body, "SourceArn").unwrap_or_else(|| panic!("{name}: no SourceArn"));
        let route = arn
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{name}: {arn} is not a route of RestApi"));
        scoped.push(route.to_owned());
    }
    assert_eq!(
        sorted(scoped),
        sorted(
            ROUTES
                .iter()
                // A path parameter is any one segment in the permission's ARN.
                .map(|(p, m, _)| {
                    let any_segment = p
                        .replace("{id}", "*")
                        .replace("{file_id}", "*")
                        .replace("{batch_id}", "*");
                    format!("{}{any_segment}", m.to_uppercase())
                })
                .collect()
        )
    );
}

/// Each policy statement in `policies` (those with a `Sid`): its Sid and its text.
fn statements(policies: &str) -> Vec<(String, String)> {
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = policies.lines().collect();
    (0..lines.len())
        .filter_map(|start| {
            let sid = lines[start].trim_start().strip_prefix("- Sid:")?;
            let indent = indent_of(lines[start]);
            let statement = lines[start + 1..]
                .iter()
                .copied()
                .take_while(|l| l.trim().is_empty() || indent_of(l) > indent)
                .collect::<Vec<_>>()
                .join("\n");
            Some((sid.trim().to_owned(), statement))
        })
        .collect()
}

/// The actions a statement allows.
fn actions_of(statement: &str) -> BTreeSet<String> {
    match scalar(statement, "Action").as_deref() {
        Some("") | None => block(statement, &["Action"])
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- "))
            .map(str::to_owned)
            .collect(),
        Some(list) if list.starts_with('[') => list
            .trim_matches(['[', ']'])
            .split(',')
            .map(|a| a.trim().to_owned())
            .collect(),
        Some(one) => BTreeSet::from([one.to_owned()]),
    }
}

/// The actions of every policy statement in `policies` whose Resource names `table`.
fn actions_on(policies: &str, table: &str) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for (_, statement) in statements(policies) {
        let resource = format!(
            "{} {}",
            scalar(&statement, "Resource").unwrap_or_default(),
            if has_key(&statement, "Resource") {
                block(&statement, &["Resource"])
            } else {
                String::new()
            }
        );
        if !resource.contains(table) {
            continue;
        }
        actions.extend(actions_of(&statement));
    }
    actions
}

#[test]
fn the_capacity_role_tags_only_capacity_that_is_this_stacks_or_no_stacks() {
    let policies = block(
        TEMPLATE,
        &["Resources", "CapacityFunction", "Properties", "Policies"],
    );
    let tagging: Vec<(String, String)> = statements(&policies)
        .into_iter()
        .filter(|(_, statement)| actions_of(statement).contains("bedrock:TagResource"))
        .collect();
    assert!(!tagging.is_empty(), "adoption needs bedrock:TagResource");
    for (sid, statement) in &tagging {
        let conditions = block(statement, &["Condition"]);
        let request_tag = scalar(&conditions, "aws:RequestTag/bgw:plan");
        assert_eq!(request_tag.as_deref(), Some("!Ref AWS::StackName"), "{sid}");
        let own = scalar(&conditions, "aws:ResourceTag/bgw:plan");
        let unclaimed = has_key(&conditions, "Null")
            && scalar(&block(&conditions, &["Null"]), "aws:ResourceTag/bgw:plan").as_deref()
                == Some("true");
        assert!(
            own.as_deref() == Some("!Ref AWS::StackName") || unclaimed,
            "{sid} lets the capacity role tag another stack's capacity as this stack's:\n{statement}"
        );
    }
}

#[test]
fn with_a_kms_key_the_batch_functions_and_bedrocks_batch_role_use_it_through_s3_dynamodb_and_sqs_only(
) {
    let policy = block(TEMPLATE, &["Resources", "BatchKmsPolicy"]);
    assert_eq!(scalar(&policy, "Condition").as_deref(), Some("HasKmsKey"));
    let roles = block(&policy, &["Properties", "Roles"]);
    for role in [
        "BatchSubmitFunctionRole",
        "BatchStatusFunctionRole",
        "BatchServiceRole",
    ] {
        assert!(roles.contains(&format!("- !Ref {role}")), "{role}: {roles}");
    }
    let statements = statements(&block(&policy, &["Properties", "PolicyDocument"]));
    let (_, statement) = statements.first().expect("a statement");
    assert_eq!(
        actions_of(statement),
        BTreeSet::from(["kms:Decrypt".to_owned(), "kms:GenerateDataKey*".to_owned()])
    );
    assert_eq!(
        scalar(statement, "Resource").as_deref(),
        Some("!Ref KmsKeyArn")
    );
    let via = block(statement, &["Condition", "StringEquals", "kms:ViaService"]);
    assert!(via.contains("s3.${AWS::Region}.amazonaws.com"), "{via}");
    assert!(
        via.contains("dynamodb.${AWS::Region}.amazonaws.com"),
        "{via}"
    );
    // The work queue is encrypted with the key too.
    assert!(via.contains("sqs.${AWS::Region}.amazonaws.com"), "{via}");
    assert_eq!(
        via.lines().filter(|l| l.trim().starts_with("- ")).count(),
        3,
        "{via}"
    );
}

#[test]
fn the_batch_functions_create_jobs_and_answer_only_on_the_models_v1_invoke_allows() {
    for function in ["BatchSubmitFunction", "BatchStatusFunction"] {
        let policies = block(TEMPLATE, &["Resources", function, "Properties", "Policies"]);
        let mut on_models = 0;
        for (sid, statement) in statements(&policies) {
            let actions = actions_of(&statement);
            if !actions.contains("bedrock:CreateModelInvocationJob")
                && !actions.contains("bedrock:InvokeModel")
            {
                continue;
            }
            on_models += 1;
            // Any model at all only when the call comes through a tier model's profile.
            let any_model = statement.contains("foundation-model/*")
                || statement.contains("inference-profile/*");
            assert!(
                !any_model || statement.contains("bedrock:InferenceProfileArn"),
                "{function} {sid} allows models /v1/invoke does not:\n{statement}"
            );
        }
        assert!(
            on_models >= 3,
            "{function}: {on_models} statements on models"
        );
        assert!(
            policies.contains("- HasAllowedModelArns")
                && policies.contains("Resource: !Ref AllowedModelArns"),
            "{function}: AllowedModels' ARNs are granted only with AllowedModelArns"
        );
    }
}

#[test]
fn the_function_may_apply_only_the_guardrail_it_is_given_and_only_when_given_one() {
    let policies = block(
        TEMPLATE,
        &[
            "Resources",
            "InvokeWithCacheFunction",
            "Properties",
            "Policies",
        ],
    );
    let (_, statement) = statements(&policies)
        .into_iter()
        .find(|(sid, _)| sid == "ApplyGuardrail")
        .expect("an ApplyGuardrail statement");
    assert_eq!(
        actions_of(&statement),
        BTreeSet::from(["bedrock:ApplyGuardrail".to_owned()])
    );
    assert!(
        statement.contains(":guardrail/${GuardrailId}"),
        "{statement}"
    );
    assert!(
        policies.contains("- HasGuardrail"),
        "granted only with a guardrail"
    );
    let variables = block(
        TEMPLATE,
        &[
            "Resources",
            "InvokeWithCacheFunction",
            "Properties",
            "Environment",
            "Variables",
        ],
    );
    assert_eq!(
        scalar(&variables, "GUARDRAIL_ID").as_deref(),
        Some("!Ref GuardrailId")
    );
}

#[test]
fn small_batches_are_handed_to_batch_status_which_alone_calls_the_models_on_demand() {
    let policies =
        |function: &str| block(TEMPLATE, &["Resources", function, "Properties", "Policies"]);
    let allows = |function: &str, action: &str| {
        statements(&policies(function))
            .iter()
            .any(|(_, statement)| actions_of(statement).contains(action))
    };
    assert!(!allows("BatchSubmitFunction", "bedrock:InvokeModel"));
    assert!(allows("BatchStatusFunction", "bedrock:InvokeModel"));
    assert!(
        actions_on(&policies("BatchSubmitFunction"), "BatchWorkQueue").contains("sqs:SendMessage")
    );
    let variables = block(
        TEMPLATE,
        &[
            "Resources",
            "BatchSubmitFunction",
            "Properties",
            "Environment",
            "Variables",
        ],
    );
    assert_eq!(
        scalar(&variables, "BATCH_WORK_QUEUE_URL").as_deref(),
        Some("!Ref BatchWorkQueue")
    );
    // Its answers, a record an object, only under batch-direct/.
    let answers = actions_on(&policies("BatchStatusFunction"), "/batch-direct/*");
    assert_eq!(
        answers,
        BTreeSet::from(["s3:GetObject".to_owned(), "s3:PutObject".to_owned()])
    );
}

#[test]
fn the_example_upload_policy_lets_a_writer_write_only_under_its_own_tenants_prefix() {
    let policy = block(TEMPLATE, &["Resources", "BatchUploadWriterPolicy"]);
    let statements = statements(&block(&policy, &["Properties", "PolicyDocument"]));
    let (sid, upload) = statements.first().expect("a statement");
    assert_eq!(sid, "UploadUnderOwnTenantPrefix");
    assert_eq!(
        actions_of(upload),
        BTreeSet::from(["s3:PutObject".to_owned()])
    );
    // `${!…}` is how !Sub leaves an IAM policy variable for IAM to resolve.
    let resource = scalar(upload, "Resource").unwrap_or_default();
    assert!(
        resource.ends_with("/batch-input/tenant/${!aws:PrincipalTag/bgw-tenant}/*"),
        "{resource}"
    );
    // A role without the tag gets nothing (not batch-input/tenant//*).
    assert_eq!(
        scalar(upload, "aws:PrincipalTag/bgw-tenant").as_deref(),
        Some("?*")
    );
    assert!(
        !statements.iter().any(|(_, s)| actions_of(s)
            .iter()
            .any(|a| a.starts_with("s3:") && a != "s3:PutObject")),
        "{statements:?}"
    );
    let outputs = block(TEMPLATE, &["Outputs", "BatchUploadWriterPolicyArn"]);
    assert!(
        outputs.contains("!Ref BatchUploadWriterPolicy"),
        "{outputs}"
    );
}

/// The throttling limits (rate, burst) of the REST API's method setting for `path` and `method`.
fn method_throttle(path: &str, method: &str) -> (String, String) {
    let settings = block(
        TEMPLATE,
        &["Resources", "RestApi", "Properties", "MethodSettings"],
    );
    // API Gateway's form: every slash of the path as ~1, after a slash of its own.
    let encoded = format!("/{}", path.replace('/', "~1"));
    let setting = settings
        .split("- ResourcePath:")
        .find(|s| {
            s.lines().next().map(str::trim) == Some(encoded.as_str())
                && scalar(s, "HttpMethod").as_deref() == Some(method)
        })
        .unwrap_or_else(|| panic!("no method setting for {method} {path}: {settings}"));
    (
        scalar(setting, "ThrottlingRateLimit").unwrap_or_default(),
        scalar(setting, "ThrottlingBurstLimit").unwrap_or_default(),
    )
}

#[test]
fn the_iam_route_keeps_throttling_limits_of_its_own_apart_from_the_keyed_routes() {
    assert_eq!(
        method_throttle("/v1/invoke", "POST"),
        (
            "!Ref InvokeRateLimit".into(),
            "!Ref InvokeBurstLimit".into()
        )
    );
    for (path, method) in [
        ("/openai/v1/chat/completions", "POST"),
        ("/openai/v1/models", "GET"),
    ] {
        assert_eq!(
            method_throttle(path, method),
            (
                "!Ref TenantRoutesRateLimit".into(),
                "!Ref TenantRoutesBurstLimit".into()
            ),
            "{method} {path}"
        );
    }
    // Every client route has its bucket: a route without one would share the account's.
    for (path, method, _) in ROUTES {
        method_throttle(path, &method.to_uppercase());
    }
    let http_api = block(
        TEMPLATE,
        &["Resources", "Api", "Properties", "DefaultRouteSettings"],
    );
    assert_eq!(
        scalar(&http_api, "ThrottlingRateLimit").as_deref(),
        Some("!Ref BatchApiRateLimit")
    );
    assert_eq!(
        scalar(&http_api, "ThrottlingBurstLimit").as_deref(),
        Some("!Ref BatchApiBurstLimit")
    );
}

#[test]
fn a_waf_rate_rule_on_the_keyed_routes_is_a_parameter_off_by_default() {
    let parameter = block(TEMPLATE, &["Parameters", "WafRateLimitPer5Minutes"]);
    assert_eq!(scalar(&parameter, "Default").as_deref(), Some("0"));
    let description = scalar(&parameter, "Description").unwrap_or_default();
    assert!(
        description.contains("USD a month"),
        "its cost: {description}"
    );
    for resource in ["ClientApiWebAcl", "ClientApiWebAclAssociation"] {
        let body = block(TEMPLATE, &["Resources", resource]);
        assert_eq!(
            scalar(&body, "Condition").as_deref(),
            Some("HasWafRateRule"),
            "{resource}"
        );
    }
    let rule = block(
        TEMPLATE,
        &["Resources", "ClientApiWebAcl", "Properties", "Rules"],
    );
    assert_eq!(
        scalar(&rule, "Limit").as_deref(),
        Some("!Ref WafRateLimitPer5Minutes")
    );
    assert_eq!(
        scalar(&rule, "SearchString").as_deref(),
        Some("/openai/v1/")
    );
    assert!(rule.contains("Block: {}"), "{rule}");
    let conditions = block(TEMPLATE, &["Conditions"]);
    assert!(
        conditions.contains("HasWafRateRule: !Not [!Equals [!Ref WafRateLimitPer5Minutes, 0]]"),
        "{conditions}"
    );
}

#[test]
fn the_function_may_read_keys_and_count_spend_and_nothing_more() {
    let function = block(
        TEMPLATE,
        &["Resources", "InvokeWithCacheFunction", "Properties"],
    );
    let policies = block(&function, &["Policies"]);
    let set = |actions: &[&str]| {
        actions
            .iter()
            .map(|a| (*a).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        actions_on(&policies, "TenantKeysTable"),
        set(&["dynamodb:GetItem"])
    );
    assert_eq!(
        actions_on(&policies, "SpendTable"),
        set(&["dynamodb:GetItem", "dynamodb:UpdateItem"])
    );
    // Nothing else reaches the tables: no DynamoDB wildcard here, no other resource names them.
    assert!(
        !policies.contains("dynamodb:*") && !policies.contains(":table/*"),
        "a wildcard DynamoDB grant would widen these"
    );
    // The batch functions: batch-submit reads the keys (a tenant's budget) and reserves,
    // batch-status settles; nothing else names the tables.
    for (name, body) in resources() {
        let expected: &[(&str, &[&str])] = match name.as_str() {
            "InvokeWithCacheFunction" => continue,
            "BatchSubmitFunction" => &[
                ("TenantKeysTable", &["dynamodb:Scan"]),
                ("SpendTable", &["dynamodb:GetItem", "dynamodb:UpdateItem"]),
            ],
            "BatchStatusFunction" => {
                &[("SpendTable", &["dynamodb:GetItem", "dynamodb:UpdateItem"])]
            }
            _ => &[],
        };
        for table in ["TenantKeysTable", "SpendTable"] {
            let granted = expected
                .iter()
                .find(|(t, _)| *t == table)
                .map_or(BTreeSet::new(), |(_, actions)| set(actions));
            if granted.is_empty() {
                assert!(
                    !body.contains(&format!("{table}.Arn")),
                    "{name} grants something on {table}"
                );
            } else {
                let policies = block(&body, &["Properties", "Policies"]);
                assert_eq!(actions_on(&policies, table), granted, "{name} on {table}");
            }
        }
    }
    let env = block(&function, &["Environment", "Variables"]);
    for (variable, value) in [
        ("TENANT_KEYS_TABLE_NAME", "!Ref TenantKeysTable"),
        ("SPEND_TABLE_NAME", "!Ref SpendTable"),
        ("TENANT_KEY_CACHE_SECONDS", "!Ref TenantKeyCacheSeconds"),
        ("SPEND_CACHE_SECONDS", "!Ref SpendCacheSeconds"),
    ] {
        assert_eq!(scalar(&env, variable).as_deref(), Some(value), "{variable}");
    }
}

#[test]
fn the_tenant_tables_have_the_key_schemas_the_code_and_the_local_stack_use() {
    for (table, key) in [("TenantKeysTable", "keyId"), ("SpendTable", "tenantMonth")] {
        let properties = block(TEMPLATE, &["Resources", table, "Properties"]);
        let trimmed = |text: String| {
            text.lines()
                .map(|l| l.trim().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            trimmed(block(&properties, &["AttributeDefinitions"])),
            [
                format!("- AttributeName: {key}"),
                "AttributeType: S".to_owned()
            ],
            "{table}"
        );
        assert_eq!(
            trimmed(block(&properties, &["KeySchema"])),
            [
                format!("- AttributeName: {key}"),
                "KeyType: HASH".to_owned()
            ],
            "{table}"
        );
        assert_eq!(
            scalar(&properties, "BillingMode").as_deref(),
            Some("PAY_PER_REQUEST")
        );
    }
    let ttl = block(
        TEMPLATE,
        &[
            "Resources",
            "SpendTable",
            "Properties",
            "TimeToLiveSpecification",
        ],
    );
    assert_eq!(scalar(&ttl, "AttributeName").as_deref(), Some("expiresAt"));
    assert_eq!(scalar(&ttl, "Enabled").as_deref(), Some("true"));
}

#[test]
fn buffered_answers_end_before_the_gateway_gives_up_and_streams_before_the_function_does() {
    let number = |text: &str, key: &str| -> u64 {
        scalar(text, key)
            .unwrap_or_else(|| panic!("no {key}"))
            .parse()
            .unwrap()
    };
    let operation = number(
        &block(TEMPLATE, &["Parameters", "BedrockOperationTimeoutMs"]),
        "Default",
    );
    let function_ms = 1000
        * number(
            &block(
                TEMPLATE,
                &["Resources", "InvokeWithCacheFunction", "Properties"],
            ),
            "Timeout",
        );
    let integration = 900_000;
    // A buffered answer sends nothing until it is complete: it must end within the Regional
    // endpoint's 5-minute idle timeout, hence within the integration timeout too.
    assert!(
        operation > 0 && operation < 300_000,
        "BedrockOperationTimeoutMs {operation}"
    );
    assert!(operation < integration);
    assert!(
        function_ms >= integration,
        "the function ({function_ms} ms) would end a stream the API still carries"
    );
}

/// The `AWS::Serverless::Function` resources, by logical id, with their text.
fn functions() -> Vec<(String, String)> {
    let functions: Vec<_> = resources()
        .into_iter()
        .filter(|(_, body)| scalar(body, "Type").as_deref() == Some("AWS::Serverless::Function"))
        .collect();
    assert!(
        functions.len() >= 5,
        "the template's functions: {functions:?}"
    );
    functions
}

fn globals() -> String {
    block(TEMPLATE, &["Globals", "Function"])
}

#[test]
fn the_architecture_is_a_parameter_defaulting_to_arm64_that_every_function_takes() {
    let parameter = block(TEMPLATE, &["Parameters", "Architecture"]);
    assert_eq!(scalar(&parameter, "Type").as_deref(), Some("String"));
    assert_eq!(scalar(&parameter, "Default").as_deref(), Some("arm64"));
    assert_eq!(
        scalar(&parameter, "AllowedValues").as_deref(),
        Some("[arm64, x86_64]")
    );
    assert_eq!(
        scalar(&globals(), "Architectures").as_deref(),
        Some("[!Ref Architecture]")
    );
    for (name, body) in functions() {
        assert!(
            !has_key(&block(&body, &["Properties"]), "Architectures"),
            "{name} sets its own Architectures: the Architecture parameter would not reach it"
        );
    }
}

#[test]
fn every_function_is_traced_actively() {
    let global = has_key(&globals(), "Tracing")
        .then(|| scalar(&globals(), "Tracing"))
        .flatten();
    for (name, body) in functions() {
        let properties = block(&body, &["Properties"]);
        let tracing = if has_key(&properties, "Tracing") {
            scalar(&properties, "Tracing")
        } else {
            global.clone()
        };
        assert_eq!(tracing.as_deref(), Some("Active"), "{name}");
        // SAM adds AWSXrayWriteOnlyAccess (segments to X-Ray) to the role it generates only.
        assert!(
            !has_key(&properties, "Role"),
            "{name} has a role of its own: it must be let write to X-Ray"
        );
    }
}

#[test]
fn every_function_builds_from_its_own_package_into_its_own_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (name, body) in functions() {
        let metadata = block(&body, &["Metadata"]);
        assert_eq!(
            scalar(&metadata, "BuildMethod").as_deref(),
            Some("rust-cargolambda"),
            "{name}"
        );
        let binary = scalar(&block(&metadata, &["BuildProperties"]), "Binary")
            .unwrap_or_else(|| panic!("{name}: no BuildProperties Binary"));
        // From the workspace root, cargo would unify every member's features into the function
        // (tools/tenant-keys' SSO among them); from its package directory, only its own.
        let code_uri = scalar(&block(&body, &["Properties"]), "CodeUri")
            .unwrap_or_else(|| panic!("{name}: no CodeUri"));
        assert_eq!(code_uri, format!("../functions/{binary}"), "{name}");
        let manifest =
            std::fs::read_to_string(root.join("functions").join(&binary).join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("{name}: {code_uri}/Cargo.toml: {e}"));
        assert!(
            manifest.contains(&format!("[[bin]]\nname = \"{binary}\"\n")),
            "{name}: {code_uri} has no bin {binary}"
        );
    }
}

#[test]
fn batches_are_given_the_models_v1_invoke_allows() {
    let environment = |function: &str| {
        block(
            TEMPLATE,
            &[
                "Resources",
                function,
                "Properties",
                "Environment",
                "Variables",
            ],
        )
    };
    let (invoke, submit) = (
        environment("InvokeWithCacheFunction"),
        environment("BatchSubmitFunction"),
    );
    for variable in [
        "MODEL_SIMPLE",
        "MODEL_MODERATE",
        "MODEL_COMPLEX",
        "ALLOWED_MODELS",
    ] {
        let value = scalar(&invoke, variable);
        assert!(
            value.is_some(),
            "{variable} is not given to invoke-with-cache"
        );
        assert_eq!(scalar(&submit, variable), value, "{variable}");
    }
}

#[test]
fn no_function_is_given_the_local_caller_of_make_dev() {
    assert!(
        !TEMPLATE.contains("LOCAL_CALLER_ARN"),
        "LOCAL_CALLER_ARN is for make dev only: behind API Gateway a request always has an identity"
    );
}
