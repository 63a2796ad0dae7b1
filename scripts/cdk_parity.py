#!/usr/bin/env python3
"""Checks that the CDK construct (infra/cdk) makes the same stack as the SAM template.

    .venv/bin/python scripts/cdk_parity.py [--sam infra/template.yaml]
        [--cdk infra/cdk/cdk.out/BedrockGateway.template.json] [--cdk-root BedrockGateway/Gateway]
        [--param NAME=VALUE ...] [--stack-name NAME] [--self-test]

The SAM template is translated to CloudFormation with samtranslator (no AWS call: a fixed Region
and account, CodeUri replaced by a placeholder S3 object, AWS managed policies named by ARN), its
Conditions evaluated for the parameter values (the defaults, or --param, which the CDK app must
have been given too), and both templates are normalised, then compared:

- resources by CloudFormation type (counts), and by purpose for every type but the REST API's
  deployment and the APIs' stages (named differently by SAM and CDK, one each anyway);
- each function's configuration and environment: the same variable names, the same values;
- each IAM role's permissions (inline policies, AWS::IAM::Policy resources attached to it, AWS
  managed policies), its trust policy, and each managed policy's document;
- each function's Lambda permissions (principal, source ARN, source account);
- the routes of both APIs (method, path, authorisation, target, streaming), the stages' throttling
  and access-log formats;
- the properties of the tables, bucket, queues, log groups, rules, schedules, event source
  mapping, async-invoke configs, topic, subscription, web ACL, alarms and dashboard.

Normalisation (what makes SAM's and CDK's output comparable):
- a resource's purpose is its SAM logical id; a CDK resource's is its construct path under
  --cdk-root less a trailing /Resource or /Default (the construct ids are the SAM logical ids),
  '/' removed (CapacityFunction/EventInvokeConfig -> CapacityFunctionEventInvokeConfig); a
  function's role is <Function>.Role on both sides (SAM's XFunctionRole, CDK's X/ServiceRole);
- every intrinsic is resolved to a string: parameters to their values, pseudo parameters to a
  fixed Region, account, partition, URL suffix and stack name, Fn::Sub, Fn::Join, Fn::Select and
  Fn::Split evaluated; Ref and Fn::GetAtt of a resource become <Purpose> and <Purpose.Attribute>
  (a KMS key's or a function's Arn attribute is <Purpose> too, as its Ref: SAM and CDK pick one or
  the other for a topic's key or a permission's function), except for a bucket with a BucketName,
  whose name and ARN are written out (SAM names the batch bucket by its BucketName in places where
  CDK must too, to avoid a dependency cycle);
- IAM statements are cut into (effect, action, resource, condition) tuples, actions lowercased,
  condition values sorted; Sids and the grouping into statements and policies are ignored. An
  AWS managed policy counts as ('managed', NAME); an inline statement whose actions all belong to
  an AWS managed policy the role also has is dropped (CDK writes X-Ray's two actions inline for
  active tracing besides SAM's AWSXrayWriteOnlyAccess);
- not counted by type, but compared as above: AWS::IAM::Policy (folded into the roles),
  AWS::Lambda::Permission (compared per function), AWS::ApiGatewayV2::Route and ::Integration
  (SAM writes the HTTP API's routes into its OpenAPI body, CDK as resources), AWS::CDK::Metadata;
- ignored: Tags (SAM's lambda:createdBy and httpapi:createdBy), an event rule target's Id, a
  schedule's Name, a function's Code and Role (compared through IAM), empty objects and lists,
  and CloudFormation defaults CDK writes out (a rule's State ENABLED, a managed policy's Path /,
  a method setting's DataTraceEnabled false); a bucket policy's Principal {"AWS": "*"} is "*".

Any difference is listed and the exit status is 1. --self-test runs the comparison's own tests
(a permission, a variable or a resource added to one side only must be reported). Exit status 0
when the stacks match.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import unittest
from collections import Counter
from pathlib import Path

REGION = "us-east-1"
ACCOUNT = "123456789012"
DEFAULT_STACK = "bedrock-inference-toolkit"
NOVALUE = object()

# Not counted by type (see the docstring); each is compared another way.
UNCOUNTED = {
    "AWS::IAM::Policy",
    "AWS::Lambda::Permission",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Integration",
    "AWS::CDK::Metadata",
}
# A reference to one of these by Ref or by its Arn attribute names the same thing where both
# are accepted (a topic's KmsMasterKeyId, a permission's FunctionName).
ARN_IS_REF = {"AWS::KMS::Key", "AWS::Lambda::Function"}
# CloudFormation's defaults, written out by CDK and left out by SAM: dropped before comparing.
IMPLICIT = {
    "AWS::Events::Rule": {"State": "ENABLED"},
    "AWS::IAM::ManagedPolicy": {"Path": "/"},
}
# Counted, but SAM and CDK name them differently: their purposes are not compared.
UNNAMED = {"AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage", "AWS::ApiGatewayV2::Stage"}

# What the AWS managed policies the stack uses allow (all on "*"), for the inline statements
# of the same actions that CDK writes besides them.
MANAGED_ACTIONS = {
    "AWSLambdaBasicExecutionRole": {"logs:createloggroup", "logs:createlogstream", "logs:putlogevents"},
    "AWSXrayWriteOnlyAccess": {
        "xray:puttracesegments", "xray:puttelemetryrecords", "xray:getsamplingrules",
        "xray:getsamplingtargets", "xray:getsamplingstatisticsummaries",
    },
    "AWSLambdaSQSQueueExecutionRole": {
        "sqs:receivemessage", "sqs:deletemessage", "sqs:getqueueattributes",
        "logs:createloggroup", "logs:createlogstream", "logs:putlogevents",
    },
    "AmazonAPIGatewayPushToCloudWatchLogs": {
        "logs:createloggroup", "logs:createlogstream", "logs:describeloggroups",
        "logs:describelogstreams", "logs:putlogevents", "logs:getlogevents", "logs:filterlogevents",
    },
}

# Properties compared resource by resource (all but these keys).
COMPARED_PROPERTIES = {
    "AWS::DynamoDB::Table": set(),
    "AWS::S3::Bucket": set(),
    "AWS::S3::BucketPolicy": {"PolicyDocument"},
    "AWS::SQS::Queue": set(),
    "AWS::Logs::LogGroup": set(),
    "AWS::Events::Rule": set(),
    "AWS::Scheduler::Schedule": {"Name"},
    "AWS::Lambda::EventSourceMapping": set(),
    "AWS::Lambda::EventInvokeConfig": set(),
    "AWS::SNS::Topic": set(),
    "AWS::SNS::Subscription": set(),
    "AWS::WAFv2::WebACL": set(),
    "AWS::WAFv2::WebACLAssociation": set(),
    "AWS::ApiGateway::Account": set(),
    "AWS::KMS::Key": {"KeyPolicy"},
    "AWS::IAM::ManagedPolicy": {"PolicyDocument"},
}
FUNCTION_PROPERTIES = (
    "Runtime", "Handler", "MemorySize", "Timeout", "Architectures", "ReservedConcurrentExecutions",
    "TracingConfig", "LoggingConfig", "DeadLetterConfig", "KmsKeyArn", "Description", "VpcConfig",
)
ALARM_PROPERTIES = (
    "AlarmDescription", "ComparisonOperator", "Threshold", "EvaluationPeriods", "DatapointsToAlarm",
    "TreatMissingData", "AlarmActions", "OKActions", "InsufficientDataActions",
)


# --- SAM to CloudFormation ------------------------------------------------------------------


def load_sam(path: Path) -> dict:
    from cfnlint.decode import decode

    template, errors = decode(str(path))
    if errors or template is None:
        raise SystemExit(f"cdk_parity.py: cannot read {path}: {errors}")
    return json.loads(json.dumps(template))


def parameter_values(sam: dict, overrides: dict) -> dict:
    values = {}
    for name, declared in (sam.get("Parameters") or {}).items():
        if name in overrides:
            value = overrides[name]
        elif "Default" in declared:
            value = declared["Default"]
        else:
            raise SystemExit(f"cdk_parity.py: parameter {name} has no default: give --param {name}=VALUE")
        value = scalar(value)
        if declared.get("Type", "").startswith(("CommaDelimitedList", "List<")):
            value = [] if value == "" else value.split(",")
        values[name] = value
    unknown = set(overrides) - set(values)
    if unknown:
        raise SystemExit(f"cdk_parity.py: no parameter {', '.join(sorted(unknown))} in the SAM template")
    return values


def translate(sam: dict, params: dict, stack_name: str) -> dict:
    """The SAM template as CloudFormation, its conditions applied."""
    import logging

    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    sam = copy.deepcopy(sam)
    for resource in sam["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            code = resource["Properties"].get("CodeUri")
            if isinstance(code, str) and not code.startswith("s3://"):
                resource["Properties"]["CodeUri"] = f"s3://parity/{Path(code).name}.zip"
    raw = {k: (",".join(v) if isinstance(v, list) else v) for k, v in params.items()}
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    cfn = translator.translate(sam, parameter_values=raw, get_managed_policy_map=lambda: {})
    return apply_conditions(cfn, params, stack_name)


def apply_conditions(template: dict, params: dict, stack_name: str) -> dict:
    """Drops the resources whose Condition is false and resolves Fn::If, for these parameters."""
    template = copy.deepcopy(template)
    resolver = Resolver(template, params, stack_name, purposes={})
    conditions = {}

    def condition(name):
        if name not in conditions:
            conditions[name] = evaluate(template["Conditions"][name])
        return conditions[name]

    def evaluate(expression):
        (fn, arg), = expression.items()
        if fn == "Fn::Equals":
            left, right = (resolver.text(a) for a in arg)
            return left == right
        if fn == "Fn::Not":
            return not evaluate(arg[0])
        if fn == "Fn::And":
            return all(evaluate(a) for a in arg)
        if fn == "Fn::Or":
            return any(evaluate(a) for a in arg)
        if fn == "Condition":
            return condition(arg)
        raise ValueError(f"condition {expression!r} is not evaluated here")

    def strip(value):
        if isinstance(value, dict):
            if set(value) == {"Fn::If"}:
                name, yes, no = value["Fn::If"]
                return strip(yes if condition(name) else no)
            if value == {"Ref": "AWS::NoValue"}:
                return NOVALUE
            out = {}
            for key, item in value.items():
                item = strip(item)
                if item is not NOVALUE:
                    out[key] = item
            return out
        if isinstance(value, list):
            return [item for item in (strip(v) for v in value) if item is not NOVALUE]
        return value

    resources = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if "Condition" in resource and not condition(resource["Condition"]):
            continue
        resource = {k: v for k, v in resource.items() if k != "Condition"}
        resources[logical_id] = strip(resource)
    template["Resources"] = resources
    template["Outputs"] = {
        k: strip({kk: vv for kk, vv in v.items() if kk != "Condition"})
        for k, v in (template.get("Outputs") or {}).items()
        if "Condition" not in v or condition(v["Condition"])
    }
    return template


# --- Resolution ------------------------------------------------------------------------------


def scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Resolver:
    """Turns a template's values into plain, comparable values (see the module docstring)."""

    def __init__(self, template: dict, params: dict, stack_name: str, purposes: dict):
        self.resources = template.get("Resources", {})
        self.params = params
        self.purposes = purposes
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
        }

    def purpose(self, logical_id: str) -> str:
        return self.purposes.get(logical_id, logical_id)

    def bucket_name(self, logical_id: str):
        resource = self.resources.get(logical_id) or {}
        if resource.get("Type") == "AWS::S3::Bucket":
            name = (resource.get("Properties") or {}).get("BucketName")
            if name is not None:
                return self.text(name)
        return None

    def ref(self, name: str):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            bucket = self.bucket_name(name)
            return bucket if bucket is not None else f"<{self.purpose(name)}>"
        return f"<{name}>"

    def getatt(self, logical_id: str, attribute: str) -> str:
        bucket = self.bucket_name(logical_id)
        if bucket is not None and attribute == "Arn":
            return f"arn:aws:s3:::{bucket}"
        if attribute == "Arn" and (self.resources.get(logical_id) or {}).get("Type") in ARN_IS_REF:
            # The key (or function) either way: SAM writes Ref, CDK the Arn attribute.
            return f"<{self.purpose(logical_id)}>"
        return f"<{self.purpose(logical_id)}.{attribute}>"

    def text(self, value) -> str:
        value = self.value(value)
        if isinstance(value, list):
            return ",".join(self.text(v) for v in value)
        if isinstance(value, dict):
            return json.dumps(value, sort_keys=True)
        return value

    def sub(self, text: str, variables: dict) -> str:
        def one(match):
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return self.text(variables[inner])
            if "." in inner and inner.split(".", 1)[0] in self.resources:
                logical_id, attribute = inner.split(".", 1)
                return self.getatt(logical_id, attribute)
            return self.text(self.ref(inner))

        return re.sub(r"\$\{([^}]*)\}", one, text)

    def value(self, value):
        if isinstance(value, dict):
            if len(value) == 1:
                (fn, arg), = value.items()
                if fn == "Ref":
                    return self.ref(arg)
                if fn == "Fn::GetAtt":
                    logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                    return self.getatt(logical_id, attribute)
                if fn == "Fn::Sub":
                    if isinstance(arg, str):
                        return self.sub(arg, {})
                    return self.sub(arg[0], arg[1])
                if fn == "Fn::Join":
                    separator, items = arg
                    items = self.value(items)
                    flat = []
                    for item in items if isinstance(items, list) else [items]:
                        item = self.value(item)
                        flat.extend(item if isinstance(item, list) else [item])
                    return separator.join(self.text(i) for i in flat)
                if fn == "Fn::Select":
                    index, items = arg
                    return self.value(self.value(items)[int(self.text(index))])
                if fn == "Fn::Split":
                    separator, text = arg
                    return self.text(text).split(separator)
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, (bool, int, float)):
            return scalar(value)
        return value


