#!/usr/bin/env python3
"""Prints, per function of a SAM template, the environment the template gives it, resolved
for the local stack, as JSON:

    {"InvokeWithCacheFunction": {"CodeUri": ..., "CodeDir": ..., "Handler": "bootstrap",
                                 "Binary": "invoke-with-cache", "bootstrap": ...,
                                 "MemorySize": 256, "Timeout": 900, "env": {...}}, ...}

    scripts/template_env.py [TEMPLATE] [--function ID ...] [--param NAME=VALUE ...]
                            [--set VARIABLE=VALUE ...] [--stack-name NAME] [--account ID]

TEMPLATE is infra/template.yaml (the default) or the one `sam build` writes
(.aws-sam/build/template.yaml, whose CodeUri names the directory holding `bootstrap`).

`env` is the Globals' Environment merged with the function's (the function's wins), with:
- parameters at their defaults (or --param);
- DynamoDB tables, S3 buckets, SQS queues and EventBridge buses at the names
  scripts/local_resources.py gives them on the local stack (`CacheTable` is `cache-table`; a bus
  its Name, if the template gives one), for !Ref, !GetAtt (Arn, and the name attributes) and
  inside !Sub; a value written exactly as one of those resources' name property (BatchBucket's
  BucketName !Sub, used where a !Ref would make a cycle) is that resource's local name too;
- pseudo parameters: AWS::Region from AWS_REGION (AWS_DEFAULT_REGION, else us-east-1, as
  scripts/stack.sh), AWS::AccountId moto's 123456789012 (--account), AWS::StackName "local"
  (--stack-name), AWS::Partition aws, AWS::URLSuffix amazonaws.com.

Anything else (an IAM role's ARN, a conditional) fails, naming the function and the variable,
unless --set gives the variable's value. MemorySize and Timeout are the function's or the Globals'.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

# The local stack's naming rule, not a copy of it.
from local_resources import kebab

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
MOTO_ACCOUNT = "123456789012"


class Unresolved(Exception):
    """A reference the local stack has no value for."""


def local_name_kinds():
    """Resource type -> (name property, Ref, {attribute: value}) on the local stack."""

    def arn(service, path):
        return lambda ctx, name: f"arn:{ctx['partition']}:{service}:{ctx['region']}:{ctx['account']}:{path}{name}"

    def queue_url(ctx, name):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            raise Unresolved("a queue's URL needs the local endpoint: set AWS_ENDPOINT_URL_SQS")
        return f"{endpoint.rstrip('/')}/{ctx['account']}/{name}"

    def plain(_ctx, name):
        return name

    return {
        "AWS::DynamoDB::Table": ("TableName", plain, {"Arn": arn("dynamodb", "table/")}),
        "AWS::S3::Bucket": (
            "BucketName",
            plain,
            {"Arn": lambda ctx, name: f"arn:{ctx['partition']}:s3:::{name}"},
        ),
        "AWS::SQS::Queue": (
            "QueueName",
            queue_url,
            {"Arn": arn("sqs", ""), "QueueName": plain, "QueueUrl": queue_url},
        ),
        "AWS::Events::EventBus": ("Name", plain, {"Arn": arn("events", "event-bus/"), "Name": plain}),
    }


KINDS = local_name_kinds()


class Resolver:
    def __init__(self, template, params, stack_name, account, region):
        self.template = template
        self.resources = template.get("Resources", {}) or {}
        self.parameters = template.get("Parameters", {}) or {}
        self.params = params
        self.ctx = {
            "region": region,
            "account": account,
            "partition": "aws",
            "stack": stack_name,
        }
        # The name property of every local-stack resource, as written, -> its logical id.
        self.name_expressions = []
        for logical_id, resource in self.resources.items():
            kind = KINDS.get(resource.get("Type"))
            if kind:
                written = (resource.get("Properties") or {}).get(kind[0])
                if written is not None:
                    self.name_expressions.append((written, logical_id))

    def pseudo(self, name):
        values = {
            "AWS::Region": self.ctx["region"],
            "AWS::AccountId": self.ctx["account"],
            "AWS::StackName": self.ctx["stack"],
            "AWS::Partition": self.ctx["partition"],
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name not in values:
            raise Unresolved(f"the pseudo parameter {name} has no local value")
        return values[name]

    def parameter(self, name):
        if name in self.params:
            value = self.params[name]
        else:
            declared = self.parameters[name]
            if "Default" not in declared:
                raise Unresolved(f"the parameter {name} has no Default: give it with --param {name}=VALUE")
            value = declared["Default"]
        value = scalar(value)
        if self.parameters[name].get("Type", "").startswith(("CommaDelimitedList", "List<")):
            return value.split(",")
        return value

    def resource(self, logical_id, attribute=None):
        resource = self.resources.get(logical_id)
        if resource is None:
            raise Unresolved(f"the template has no resource or parameter {logical_id}")
        kind = KINDS.get(resource.get("Type"))
        what = f"!GetAtt {logical_id}.{attribute}" if attribute else f"!Ref {logical_id}"
        if kind is None:
            raise Unresolved(
                f"{what} names an {resource.get('Type')}, which the local stack does not have"
            )
        name = kebab(logical_id)
        written = (resource.get("Properties") or {}).get("Name")
        if resource.get("Type") == "AWS::Events::EventBus" and isinstance(written, str):
            # local_resources.py creates a bus under the Name the template gives it.
            name = written
        if attribute is None:
            return kind[1](self.ctx, name)
        if attribute not in kind[2]:
            raise Unresolved(f"{what}: no local value for the attribute {attribute}")
        return kind[2][attribute](self.ctx, name)

    def ref(self, name):
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameter(name)
        return self.resource(name)

    def sub(self, text, variables):
        def one(match):
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return text_of(self.resolve(variables[inner]))
            if "." in inner and not inner.startswith("AWS::"):
                logical_id, attribute = inner.split(".", 1)
                return self.resource(logical_id, attribute)
            return text_of(self.ref(inner))

        return re.sub(r"\$\{([^}]*)\}", one, text)

    def resolve(self, value):
        for written, logical_id in self.name_expressions:
            if value == written and not isinstance(value, (str, int, float, bool)):
                return self.resource(logical_id)
        if isinstance(value, dict):
            if len(value) != 1:
                raise Unresolved(f"{dict(value)!r} is not a value")
            (function, argument), = value.items()
            if function == "Ref":
                return self.ref(argument)
            if function == "Fn::GetAtt":
                logical_id, attribute = (
                    argument.split(".", 1) if isinstance(argument, str) else argument
                )
                return self.resource(logical_id, attribute)
            if function == "Fn::Sub":
                if isinstance(argument, str):
                    return self.sub(argument, {})
                return self.sub(argument[0], argument[1])
            if function == "Fn::Join":
                delimiter, items = argument
                resolved = self.resolve(items)
                return delimiter.join(text_of(self.resolve(i)) for i in resolved)
            raise Unresolved(f"{function} is not resolved here")
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return scalar(value)


def scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text_of(value):
    if isinstance(value, list):
        raise Unresolved("a list where text is needed")
    return value


def functions_of(template, template_dir, resolver, only, overrides):
    globals_ = ((template.get("Globals") or {}).get("Function")) or {}
    out = {}
    problems = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") not in FUNCTION_TYPES or (only and logical_id not in only):
            continue
        props = resource.get("Properties") or {}
        merged = dict(((globals_.get("Environment") or {}).get("Variables")) or {})
        merged.update(((props.get("Environment") or {}).get("Variables")) or {})
        env = {}
        for variable, value in merged.items():
            if variable in overrides:
                env[variable] = overrides[variable]
                continue
            if value == {"Ref": "AWS::NoValue"}:
                continue
            try:
                env[variable] = text_of(resolver.resolve(value))
            except Unresolved as why:
                problems.append(
                    f"{logical_id}: {variable}: {why} (or give the variable with --set {variable}=VALUE)"
                )
        code_uri = props.get("CodeUri", props.get("Code"))
        handler = props.get("Handler", globals_.get("Handler"))
        entry = {
            "CodeUri": code_uri,
            "Handler": handler,
            "Binary": ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary"),
        }
        if isinstance(code_uri, str):
            code_dir = (template_dir / code_uri).resolve()
            entry["CodeDir"] = str(code_dir)
            runtime = props.get("Runtime", globals_.get("Runtime")) or ""
            if runtime.startswith("provided"):
                # A custom runtime starts `bootstrap` at the root of the code, whatever Handler
                # says; only the built template's CodeUri holds one (null otherwise).
                bootstrap = code_dir / "bootstrap"
                entry["bootstrap"] = str(bootstrap) if bootstrap.is_file() else None
        for key in ("MemorySize", "Timeout"):
            raw = props.get(key, globals_.get(key))
            if raw is not None:
                try:
                    entry[key] = int(text_of(resolver.resolve(raw)))
                except (Unresolved, ValueError) as why:
                    problems.append(f"{logical_id}: {key}: {why}")
        entry["env"] = dict(sorted(env.items()))
        out[logical_id] = entry
    for name in only:
        if name not in out:
            problems.append(f"{name}: no function of that logical id in the template")
    return out, problems


def pairs(items, what):
    result = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"template_env.py: {what} wants NAME=VALUE, not {item!r}")
        result[name] = value
    return result


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", nargs="?", default="infra/template.yaml")
    parser.add_argument("--function", action="append", default=[], help="only this logical id")
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE, a parameter")
    parser.add_argument("--set", action="append", default=[], help="VARIABLE=VALUE, given as is")
    parser.add_argument("--stack-name", default="local")
    parser.add_argument("--account", default=MOTO_ACCOUNT)
    args = parser.parse_args(argv)

    template, errors = decode(args.template)
    if errors or template is None:
        print(f"template_env.py: cannot read {args.template}: {errors}", file=sys.stderr)
        return 1
    params = pairs(args.param, "--param")
    unknown = sorted(set(params) - set(template.get("Parameters") or {}))
    if unknown:
        print(f"template_env.py: no parameter {', '.join(unknown)} in {args.template}", file=sys.stderr)
        return 1
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    resolver = Resolver(template, params, args.stack_name, args.account, region)
    functions, problems = functions_of(
        template, Path(args.template).parent, resolver, args.function, pairs(args.set, "--set")
    )
    if problems:
        print(f"template_env.py: {args.template}: cannot resolve", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if not functions:
        print(f"template_env.py: {args.template} has no functions", file=sys.stderr)
        return 1
    json.dump(functions, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
