// What starts the functions besides the APIs (infra/template.yaml: the Events of
// BatchSubmitFunction, BatchStatusFunction, CapacityFunction and MetricsPublisherFunction).
import { Aws, CfnResource, Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { Construct } from 'constructs';
import { Functions } from './functions';
import { Storage } from './storage';

export function createTriggers(scope: Construct, storage: Storage, fns: Functions): void {
  const dlqArn = storage.batchDeadLetterQueue.queueArn;

  // BatchSubmitFunction Upload: batch-input/*.jsonl objects created in the bucket. The
  // notification is the bucket's own property, as SAM writes it, so that no custom resource is
  // needed; S3 checks the permission when the bucket is created, hence the dependency.
  const uploadPermission = new lambda.CfnPermission(scope, 'BatchSubmitFunctionUploadPermission', {
    action: 'lambda:InvokeFunction',
    functionName: fns.batchSubmit.functionName,
    principal: 's3.amazonaws.com',
    sourceAccount: Aws.ACCOUNT_ID,
  });
  const bucket = storage.batchBucket.node.defaultChild as s3.CfnBucket;
  bucket.notificationConfiguration = {
    lambdaConfigurations: [{
      event: 's3:ObjectCreated:*',
      function: fns.batchSubmit.functionArn,
      filter: { s3Key: { rules: [{ name: 'prefix', value: 'batch-input/' }, { name: 'suffix', value: '.jsonl' }] } },
    }],
  };
  bucket.addResourceDependency(uploadPermission);

  // BatchStatusFunction JobStateChange: Bedrock's batch job state changes.
  const jobStateChange = new events.Rule(scope, 'BatchStatusFunctionJobStateChange', {
    eventPattern: { source: ['aws.bedrock'], detailType: ['Batch Inference Job State Change'] },
    targets: [new targets.LambdaFunction(fns.batchStatus, { retryAttempts: 5 })],
  });
  // The dead-letter queue as SAM's DeadLetterConfig Arn sets it: on the target only.
  (jobStateChange.node.defaultChild as CfnResource).addPropertyOverride('Targets.0.DeadLetterConfig', { Arn: dlqArn });

  // BatchStatusFunction Poll: every 5 minutes EventBridge Scheduler hands it this Input as its
  // event (without one, a default notification batch-status would not recognise).
  const pollRole = new iam.Role(scope, 'BatchStatusFunctionPollRole', {
    assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'),
    inlinePolicies: {
      BatchStatusFunctionPollLambdaPolicy: new iam.PolicyDocument({
        statements: [new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [fns.batchStatus.functionArn] })],
      }),
      BatchStatusFunctionPollSQSPolicy: new iam.PolicyDocument({
        statements: [new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [dlqArn] })],
      }),
    },
  });
  new scheduler.CfnSchedule(scope, 'BatchStatusFunctionPoll', {
    scheduleExpression: 'rate(5 minutes)',
    flexibleTimeWindow: { mode: 'OFF' },
    target: {
      arn: fns.batchStatus.functionArn,
      roleArn: pollRole.roleArn,
      input: '{"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}',
      deadLetterConfig: { arn: dlqArn },
      retryPolicy: { maximumRetryAttempts: 2 },
    },
  });

  // BatchStatusFunction Work: one batch an invocation; a failure delivers only that message again.
  // (The poller's permissions are AWSLambdaSQSQueueExecutionRole, as SAM grants them.)
  new lambda.EventSourceMapping(scope, 'BatchStatusFunctionWork', {
    target: fns.batchStatus,
    eventSourceArn: storage.batchWorkQueue.queueArn,
    batchSize: 1,
    reportBatchItemFailures: true,
    maxConcurrency: 5,
  });

  // CapacityFunction Reconcile: every minute, no retries (the next tick comes within a minute).
  new events.Rule(scope, 'CapacityFunctionReconcile', {
    schedule: events.Schedule.expression('rate(1 minute)'),
    description: 'Reconcile the Provisioned Throughput plan',
    targets: [new targets.LambdaFunction(fns.capacity, { retryAttempts: 0, maxEventAge: Duration.seconds(60) })],
  });

  // MetricsPublisherFunction Publish: every 5 minutes, no retries (the next run catches up).
  new events.Rule(scope, 'MetricsPublisherFunctionPublish', {
    schedule: events.Schedule.expression('rate(5 minutes)'),
    description: 'Publish the finished five-minute periods',
    targets: [new targets.LambdaFunction(fns.metricsPublisher, { retryAttempts: 0, maxEventAge: Duration.seconds(300) })],
  });
}