# --- The model of one side -------------------------------------------------------------------


class Side:
    def __init__(self, label: str, template: dict, params: dict, stack_name: str, cdk_root: str | None):
        self.label = label
        self.template = template
        self.resources = template.get("Resources", {})
        purposes = {}
        for logical_id, resource in self.resources.items():
            purposes[logical_id] = logical_id
            if cdk_root is not None:
                path = (resource.get("Metadata") or {}).get("aws:cdk:path", "")
                if path.startswith(cdk_root + "/"):
                    path = path[len(cdk_root) + 1:]
                    path = re.sub(r"/(Resource|Default)$", "", path)
                    purposes[logical_id] = path.replace("/", "")
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == "AWS::Lambda::Function":
                role = (resource.get("Properties") or {}).get("Role")
                if isinstance(role, dict) and "Fn::GetAtt" in role:
                    target = role["Fn::GetAtt"]
                    target = target.split(".")[0] if isinstance(target, str) else target[0]
                    purposes[target] = purposes[logical_id] + ".Role"
        self.purposes = purposes
        self.resolver = Resolver(template, params, stack_name, purposes)
        self.by_purpose = {purposes[k]: k for k in self.resources}

    def of_type(self, type_name: str) -> dict:
        """purpose -> resource"""
        return {
            self.purposes[k]: r for k, r in self.resources.items() if r.get("Type") == type_name
        }

    def props(self, resource: dict) -> dict:
        return resource.get("Properties") or {}

    def norm(self, value):
        return prune(self.resolver.value(value))


