// Alarms, their topic and the dashboard (infra/template.yaml: AlarmTopicKey, AlarmTopic,
// AlarmEmailSubscription, ServerErrorRateAlarm, ThrottleRateAlarm, ProvisionedUtilizationAlarm,
// DailyCostAlarm, MetricsPublisherErrorsAlarm, Dashboard).
import { Aws, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { Functions } from './functions';
import { ResolvedProps } from './props';

export interface Monitoring {
  readonly alarmTopic: sns.ITopic;
  readonly dashboard: cloudwatch.CfnDashboard;
  readonly dashboardUrl: string;
}

export function createMonitoring(scope: Construct, p: ResolvedProps, name: string, fns: Functions): Monitoring {
  let alarmTopic: sns.ITopic;
  if (p.alarmTopic) {
    alarmTopic = p.alarmTopic;
  } else {
    // CloudWatch cannot use the AWS-managed aws/sns key to publish alarms: without kmsKey the
    // topic gets a key of its own that lets CloudWatch (this account's alarms only) encrypt.
    let masterKey = p.kmsKey;
    if (!masterKey) {
      masterKey = new kms.Key(scope, 'AlarmTopicKey', {
        description: "Encrypts the alarm topic's messages",
        enableKeyRotation: true,
        removalPolicy: RemovalPolicy.DESTROY,
        policy: new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              sid: 'AccountAdministers',
              principals: [new iam.ArnPrincipal(`arn:${Aws.PARTITION}:iam::${Aws.ACCOUNT_ID}:root`)],
              actions: ['kms:*'],
              resources: ['*'],
            }),
            new iam.PolicyStatement({
              sid: 'CloudWatchAlarmsPublish',
              principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
              actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
              resources: ['*'],
              conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
            }),
          ],
        }),
      });
    }
    const topic = new sns.Topic(scope, 'AlarmTopic', { displayName: 'Bedrock toolkit alarms', masterKey });
    Validations.of(topic).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SNS3',
      reason: 'As infra/template.yaml, no topic policy: only CloudWatch alarms of this account publish (through the key policy), and its subscribers are email addresses',
    });
    alarmTopic = topic;
  }
  if (p.alarmEmail) {
    new sns.Subscription(scope, 'AlarmEmailSubscription', {
      topic: alarmTopic,
      protocol: sns.SubscriptionProtocol.EMAIL,
      endpoint: p.alarmEmail,
    });
  }

  const notify = new actions.SnsAction(alarmTopic);
  const alarm = (id: string, props: cloudwatch.AlarmProps, ok = true) => {
    const a = new cloudwatch.Alarm(scope, id, {
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      ...props,
    });
    a.addAlarmAction(notify);
    if (ok) a.addOkAction(notify);
    return a;
  };
  const ns = p.metricsNamespace;
  const reports = `${ns}/Reports`;
  const fiveMinutes = Duration.minutes(5);
  const sum = (metricName: string) =>
    new cloudwatch.Metric({ namespace: ns, metricName, statistic: 'Sum', period: fiveMinutes });

  // Requests ending in a 5xx (ServerErrors and Timeouts), as a share of all: invoke-with-cache's
  // EMF metrics without dimension, so every model counts.
  alarm('ServerErrorRateAlarm', {
    alarmDescription: 'More than ServerErrorRateAlarmPercent of requests answered 5xx (Bedrock failures, timeouts)',
    metric: new cloudwatch.MathExpression({
      expression: '100 * (FILL(errors, 0) + FILL(timeouts, 0)) / requests',
      label: '5xx share of requests (%)',
      usingMetrics: { requests: sum('Requests'), errors: sum('ServerErrors'), timeouts: sum('Timeouts') },
      period: fiveMinutes,
    }),
    threshold: p.serverErrorRateAlarmPercent,
    evaluationPeriods: 3,
    datapointsToAlarm: 2,
  });
  alarm('ThrottleRateAlarm', {
    alarmDescription: 'More than ThrottleRateAlarmPercent of requests throttled (429) after spillover',
    metric: new cloudwatch.MathExpression({
      expression: '100 * FILL(throttles, 0) / requests',
      label: 'throttled share of requests (%)',
      usingMetrics: { requests: sum('Requests'), throttles: sum('Throttles') },
      period: fiveMinutes,
    }),
    threshold: p.throttleRateAlarmPercent,
    evaluationPeriods: 3,
    datapointsToAlarm: 2,
  });
  // The busiest Provisioned Throughput's average utilization over three periods in a row.
  alarm('ProvisionedUtilizationAlarm', {
    alarmDescription: 'A Provisioned Throughput served more than 90 % of its capacity for 15 minutes; see RecommendedModelUnits',
    metric: new cloudwatch.Metric({ namespace: reports, metricName: 'ProvisionedUtilization', statistic: 'Maximum', period: fiveMinutes }),
    threshold: 90,
    evaluationPeriods: 3,
    datapointsToAlarm: 3,
  });
  alarm('DailyCostAlarm', {
    alarmDescription: 'The estimated cost (on-demand, batch and Provisioned Throughput hours) of the last 24 hours is above DailyCostBudgetUsd',
    metric: new cloudwatch.Metric({ namespace: reports, metricName: 'TotalCostUSD', statistic: 'Sum', period: Duration.days(1) }),
    threshold: p.dailyCostBudgetUsd,
    evaluationPeriods: 1,
  }, false);
  // The reports stop when the publisher fails: three failed runs in a row.
  alarm('MetricsPublisherErrorsAlarm', {
    alarmDescription: 'metrics-publisher failed three runs in a row; the reports are behind (it catches up once it runs again)',
    metric: fns.metricsPublisher.metricErrors({ statistic: 'Sum', period: fiveMinutes }),
    threshold: 0,
    evaluationPeriods: 3,
    datapointsToAlarm: 3,
  });

  const dashboardName = `${name}-bedrock`;
  const dashboard = new cloudwatch.CfnDashboard(scope, 'Dashboard', {
    dashboardName,
    dashboardBody: dashboardBody(ns, String(p.recommendationHeadroom), Aws.REGION),
  });
  return {
    alarmTopic,
    dashboard,
    dashboardUrl: `https://${Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${dashboard.ref}`,
  };
}

