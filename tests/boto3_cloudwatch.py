"""The emulator's CloudWatch through boto3, by endpoint alone (AWS_ENDPOINT_URL_CLOUDWATCH from
the stack's environment). botocore picks the `json` protocol (awsJson1_0) for CloudWatch:
put_metric_data, get_metric_data and list_metrics, typed errors for CloudWatch's limits, and a
large request that botocore gzips. Run by scripts/integration.sh against the stack."""

import datetime
import os
import sys
import urllib.request

import boto3
from botocore.config import Config

NAMESPACE = "Test/Boto3"
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"boto3 CloudWatch: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def reset_emulator():
    request = urllib.request.Request(os.environ["EMULATOR_URL"] + "/_emulator/reset", method="POST")
    urllib.request.urlopen(request).close()


def refused(call, exception, message=None):
    global checks
    try:
        call()
    except exception as error:
        if message is not None and error.response["Error"]["Message"] != message:
            check(False, f"{exception.__name__}: expected {message!r}, got {error.response['Error']['Message']!r}")
        checks += 1
        return
    check(False, f"expected {exception.__name__}")


reset_emulator()
client = boto3.client("cloudwatch")
check(client.meta.service_model.resolved_protocol == "json", "botocore speaks awsJson1_0 to CloudWatch")
check(client.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL_CLOUDWATCH"], "the endpoint comes from the environment")

sent = []


def record_encoding(request, **_):
    encoding = request.headers.get("Content-Encoding")
    sent.append(encoding.decode() if isinstance(encoding, bytes) else encoding)


client.meta.events.register("before-send.cloudwatch.PutMetricData", record_encoding)

t0 = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) - datetime.timedelta(minutes=20)
dims = [{"Name": "ModelId", "Value": "haiku"}, {"Name": "Route", "Value": "on-demand"}]
client.put_metric_data(
    Namespace=NAMESPACE,
    MetricData=[
        {"MetricName": "Latency", "Dimensions": dims, "Timestamp": t0, "Value": 10, "Unit": "Milliseconds"},
        {"MetricName": "Latency", "Dimensions": dims[::-1], "Timestamp": t0 + datetime.timedelta(seconds=30),
         "Values": [20, 40], "Counts": [2, 1], "Unit": "Milliseconds"},
        {"MetricName": "Latency", "Dimensions": dims, "Timestamp": t0 + datetime.timedelta(minutes=5),
         "StatisticValues": {"SampleCount": 4, "Sum": 100, "Minimum": 10, "Maximum": 40}, "Unit": "Milliseconds"},
        {"MetricName": "Requests", "Dimensions": dims[:1], "Timestamp": t0, "Value": 1, "Unit": "Count"},
    ],
)
check(sent == [None], "a small request goes uncompressed")

metric = {"Namespace": NAMESPACE, "MetricName": "Latency", "Dimensions": dims}
answer = client.get_metric_data(
    MetricDataQueries=[
        {"Id": "total", "MetricStat": {"Metric": metric, "Period": 300, "Stat": "Sum"}},
        {"Id": "mean", "MetricStat": {"Metric": metric, "Period": 300, "Stat": "Average"}},
        {"Id": "samples", "MetricStat": {"Metric": metric, "Period": 300, "Stat": "SampleCount"}, "ReturnData": False},
        {"Id": "per_sample", "Expression": "total / samples", "Label": "per sample"},
    ],
    StartTime=t0,
    EndTime=t0 + datetime.timedelta(minutes=10),
)
results = {r["Id"]: r for r in answer["MetricDataResults"]}
check(sorted(results) == ["mean", "per_sample", "total"], f"ReturnData false hides a query: {sorted(results)}")
check(results["total"]["Timestamps"] == [t0 + datetime.timedelta(minutes=5), t0], "newest period first")
check(results["total"]["Values"] == [100.0, 90.0], f"sums per period: {results['total']['Values']}")
check(results["mean"]["Values"] == [25.0, 22.5], f"averages per period: {results['mean']['Values']}")
check(results["per_sample"]["Values"] == [25.0, 22.5], "arithmetic expression")
check(results["per_sample"]["Label"] == "per sample" and results["total"]["Label"] == "Latency", "labels")
check(all(r["StatusCode"] == "Complete" for r in results.values()), "StatusCode Complete")