def prune(value):
    """Drops empty values and Tags; sorts lists of objects, for comparison."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "Tags":
                continue
            item = prune(item)
            if item in ({}, [], None):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        items = [prune(v) for v in value]
        if any(isinstance(i, dict) for i in items):
            items = sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
        return items
    return value


# --- Comparisons -----------------------------------------------------------------------------


def compare(sam: Side, cdk: Side) -> list[str]:
    problems = []
    problems += compare_types(sam, cdk)
    problems += compare_functions(sam, cdk)
    problems += compare_iam(sam, cdk)
    problems += compare_permissions(sam, cdk)
    problems += compare_routes(sam, cdk)
    problems += compare_stages(sam, cdk)
    problems += compare_properties(sam, cdk)
    problems += compare_alarms(sam, cdk)
    problems += compare_dashboard(sam, cdk)
    return problems


def compare_types(sam: Side, cdk: Side) -> list[str]:
    problems = []
    types = {r["Type"] for r in list(sam.resources.values()) + list(cdk.resources.values())}
    for type_name in sorted(types - UNCOUNTED):
        left, right = sam.of_type(type_name), cdk.of_type(type_name)
        if len(left) != len(right):
            problems.append(
                f"{type_name}: {len(left)} in SAM ({', '.join(sorted(left))}), "
                f"{len(right)} in CDK ({', '.join(sorted(right))})"
            )
        elif type_name not in UNNAMED and set(left) != set(right):
            problems.append(
                f"{type_name}: only in SAM {sorted(set(left) - set(right))}, "
                f"only in CDK {sorted(set(right) - set(left))}"
            )
    return problems


def diff_values(where: str, left, right) -> list[str]:
    if left == right:
        return []
    if isinstance(left, dict) and isinstance(right, dict):
        out = []
        for key in sorted(set(left) | set(right)):
            if key not in left:
                out.append(f"{where}.{key}: only in CDK ({json.dumps(right[key], sort_keys=True)[:300]})")
            elif key not in right:
                out.append(f"{where}.{key}: only in SAM ({json.dumps(left[key], sort_keys=True)[:300]})")
            else:
                out += diff_values(f"{where}.{key}", left[key], right[key])
        return out
    return [
        f"{where}: SAM {json.dumps(left, sort_keys=True)[:400]} != CDK {json.dumps(right, sort_keys=True)[:400]}"
    ]


def compare_functions(sam: Side, cdk: Side) -> list[str]:
    problems = []
    left, right = sam.of_type("AWS::Lambda::Function"), cdk.of_type("AWS::Lambda::Function")
    for purpose in sorted(set(left) & set(right)):
        lp, rp = sam.props(left[purpose]), cdk.props(right[purpose])
        lenv = sam.resolver.value(((lp.get("Environment") or {}).get("Variables")) or {})
        renv = cdk.resolver.value(((rp.get("Environment") or {}).get("Variables")) or {})
        for name in sorted(set(lenv) - set(renv)):
            problems.append(f"{purpose}: environment variable {name} only in SAM ({lenv[name]!r})")
        for name in sorted(set(renv) - set(lenv)):
            problems.append(f"{purpose}: environment variable {name} only in CDK ({renv[name]!r})")
        for name in sorted(set(lenv) & set(renv)):
            if lenv[name] != renv[name]:
                problems.append(f"{purpose}: {name} is {lenv[name]!r} in SAM, {renv[name]!r} in CDK")
        for key in FUNCTION_PROPERTIES:
            problems += diff_values(f"{purpose}.{key}", sam.norm(lp.get(key)), cdk.norm(rp.get(key)))
    return problems


def role_permissions(side: Side) -> dict:
    """role purpose -> set of permission tuples; and trust policies."""
    permissions, trust = {}, {}
    attached = {}
    for logical_id, resource in side.resources.items():
        if resource["Type"] == "AWS::IAM::Policy":
            props = side.props(resource)
            for role in props.get("Roles") or []:
                role_id = role.get("Ref") if isinstance(role, dict) else role
                attached.setdefault(role_id, []).append(props.get("PolicyDocument"))
    for logical_id, resource in side.resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        purpose = side.purposes[logical_id]
        props = side.props(resource)
        documents = [p.get("PolicyDocument") for p in props.get("Policies") or []]
        documents += attached.get(logical_id, [])
        managed = {
            side.resolver.text(arn).rsplit("/", 1)[-1] for arn in props.get("ManagedPolicyArns") or []
        }
        tuples = set()
        for document in documents:
            tuples |= statement_tuples(side, document)
        covered = set().union(*(MANAGED_ACTIONS.get(m, set()) for m in managed)) if managed else set()
        tuples = {t for t in tuples if not (t[3] == "*" and t[2] in covered and t[1] == "Allow" and t[4] == "{}")}
        tuples |= {("managed", m, "", "", "") for m in managed}
        permissions[purpose] = tuples
        trust[purpose] = statement_tuples(side, props.get("AssumeRolePolicyDocument"), principals=True)
    for logical_id, resource in side.resources.items():
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            permissions[side.purposes[logical_id]] = statement_tuples(side, side.props(resource).get("PolicyDocument"))
    return permissions, trust


def statement_tuples(side: Side, document, principals: bool = False) -> set:
    out = set()
    document = side.norm(document) if document else {}
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", ["-"])
        resources = [resources] if isinstance(resources, str) else resources
        condition = json.dumps(canonical(statement.get("Condition", {})), sort_keys=True)
        who = [""]
        if principals:
            principal = statement.get("Principal") or {}
            if principal == "*" or principal == {"AWS": "*"}:
                who = ["*"]
            else:
                who = [f"{kind}:{name}" for kind, names in principal.items()
                       for name in ([names] if isinstance(names, str) else names)]
        for action in actions:
            for resource in resources:
                for principal in who:
                    target = f"{principal} -> {resource}" if principals else resource
                    out.add(("statement", statement.get("Effect", "Allow"), action.lower(), target, condition))
    return out


def canonical(value):
    """A condition with one-element lists as scalars and lists sorted."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = sorted(canonical(v) for v in value)
        return items[0] if len(items) == 1 else items
    return value


