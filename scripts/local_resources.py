"""Creates on the local stack every DynamoDB table and S3 bucket that infra/template.yaml
declares, with the template's key schemas and TTL settings, and prints the `export` lines that
name them.

Local names are derived from the logical ids: `CacheTable` becomes the table `cache-table`,
exported as CACHE_TABLE_NAME; `BatchBucket` becomes `batch-bucket`, exported as
BATCH_BUCKET_NAME. Running it twice changes nothing.
"""

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
            print(f"export {env_name(logical_id, 'Bucket')}={name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
