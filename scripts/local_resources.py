"""Creates on the local stack every DynamoDB table, S3 bucket and SQS queue that
infra/template.yaml declares, with the template's key schemas and TTL settings, and the
EventBridge buses its functions publish to, and prints the `export` lines that name the tables,
buckets and buses (a queue is named only in the environment scripts/template_env.py gives a
function, so `make dev`'s batch-status, without BATCH_WORK_QUEUE_URL, sweeps batches itself).

Local names are derived from the logical ids: `CacheTable` becomes the table `cache-table`,
exported as CACHE_TABLE_NAME; `BatchBucket` becomes `batch-bucket`, exported as
BATCH_BUCKET_NAME. A bus is named as the function receives it (an `AWS::Events::EventBus`'s
`Name`, else its logical id in kebab case; a parameter's default) and exported under the
function's variable (BATCH_EVENT_BUS=default); moto has the `default` bus, any other is created.

On every such bus a rule (`batch-announcements`) copies the toolkit's own events (source
bedrock-toolkit.batch) to the SQS queue `batch-announcements`, exported as
BATCH_ANNOUNCEMENTS_QUEUE_URL, so that a batch's `Batch Ended` announcement can be read back
(`aws sqs receive-message --queue-url $BATCH_ANNOUNCEMENTS_QUEUE_URL`); the integration tests read
it there. Running it twice changes nothing.
"""

import json
import re
import sys

import boto3
from cfnlint.decode import decode


def kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def env_name(logical_id: str, suffix: str) -> str:
    base = logical_id[: -len(suffix)] if logical_id.endswith(suffix) else logical_id
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).upper() + "_" + suffix.upper() + "_NAME"


def create_table(dynamodb, name: str, props: dict) -> None:
    args = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = [
            {k: v for k, v in gsi.items() if k in ("IndexName", "KeySchema", "Projection")}
            for gsi in props["GlobalSecondaryIndexes"]
        ]
    try:
        dynamodb.create_table(**args)
    except dynamodb.exceptions.ResourceInUseException:
        pass
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


# The `source` of the toolkit's events (shared::adapters::eventbridge::EVENT_SOURCE).
EVENT_SOURCE = "bedrock-toolkit.batch"
TAP = "batch-announcements"


def event_buses(template: dict) -> dict[str, str]:
    """The buses the functions publish to: the variable each function receives → the bus name."""
    parameters = template.get("Parameters", {})
    resources = template.get("Resources", {})

    def bus_name(value) -> str | None:
        if not isinstance(value, dict) or "Ref" not in value:
            return None
        ref = value["Ref"]
        if ref in resources and resources[ref].get("Type") == "AWS::Events::EventBus":
            name = resources[ref].get("Properties", {}).get("Name")
            return name if isinstance(name, str) else kebab(ref)
        if ref in parameters and ref.endswith("EventBus"):
            default = parameters[ref].get("Default")
            return default if isinstance(default, str) and default else None
        return None

    buses = {}
    for resource in resources.values():
        if resource.get("Type") not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        variables = (
            resource.get("Properties", {}).get("Environment", {}).get("Variables", {}) or {}
        )
        for variable, value in variables.items():
            name = bus_name(value)
            if name:
                buses[variable] = name
    return buses


def create_bus_and_tap(events, name: str, queue_arn: str) -> None:
    if name != "default":
        try:
            events.create_event_bus(Name=name)
        except events.exceptions.ResourceAlreadyExistsException:
            pass
    events.put_rule(
        Name=TAP,
        EventBusName=name,
        EventPattern=json.dumps({"source": [EVENT_SOURCE]}),
        State="ENABLED",
    )
    events.put_targets(Rule=TAP, EventBusName=name, Targets=[{"Id": TAP, "Arn": queue_arn}])


def main(template_path: str) -> int:
    template, errors = decode(template_path)
    if errors:
        print(f"cannot read {template_path}: {errors}", file=sys.stderr)
        return 1
    dynamodb = boto3.client("dynamodb")
    s3 = boto3.client("s3")
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::DynamoDB::Table":
            name = kebab(logical_id)
            create_table(dynamodb, name, props)
            print(f"export {env_name(logical_id, 'Table')}={name}")
        elif resource["Type"] == "AWS::S3::Bucket":
            name = kebab(logical_id)
            try:
                s3.create_bucket(Bucket=name)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            versioning = props.get("VersioningConfiguration", {}).get("Status")
            if versioning:
                s3.put_bucket_versioning(
                    Bucket=name, VersioningConfiguration={"Status": versioning}
                )
            print(f"export {env_name(logical_id, 'Bucket')}={name}")
        elif resource["Type"] == "AWS::SQS::Queue":
            boto3.client("sqs").create_queue(QueueName=kebab(logical_id))
    buses = event_buses(template)
    if buses:
        events = boto3.client("events")
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName=TAP)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        for name in sorted(set(buses.values())):
            create_bus_and_tap(events, name, queue_arn)
        for variable, name in sorted(buses.items()):
            print(f"export {variable}={name}")
        print(f"export BATCH_ANNOUNCEMENTS_QUEUE_URL={queue_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