def compare_iam(sam: Side, cdk: Side) -> list[str]:
    problems = []
    (lperm, ltrust), (rperm, rtrust) = role_permissions(sam), role_permissions(cdk)
    for purpose in sorted(set(lperm) & set(rperm)):
        for t in sorted(lperm[purpose] - rperm[purpose]):
            problems.append(f"{purpose}: permission only in SAM: {describe(t)}")
        for t in sorted(rperm[purpose] - lperm[purpose]):
            problems.append(f"{purpose}: permission only in CDK: {describe(t)}")
    for purpose in sorted(set(ltrust) & set(rtrust)):
        for t in sorted(ltrust[purpose] ^ rtrust[purpose]):
            side = "SAM" if t in ltrust[purpose] else "CDK"
            problems.append(f"{purpose}: trust only in {side}: {describe(t)}")
    return problems


def describe(t) -> str:
    if t[0] == "managed":
        return f"AWS managed policy {t[1]}"
    condition = "" if t[4] == "{}" else f" if {t[4]}"
    return f"{t[1]} {t[2]} on {t[3]}{condition}"


def permissions_by_function(side: Side) -> dict:
    out = {}
    for resource in side.of_type("AWS::Lambda::Permission").values():
        props = side.norm(side.props(resource))
        function = props.get("FunctionName", "")
        out.setdefault(function, set()).add(
            (props.get("Action"), props.get("Principal"), props.get("SourceArn", ""), props.get("SourceAccount", ""))
        )
    return out