/** The template's DashboardBody, with its three substitutions. */
function dashboardBody(ns: string, headroom: string, region: string): string {
  const search = (namespaceAndKeys: string, metric: string, stat: string, period: number) =>
    `SEARCH('{${namespaceAndKeys}} MetricName="${metric}"', '${stat}', ${period})`;
  const graph = (x: number, y: number, width: number, title: string, metrics: unknown[], extra: object = {}) => ({
    type: 'metric', x, y, width, height: 6,
    properties: { title, region, view: 'timeSeries', ...extra, period: (extra as { period?: number }).period ?? 300, metrics },
  });
  const r = `${ns}/Reports`;
  const body = {
    periodOverride: 'inherit',
    widgets: [
      {
        type: 'text', x: 0, y: 0, width: 24, height: 2, properties: {
          markdown: `Requests from invoke-with-cache (${ns}); reports every 5 minutes from metrics-publisher (${r}). **RecommendedModelUnits**: the fewest model units that would have served each period's busiest minute with ${headroom} headroom, 0 when those units would cost more than the same tokens on-demand. Read its Maximum over a day against ProvisionedModelUnits.`,
        },
      },
      graph(0, 2, 8, 'Latency (ms), all models', [
        [ns, 'InferenceLatency', { stat: 'p50', label: 'p50' }],
        [ns, 'InferenceLatency', { stat: 'p99', label: 'p99' }],
      ]),
      graph(8, 2, 8, 'Tokens processed by model', [
        [{ expression: search(`${ns},ModelId`, 'TokensProcessed', 'Sum', 300), id: 'tokens' }],
      ], { stacked: true }),
      graph(16, 2, 8, '5xx and throttled share of requests (%)', [
        [{ expression: '100 * (FILL(e, 0) + FILL(t, 0)) / r', id: 'e5', label: '5xx' }],
        [{ expression: '100 * FILL(th, 0) / r', id: 'e4', label: 'throttled' }],
        [ns, 'Requests', { id: 'r', stat: 'Sum', visible: false }],
        [ns, 'ServerErrors', { id: 'e', stat: 'Sum', visible: false }],
        [ns, 'Timeouts', { id: 't', stat: 'Sum', visible: false }],
        [ns, 'Throttles', { id: 'th', stat: 'Sum', visible: false }],
      ]),
      graph(0, 8, 8, 'Cost (USD per 5 minutes)', [
        [r, 'TotalCostUSD', { stat: 'Sum', label: 'total, with Provisioned Throughput hours' }],
        [r, 'EstimatedCostUSD', { stat: 'Sum', label: 'on-demand and batch' }],
        [{ expression: search(`${r},ModelId`, 'EstimatedCostUSD', 'Sum', 300), id: 'bymodel' }],
      ]),
      graph(8, 8, 8, 'Saved (USD per 5 minutes)', [
        [r, 'SavedByCacheUSD', { stat: 'Sum', label: 'by the cache' }],
        [r, 'SavedByBatchUSD', { stat: 'Sum', label: 'by batch pricing' }],
        [r, 'SavedByPromptCacheUSD', { stat: 'Sum', label: "by Bedrock's prompt cache" }],
      ], { stacked: true }),
      graph(16, 8, 8, 'Cache hit rate (%)', [
        [r, 'CacheHitRate', { stat: 'Average', label: 'all models' }],
        [{ expression: search(`${r},ModelId`, 'CacheHitRate', 'Average', 300), id: 'bymodel' }],
      ], { yAxis: { left: { min: 0, max: 100 } } }),
      graph(0, 14, 8, 'Batch backlog', [
        [r, 'BatchJobsInProgress', { stat: 'Maximum', label: 'jobs in progress' }],
        [r, 'BatchJobsQueued', { stat: 'Maximum', label: 'jobs queued' }],
        [r, 'BatchRecordsPending', { stat: 'Maximum', label: 'records pending', yAxis: 'right' }],
      ]),
      graph(8, 14, 8, 'Provisioned Throughput utilization (%)', [
        [{ expression: search(`${r},ProvisionedModelArn`, 'ProvisionedUtilization', 'Average', 300), id: 'average' }],
        [{ expression: search(`${r},ProvisionedModelArn`, 'ProvisionedPeakUtilization', 'Maximum', 300), id: 'peak' }],
      ], { annotations: { horizontal: [{ value: 90, label: 'alarm' }] } }),
      graph(16, 14, 8, 'Model units: in service and recommended', [
        [{ expression: search(`${r},ProvisionedModelArn`, 'ProvisionedModelUnits', 'Maximum', 300), id: 'units' }],
        [{ expression: search(`${r},ProvisionedModelArn`, 'RecommendedModelUnits', 'Maximum', 300), id: 'recommended' }],
      ]),
      graph(0, 20, 24, 'Provisioned Throughput: price per hour against what its tokens would have cost on-demand (USD per hour)', [
        [{ expression: search(`${r},ProvisionedModelArn`, 'ProvisionedHourlyCostUSD', 'Average', 3600), id: 'price' }],
        [{ expression: search(`${r},ProvisionedModelArn`, 'ProvisionedOnDemandEquivalentUSD', 'Sum', 3600), id: 'ondemand' }],
      ], { period: 3600 }),
      graph(0, 26, 12, 'On-demand cost by service tier (USD per 5 minutes)', [
        [{ expression: search(`${r},ServiceTier`, 'EstimatedCostUSD', 'Sum', 300), id: 'bytier' }],
      ], { stacked: true }),
      graph(12, 26, 12, 'Prompt cache tokens and flex fallbacks', [
        [{ expression: search(`${ns},ModelId`, 'PromptCacheReadTokens', 'Sum', 300), id: 'read' }],
        [{ expression: search(`${ns},ModelId`, 'PromptCacheWriteTokens', 'Sum', 300), id: 'written' }],
        [{ expression: search(`${ns},ModelId,ServiceTier`, 'TierFallbacks', 'Sum', 300), id: 'fallbacks', yAxis: 'right' }],
      ]),
      graph(0, 32, 12, 'Deferred requests by placement, and deadlines missed', [
        [{ expression: search(`${r},Placement`, 'DeferredRequests', 'Sum', 300), id: 'placed' }],
        [r, 'DeferredDeadlineMisses', { stat: 'Sum', label: 'deadlines missed', yAxis: 'right' }],
      ], { stacked: true }),
      graph(12, 32, 12, 'Deferred requests: cost and saved against on-demand by placement (USD per 5 minutes)', [
        [{ expression: search(`${r},Placement`, 'DeferredCostUSD', 'Sum', 300), id: 'cost' }],
        [{ expression: search(`${r},Placement`, 'SavedByDeferredUSD', 'Sum', 300), id: 'saved' }],
      ]),
    ],
  };
  return JSON.stringify(body);
}