listed = client.list_metrics(Namespace=NAMESPACE, Dimensions=[{"Name": "Route"}])["Metrics"]
check([m["MetricName"] for m in listed] == ["Latency"], f"ListMetrics by dimension name: {listed}")
listed = client.list_metrics(Namespace=NAMESPACE, MetricName="Requests")["Metrics"]
check(listed == [{"Namespace": NAMESPACE, "MetricName": "Requests", "Dimensions": dims[:1]}], f"ListMetrics by name: {listed}")

# Above 10 KiB botocore gzips the body (the model's requestcompression trait).
big = [{"MetricName": "Tokens", "Dimensions": [{"Name": "Shard", "Value": f"s{i}"}], "Values": [float(v) for v in range(50)]}
       for i in range(100)]
client.put_metric_data(Namespace=NAMESPACE, MetricData=big)
check(sent[-1] == "gzip", f"a large request is gzipped: {sent}")
pages = list(client.get_paginator("list_metrics").paginate(Namespace=NAMESPACE, MetricName="Tokens"))
check(sum(len(p["Metrics"]) for p in pages) == 100, "the gzipped datums were stored")

exceptions = client.exceptions
refused(lambda: client.put_metric_data(Namespace="AWS/Bedrock", MetricData=[{"MetricName": "X", "Value": 1}]),
        exceptions.InvalidParameterValueException, "The value AWS/Bedrock for parameter Namespace is invalid.")
refused(lambda: client.put_metric_data(Namespace=NAMESPACE, MetricData=[{"MetricName": "X", "Value": float("nan")}]),
        exceptions.InvalidParameterValueException, "The value NaN for parameter MetricData.member.1.Value is invalid.")
refused(lambda: client.put_metric_data(Namespace=NAMESPACE, MetricData=[{"MetricName": "X", "Value": 1}] * 1001),
        exceptions.InvalidParameterValueException, "The collection MetricData must not have a size greater than 1000.")
refused(lambda: client.put_metric_data(Namespace=NAMESPACE, MetricData=[
    {"MetricName": "X", "Dimensions": [{"Name": f"D{i}", "Value": "v"} for i in range(31)], "Value": 1}]),
        exceptions.InvalidParameterValueException,
        "The collection MetricData.member.1.Dimensions must not have a size greater than 30.")
refused(lambda: client.put_metric_data(Namespace=NAMESPACE, MetricData=[
    {"MetricName": "X", "Values": [1.0, 2.0], "Counts": [1.0]}]), exceptions.InvalidParameterValueException)
refused(lambda: client.put_metric_data(Namespace=NAMESPACE, MetricData=[
    {"MetricName": "X", "Value": 1, "StatisticValues": {"SampleCount": 1, "Sum": 1, "Minimum": 1, "Maximum": 1}}]),
        exceptions.InvalidParameterCombinationException)
# botocore checks required members itself; without its validation the service's check answers.
unchecked = boto3.client("cloudwatch", config=Config(parameter_validation=False))
refused(lambda: unchecked.put_metric_data(Namespace=NAMESPACE, MetricData=[
    {"MetricName": "X", "StatisticValues": {"SampleCount": 1, "Sum": 1, "Maximum": 1}}]),
        unchecked.exceptions.MissingRequiredParameterException,
        "The parameter MetricData.member.1.StatisticValues.Minimum is required.")
refused(lambda: client.get_metric_data(
    MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}}],
    StartTime=t0, EndTime=t0 + datetime.timedelta(minutes=1), NextToken="never-issued"),
        exceptions.InvalidNextToken)

reset_emulator()
check(client.list_metrics()["Metrics"] == [], "reset forgets every metric")
print(f"boto3 CloudWatch: {checks} passed, 0 failed")