def compare_permissions(sam: Side, cdk: Side) -> list[str]:
    problems = []
    left, right = permissions_by_function(sam), permissions_by_function(cdk)
    for function in sorted(set(left) | set(right)):
        for p in sorted(left.get(function, set()) - right.get(function, set())):
            problems.append(f"{function}: Lambda permission only in SAM: {p}")
        for p in sorted(right.get(function, set()) - left.get(function, set())):
            problems.append(f"{function}: Lambda permission only in CDK: {p}")
    return problems


def body_routes(side: Side, api_type: str) -> set:
    routes = set()
    for purpose, resource in side.of_type(api_type).items():
        # Not pruned: an empty security requirement ({"sigv4": []}) is the point.
        body = side.resolver.value(side.props(resource).get("Body") or {})
        schemes = (body.get("components") or {}).get("securitySchemes") or {}
        for path, methods in (body.get("paths") or {}).items():
            for method, operation in methods.items():
                auth = sorted(
                    (schemes.get(name) or {}).get("x-amazon-apigateway-authtype", name)
                    for requirement in operation.get("security") or [] for name in requirement
                )
                integration = operation.get("x-amazon-apigateway-integration") or {}
                routes.add((
                    purpose, method.upper(), path, ",".join(auth) or "NONE",
                    integration_target(integration.get("uri", "")),
                    integration.get("type", ""),
                    integration.get("responseTransferMode", ""),
                    str(integration.get("timeoutInMillis", "")),
                    str(integration.get("payloadFormatVersion", "")),
                ))
    return routes


def integration_target(uri: str) -> str:
    """A Lambda integration's function, from its URI or ARN."""
    match = re.search(r"<([A-Za-z0-9]+)(\.Arn)?>", uri)
    kind = "stream" if uri.endswith("/response-streaming-invocations") else "invoke"
    return f"{match.group(1)}:{kind}" if match else uri


def cdk_http_routes(side: Side) -> set:
    routes = set()
    integrations = {
        side.purposes[k]: side.norm(side.props(r)) for k, r in side.resources.items()
        if r["Type"] == "AWS::ApiGatewayV2::Integration"
    }
    for resource in side.of_type("AWS::ApiGatewayV2::Route").values():
        props = side.norm(side.props(resource))
        method, path = props["RouteKey"].split(" ", 1)
        target = props.get("Target", "")
        integration = integrations.get(target.replace("integrations/<", "").rstrip(">"), {})
        auth = props.get("AuthorizationType", "NONE")
        routes.add((
            props["ApiId"].strip("<>"), method, path, "awsSigv4" if auth == "AWS_IAM" else auth,
            integration_target(integration.get("IntegrationUri", "")).replace(":stream", ":invoke"),
            integration.get("IntegrationType", "").lower(), "", "",
            str(integration.get("PayloadFormatVersion", "")),
        ))
    return routes


def compare_routes(sam: Side, cdk: Side) -> list[str]:
    problems = []
    left = body_routes(sam, "AWS::ApiGateway::RestApi")
    right = body_routes(cdk, "AWS::ApiGateway::RestApi")
    # SAM's HttpApi body names the function's ARN in an invocations URI; CDK's integration its ARN.
    left |= {(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in body_routes(sam, "AWS::ApiGatewayV2::Api")}
    right |= body_routes(cdk, "AWS::ApiGatewayV2::Api") | cdk_http_routes(cdk)
    for route in sorted(left - right):
        problems.append(f"route only in SAM: {route}")
    for route in sorted(right - left):
        problems.append(f"route only in CDK: {route}")
    for purpose in set(sam.of_type("AWS::ApiGateway::RestApi")) & set(cdk.of_type("AWS::ApiGateway::RestApi")):
        lp = sam.norm(sam.props(sam.of_type("AWS::ApiGateway::RestApi")[purpose]))
        rp = cdk.norm(cdk.props(cdk.of_type("AWS::ApiGateway::RestApi")[purpose]))
        for key in ("Name", "Description", "EndpointConfiguration"):
            problems += diff_values(f"{purpose}.{key}", lp.get(key), rp.get(key))
    return problems


def squash(text):
    return re.sub(r"\s+", "", text) if isinstance(text, str) else text


def compare_stages(sam: Side, cdk: Side) -> list[str]:
    problems = []
    for type_name, keys in (
        ("AWS::ApiGateway::Stage", ("StageName", "TracingEnabled", "MethodSettings", "AccessLogSetting")),
        ("AWS::ApiGatewayV2::Stage", ("StageName", "AutoDeploy", "DefaultRouteSettings", "AccessLogSettings")),
    ):
        left = {sam.norm(sam.props(r)).get("StageName"): sam.norm(sam.props(r)) for r in sam.of_type(type_name).values()}
        right = {cdk.norm(cdk.props(r)).get("StageName"): cdk.norm(cdk.props(r)) for r in cdk.of_type(type_name).values()}
        for stage in sorted(set(left) & set(right)):
            for key in keys:
                lv, rv = left[stage].get(key), right[stage].get(key)
                if key == "MethodSettings":
                    # DataTraceEnabled false is API Gateway's default, which CDK writes out.
                    lv, rv = ([{k: v for k, v in m.items() if (k, v) != ("DataTraceEnabled", "false")}
                               for m in settings or []] for settings in (lv, rv))
                if isinstance(lv, dict) and "Format" in lv:
                    lv = {**lv, "Format": squash(lv["Format"])}
                if isinstance(rv, dict) and "Format" in rv:
                    rv = {**rv, "Format": squash(rv["Format"])}
                problems += diff_values(f"{type_name} {stage}.{key}", lv, rv)
    return problems


def compare_properties(sam: Side, cdk: Side) -> list[str]:
    problems = []
    for type_name, ignored in COMPARED_PROPERTIES.items():
        left, right = sam.of_type(type_name), cdk.of_type(type_name)
        for purpose in sorted(set(left) & set(right)):
            implicit = IMPLICIT.get(type_name, {})
            lp, rp = ({
                k: v for k, v in side.norm(side.props(resources[purpose])).items()
                if k not in ignored and implicit.get(k, object()) != v
            } for side, resources in ((sam, left), (cdk, right)))
            if "PolicyDocument" in ignored:
                lt = statement_tuples(sam, sam.props(left[purpose]).get("PolicyDocument"), principals=True)
                rt = statement_tuples(cdk, cdk.props(right[purpose]).get("PolicyDocument"), principals=True)
                for t in sorted(lt ^ rt):
                    problems.append(f"{type_name} {purpose}: statement only in {'SAM' if t in lt else 'CDK'}: {describe(t)}")
            if type_name == "AWS::Events::Rule":
                for props in (lp, rp):
                    for target in props.get("Targets", []):
                        target.pop("Id", None)
            problems += diff_values(f"{type_name} {purpose}", lp, rp)
            for attribute in ("DeletionPolicy", "UpdateReplacePolicy"):
                lv = left[purpose].get(attribute, "Delete")
                rv = right[purpose].get(attribute, "Delete")
                if lv != rv:
                    problems.append(f"{type_name} {purpose}.{attribute}: SAM {lv} != CDK {rv}")
    return problems


def alarm_metrics(props: dict) -> list:
    if "Metrics" not in props:
        return [(props.get("Namespace"), props.get("MetricName"), props.get("Statistic"),
                 str(props.get("Period")), json.dumps(props.get("Dimensions", []), sort_keys=True))]
    out = []
    for metric in props["Metrics"]:
        if "Expression" in metric:
            out.append(("expression", metric["Expression"], str(metric.get("ReturnData", "true")).lower()))
        else:
            stat = metric["MetricStat"]
            out.append((stat["Metric"].get("Namespace"), stat["Metric"].get("MetricName"), stat.get("Stat"),
                        str(stat.get("Period")), json.dumps(stat["Metric"].get("Dimensions", []), sort_keys=True)))
    return sorted(out)


def compare_alarms(sam: Side, cdk: Side) -> list[str]:
    problems = []
    left, right = sam.of_type("AWS::CloudWatch::Alarm"), cdk.of_type("AWS::CloudWatch::Alarm")
    for purpose in sorted(set(left) & set(right)):
        lp, rp = sam.norm(sam.props(left[purpose])), cdk.norm(cdk.props(right[purpose]))
        for key in ALARM_PROPERTIES:
            problems += diff_values(f"{purpose}.{key}", lp.get(key), rp.get(key))
        problems += diff_values(f"{purpose}.metrics", alarm_metrics(lp), alarm_metrics(rp))
    return problems


def compare_dashboard(sam: Side, cdk: Side) -> list[str]:
    problems = []
    left, right = sam.of_type("AWS::CloudWatch::Dashboard"), cdk.of_type("AWS::CloudWatch::Dashboard")
    for purpose in sorted(set(left) & set(right)):
        lp, rp = sam.norm(sam.props(left[purpose])), cdk.norm(cdk.props(right[purpose]))
        problems += diff_values(f"{purpose}.DashboardName", lp.get("DashboardName"), rp.get("DashboardName"))
        try:
            lb, rb = json.loads(lp.get("DashboardBody", "{}")), json.loads(rp.get("DashboardBody", "{}"))
        except json.JSONDecodeError as why:
            problems.append(f"{purpose}.DashboardBody is not JSON: {why}")
            continue
        problems += diff_values(f"{purpose}.DashboardBody", lb, rb)
    return problems


def unacknowledged(report: Path) -> list[str]:
    """The violations (errors and warnings) a cdk synth validation report lists."""
    data = json.loads(report.read_text())
    out = []
    for plugin in data.get("pluginReports", []):
        for violation in plugin.get("violations", []):
            for construct in violation.get("violatingConstructs", []):
                out.append(f"{plugin.get('pluginName')}: {violation.get('ruleName')} "
                           f"({violation.get('severity')}) at {construct.get('constructPath')}")
        if plugin.get("conclusion") != "success" and not plugin.get("violations"):
            out.append(f"{plugin.get('pluginName')}: {plugin.get('conclusion')}")
    return out


# The construct's props are the template's parameters in lowerCamelCase, but for these.
RENAMED_PARAMETERS = {"KmsKeyArn": "kmsKey", "ApiGatewayLogsRoleArn": "apiGatewayLogsRole"}


def compare_parameters(sam_source: dict, props_ts: Path) -> list[str]:
    """Every SAM parameter has its prop in the construct's props (lib/props.ts)."""
    declared = set(re.findall(r"^\s*readonly (\w+)\?:", props_ts.read_text(), re.MULTILINE))
    problems = []
    for name in sam_source.get("Parameters") or {}:
        prop = RENAMED_PARAMETERS.get(name, name[0].lower() + name[1:])
        if prop not in declared:
            problems.append(f"parameter {name}: no prop {prop} in {props_ts}")
    return problems


# --- Entry point -----------------------------------------------------------------------------


def pairs(items):
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"cdk_parity.py: --param wants NAME=VALUE, not {item!r}")
        out[name] = value
    return out


def sides(args):
    sam_source = load_sam(Path(args.sam))
    params = parameter_values(sam_source, pairs(args.param))
    sam_cfn = translate(sam_source, params, args.stack_name)
    cdk_cfn = json.loads(Path(args.cdk).read_text())
    return sam_cfn, cdk_cfn, params


def build(sam_cfn, cdk_cfn, params, args):
    sam = Side("SAM", sam_cfn, params, args.stack_name, None)
    cdk = Side("CDK", cdk_cfn, {}, args.stack_name, args.cdk_root)
    return sam, cdk


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam", default="infra/template.yaml")
    parser.add_argument("--cdk", default="infra/cdk/cdk.out/BedrockGateway.template.json")
    parser.add_argument("--cdk-root", default="BedrockGateway/Gateway",
                        help="construct path of the BedrockGateway in the CDK template")
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE, a SAM parameter")
    parser.add_argument("--params-file", help="a JSON object of SAM parameter values (as --param)")
    parser.add_argument("--stack-name", default=DEFAULT_STACK)
    parser.add_argument("--props", default="infra/cdk/lib/props.ts", help="the construct's props")
    parser.add_argument("--self-test", action="store_true", help="run the comparison's own tests")
    parser.add_argument("--validation-report", help="cdk synth's validation-report.json: any violation fails")
    args = parser.parse_args(argv)
    if args.params_file:
        values = json.loads(Path(args.params_file).read_text())
        args.param = [f"{k}={v}" for k, v in values.items()] + args.param

    if args.self_test:
        SelfTest.args = args
        result = unittest.TextTestRunner(verbosity=1).run(unittest.defaultTestLoader.loadTestsFromTestCase(SelfTest))
        return 0 if result.wasSuccessful() else 1

    if args.validation_report:
        violations = unacknowledged(Path(args.validation_report))
        if violations:
            print(f"cdk_parity.py: {args.validation_report}: findings without a reason:", file=sys.stderr)
            for violation in violations:
                print(f"  {violation}", file=sys.stderr)
            return 1

    sam_cfn, cdk_cfn, params = sides(args)
    sam, cdk = build(sam_cfn, cdk_cfn, params, args)
    problems = compare_parameters(load_sam(Path(args.sam)), Path(args.props)) + compare(sam, cdk)
    label = f"parameters of {args.params_file}" if args.params_file else (", ".join(args.param) or "the SAM defaults")
    if problems:
        print(f"cdk_parity.py: {args.cdk} differs from {args.sam} ({label}):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    counted = Counter(r["Type"] for r in cdk_cfn["Resources"].values() if r["Type"] not in UNCOUNTED)
    print(f"cdk_parity.py: {args.cdk} matches {args.sam} ({label}): "
          f"{sum(counted.values())} resources of {len(counted)} types, "
          f"{len(sam.of_type('AWS::Lambda::Function'))} functions, their variables, roles and permissions")
    return 0


class SelfTest(unittest.TestCase):
    """A difference put into one side must be reported."""

    args = None
    cached = None

    @classmethod
    def setUpClass(cls):
        if SelfTest.cached is None:
            SelfTest.cached = sides(cls.args)

    def problems(self, mutate_sam=None, mutate_cdk=None):
        sam_cfn, cdk_cfn, params = (copy.deepcopy(x) for x in SelfTest.cached)
        if mutate_sam:
            mutate_sam(sam_cfn)
        if mutate_cdk:
            mutate_cdk(cdk_cfn)
        return compare(*build(sam_cfn, cdk_cfn, params, self.args))

    def cdk_resource(self, template, purpose):
        side = Side("CDK", template, {}, self.args.stack_name, self.args.cdk_root)
        return template["Resources"][side.by_purpose[purpose]]

    def assertReported(self, problems, *words):
        self.assertTrue(
            any(all(w in p for w in words) for p in problems),
            f"no difference mentions {words}: {problems}",
        )

    def test_as_it_is(self):
        self.assertEqual(self.problems(), [])

    def test_sam_against_itself(self):
        sam_cfn, _, params = SelfTest.cached
        side = Side("SAM", sam_cfn, params, self.args.stack_name, None)
        self.assertEqual(compare(side, side), [])

    def test_an_action_added_to_a_cdk_role(self):
        def mutate(t):
            policy = self.cdk_resource(t, "InvokeWithCacheFunctionServiceRoleDefaultPolicy")
            policy["Properties"]["PolicyDocument"]["Statement"].append(
                {"Effect": "Allow", "Action": "dynamodb:DeleteTable", "Resource": "*"})
        self.assertReported(self.problems(mutate_cdk=mutate), "InvokeWithCacheFunction.Role", "only in CDK",
                            "dynamodb:deletetable")

    def test_an_action_added_to_a_sam_role(self):
        def mutate(t):
            role = t["Resources"]["CapacityFunctionRole"]
            role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"].append("dynamodb:Scan")
        self.assertReported(self.problems(mutate_sam=mutate), "CapacityFunction.Role", "only in SAM", "dynamodb:scan")

    def test_a_resource_widened(self):
        def mutate(t):
            policy = self.cdk_resource(t, "BatchSubmitFunctionServiceRoleDefaultPolicy")
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if statement.get("Sid") == "ReadUploads":
                    statement["Resource"] = {"Fn::Join": ["", [{"Fn::GetAtt": [
                        self.cdk_id(t, "BatchBucket"), "Arn"]}, "/*"]]}
        self.assertReported(self.problems(mutate_cdk=mutate), "BatchSubmitFunction.Role", "s3:getobject", "/*")

    def cdk_id(self, template, purpose):
        side = Side("CDK", template, {}, self.args.stack_name, self.args.cdk_root)
        return side.by_purpose[purpose]

    def test_a_condition_dropped(self):
        def mutate(t):
            role = t["Resources"]["CapacityFunctionRole"]
            for policy in role["Properties"]["Policies"]:
                for statement in policy["PolicyDocument"]["Statement"]:
                    if statement.get("Sid") == "DeleteOwnCapacity":
                        del statement["Condition"]
        self.assertReported(self.problems(mutate_sam=mutate), "deleteprovisionedmodelthroughput")

    def test_a_variable_added(self):
        def mutate(t):
            fn = self.cdk_resource(t, "BatchStatusFunction")
            fn["Properties"]["Environment"]["Variables"]["EXTRA_SETTING"] = "1"
        self.assertReported(self.problems(mutate_cdk=mutate), "BatchStatusFunction", "EXTRA_SETTING", "only in CDK")

    def test_a_variable_added_to_sam(self):
        def mutate(t):
            t["Resources"]["CapacityFunction"]["Properties"]["Environment"]["Variables"]["NEW_ONE"] = "x"
        self.assertReported(self.problems(mutate_sam=mutate), "CapacityFunction", "NEW_ONE", "only in SAM")

    def test_a_value_changed(self):
        def mutate(t):
            fn = self.cdk_resource(t, "InvokeWithCacheFunction")
            fn["Properties"]["Environment"]["Variables"]["CACHE_TTL_SECONDS"] = "60"
        self.assertReported(self.problems(mutate_cdk=mutate), "CACHE_TTL_SECONDS", "'3600'", "'60'")

    def test_a_reference_changed(self):
        def mutate(t):
            fn = self.cdk_resource(t, "MetricsPublisherFunction")
            fn["Properties"]["Environment"]["Variables"]["BATCH_TABLE_NAME"] = {"Ref": self.cdk_id(t, "CacheTable")}
        self.assertReported(self.problems(mutate_cdk=mutate), "BATCH_TABLE_NAME", "<BatchTable>", "<CacheTable>")

    def test_a_resource_removed(self):
        def mutate(t):
            del t["Resources"][self.cdk_id(t, "RoutingTable")]
        self.assertReported(self.problems(mutate_cdk=mutate), "AWS::DynamoDB::Table", "RoutingTable")

    def test_a_route_added(self):
        def mutate(t):
            paths = t["Resources"]["RestApi"]["Properties"]["Body"]["paths"]
            paths["/v1/extra"] = copy.deepcopy(paths["/v1/invoke"])
        self.assertReported(self.problems(mutate_sam=mutate), "route only in SAM", "/v1/extra")

    def test_a_parameter_without_its_prop(self):
        sam_source = load_sam(Path(self.args.sam))
        self.assertEqual(compare_parameters(sam_source, Path(self.args.props)), [])
        sam_source["Parameters"]["BrandNewSetting"] = {"Type": "String", "Default": ""}
        self.assertReported(compare_parameters(sam_source, Path(self.args.props)), "BrandNewSetting", "brandNewSetting")

    def test_a_permission_widened(self):
        def mutate(t):
            permission = t["Resources"]["InvokeWithCacheInvokePermission"]
            permission["Properties"]["SourceArn"] = {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestApi}/*"}
        self.assertReported(self.problems(mutate_sam=mutate), "Lambda permission only in SAM")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
