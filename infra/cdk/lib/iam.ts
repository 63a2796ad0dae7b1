// IAM as infra/template.yaml writes it: each function role's statements (its Policies, by Sid),
// the KMS policies made only with a customer-managed key, Bedrock's batch service role and the
// example policy for batch uploaders. Every statement is written out rather than made by a
// grant, so that scripts/cdk_parity.py finds the same actions on the same resources.
import { Aws } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { Functions } from './functions';
import { ResolvedProps } from './props';
import { Storage } from './storage';

const P = Aws.PARTITION;
const R = Aws.REGION;
const A = Aws.ACCOUNT_ID;

const allow = (sid: string, actions: string[], resources: string[], conditions?: Record<string, unknown>) =>
  new iam.PolicyStatement({ sid, effect: iam.Effect.ALLOW, actions, resources, conditions });

/** Bedrock's batch role: it reads job inputs and writes job outputs only (BatchServiceRole). */
export function createBatchServiceRole(scope: Construct, storage: Storage): iam.Role {
  // The bucket by its name, not its Arn attribute: batch-submit names this role, and the bucket
  // notifies batch-submit, so a reference to the bucket here would close a dependency cycle
  // (bucket -> upload permission -> function -> this role -> bucket).
  const bucketArn = `arn:${P}:s3:::${storage.batchBucketName}`;
  const role = new iam.Role(scope, 'BatchServiceRole', {
    assumedBy: new iam.ServicePrincipal('bedrock.amazonaws.com', {
      conditions: {
        StringEquals: { 'aws:SourceAccount': A },
        ArnLike: { 'aws:SourceArn': `arn:${P}:bedrock:${R}:${A}:model-invocation-job/*` },
      },
    }),
    inlinePolicies: {
      'batch-job-data': new iam.PolicyDocument({
        statements: [
          allow('ReadJobInputs', ['s3:GetObject'], [`${bucketArn}/batch-jobs/*`]),
          allow('ListJobPrefixes', ['s3:ListBucket'], [bucketArn],
            { StringLike: { 's3:prefix': ['batch-jobs/*', 'batch-output/*'] } }),
          allow('WriteJobOutputs', ['s3:PutObject'], [`${bucketArn}/batch-output/*`]),
        ],
      }),
    },
  });
  return role;
}

export function grantFunctionPermissions(
  scope: Construct,
  p: ResolvedProps,
  name: string,
  storage: Storage,
  fns: Functions,
  batchServiceRole: iam.IRole,
): void {
  const tier = [p.modelSimple, p.modelModerate, p.modelComplex];
  const foundationModel = (m: string) => `arn:${P}:bedrock:${R}::foundation-model/${m}`;
  const inferenceProfile = (m: string) => `arn:${P}:bedrock:${R}:${A}:inference-profile/${m}`;
  // A tier model is a model id (its foundation-model ARN) or a cross-region inference profile
  // id (the profile's ARN in this account).
  const tierModelArns = [...tier.map(foundationModel), ...tier.map(inferenceProfile)];
  const anyFoundationModel = `arn:${P}:bedrock:*::foundation-model/*`;
  // A profile routes to its foundation model in any of its Regions: allowed only through one
  // of the tier profiles.
  const throughTierProfiles = { StringEquals: { 'bedrock:InferenceProfileArn': tier.map(inferenceProfile) } };
  const provisionedModels = `arn:${P}:bedrock:${R}:${A}:provisioned-model/*`;
  const jobs = `arn:${P}:bedrock:${R}:${A}:model-invocation-job/*`;
  const bucketArn = storage.batchBucket.bucketArn;
  const bucketByName = `arn:${P}:s3:::${storage.batchBucketName}`;
  const passBatchRole = allow('PassOnlyTheBatchRole', ['iam:PassRole'], [batchServiceRole.roleArn],
    { StringEquals: { 'iam:PassedToService': 'bedrock.amazonaws.com' } });
  const planTag = { 'aws:ResourceTag/bgw:plan': name };
  const onlyPlanTags = { 'ForAllValues:StringEquals': { 'aws:TagKeys': ['bgw:plan', 'bgw:model'] } };

  // invoke-with-cache
  const iwc = fns.invokeWithCache;
  [
    // DeleteItem only releases a stampede lease, on a condition that it is still the caller's.
    allow('CacheReadWrite', ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'], [storage.cacheTable.tableArn]),
    // Deferred requests: accepted (a conditional put) and read back by their owner; an
    // OpenAI batch's requests read together (BatchGetItem), a tenant's batches listed (Scan).
    allow('DeferredRequests', ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:BatchGetItem', 'dynamodb:Scan'],
      [storage.deferredTable.tableArn]),
    // OpenAI batch files: uploads, and the output and error files a batch ends with.
    allow('OpenAiBatchFiles', ['s3:GetObject', 's3:PutObject'], [`${bucketArn}/openai-files/*`]),
    allow('TenantKeysRead', ['dynamodb:GetItem'], [storage.tenantKeysTable.tableArn]),
    allow('SpendCounters', ['dynamodb:GetItem', 'dynamodb:UpdateItem'], [storage.spendTable.tableArn]),
    allow('RoutingTableRead', ['dynamodb:GetItem'], [storage.routingTable.tableArn]),
    // Provisioned Throughput the capacity function created or adopted: tagged with this plan.
    allow('InvokeManagedProvisionedThroughput', ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'],
      [provisionedModels], { StringEquals: planTag }),
    allow('InvokeConfiguredModels', ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'], tierModelArns),
    allow('InvokeProfileModels', ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'],
      [anyFoundationModel], throughTierProfiles),
  ].forEach((s) => iwc.addToRolePolicy(s));
  if (p.provisionedThroughputArns.length > 0) {
    iwc.addToRolePolicy(allow('InvokeProvisionedThroughput',
      ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'], p.provisionedThroughputArns));
  }
  if (p.allowedModelArns.length > 0) {
    iwc.addToRolePolicy(allow('InvokeAllowedModels',
      ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'], p.allowedModelArns));
  }
  if (p.guardrailId !== '') {
    // Converse with guardrailConfig needs the guardrail itself.
    iwc.addToRolePolicy(allow('ApplyGuardrail', ['bedrock:ApplyGuardrail'],
      [`arn:${P}:bedrock:${R}:${A}:guardrail/${p.guardrailId}`]));
  }

  // batch-submit
  const submit = fns.batchSubmit;
  [
    allow('Registry', ['dynamodb:GetItem', 'dynamodb:PutItem'], [storage.batchTable.tableArn]),
    allow('TenantKeysRead', ['dynamodb:Scan'], [storage.tenantKeysTable.tableArn]),
    allow('SpendReservations', ['dynamodb:GetItem', 'dynamodb:UpdateItem'], [storage.spendTable.tableArn]),
    allow('ReadUploads', ['s3:GetObject'], [`${bucketByName}/batch-input/*`]),
    allow('WriteJobInputs', ['s3:PutObject'], [`${bucketByName}/batch-jobs/*`]),
    allow('DeadLetters', ['sqs:SendMessage'], [storage.batchDeadLetterQueue.queueArn]),
    allow('HandOutSmallBatches', ['sqs:SendMessage'], [storage.batchWorkQueue.queueArn]),
    allow('JobResources', ['bedrock:CreateModelInvocationJob', 'bedrock:TagResource'], [jobs]),
    allow('CreateJobs', ['bedrock:CreateModelInvocationJob'], tierModelArns),
    allow('CreateJobsThroughTierProfiles', ['bedrock:CreateModelInvocationJob'], [anyFoundationModel], throughTierProfiles),
    passBatchRole,
  ].forEach((s) => submit.addToRolePolicy(s));
  if (p.allowedModelArns.length > 0) {
    submit.addToRolePolicy(allow('AllowedModels', ['bedrock:CreateModelInvocationJob'], p.allowedModelArns));
  }

  // batch-status
  const status = fns.batchStatus;
  [
    allow('Registry', ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Scan'], [storage.batchTable.tableArn]),
    allow('SpendSettlements', ['dynamodb:GetItem', 'dynamodb:UpdateItem'], [storage.spendTable.tableArn]),
    // The schedule places deferred requests: conditional puts, its lease (put, delete), and a
    // scan of the pending index.
    allow('PlaceDeferredRequests', ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:Scan'],
      [storage.deferredTable.tableArn, `${storage.deferredTable.tableArn}/index/pending`]),
    // The job inputs of batches made of deferred requests.
    allow('WriteDeferredBatchInputs', ['s3:PutObject'], [`${bucketArn}/batch-jobs/*`]),
    // batch-results/ too: the presigned results URL carries this role's permission.
    allow('ReadJobData', ['s3:GetObject'],
      [`${bucketArn}/batch-jobs/*`, `${bucketArn}/batch-output/*`, `${bucketArn}/batch-results/*`]),
    allow('ListJobOutputs', ['s3:ListBucket'], [bucketArn], { StringLike: { 's3:prefix': 'batch-output/*' } }),
    allow('WriteResults', ['s3:PutObject', 's3:AbortMultipartUpload'], [`${bucketArn}/batch-results/*`]),
    allow('FollowAndSubmitJobs', ['bedrock:GetModelInvocationJob', 'bedrock:StopModelInvocationJob',
      'bedrock:CreateModelInvocationJob', 'bedrock:TagResource'], [jobs]),
    allow('CreateJobs', ['bedrock:CreateModelInvocationJob'], tierModelArns),
    allow('CreateJobsThroughTierProfiles', ['bedrock:CreateModelInvocationJob'], [anyFoundationModel], throughTierProfiles),
    passBatchRole,
    allow('DeadLetters', ['sqs:SendMessage'], [storage.batchDeadLetterQueue.queueArn]),
    // SendMessageBatch is authorised as sqs:SendMessage.
    allow('FanOutBatches', ['sqs:SendMessage'], [storage.batchWorkQueue.queueArn]),
    allow('AnnounceBatchEnds', ['events:PutEvents'], [`arn:${P}:events:${R}:${A}:event-bus/${p.batchEventBus}`]),
    allow('SmallBatchAnswers', ['s3:GetObject', 's3:PutObject'], [`${bucketArn}/batch-direct/*`]),
    allow('ListSmallBatchAnswers', ['s3:ListBucket'], [bucketArn], { StringLike: { 's3:prefix': 'batch-direct/*' } }),
    allow('AnswerSmallBatchesDirectly', ['bedrock:InvokeModel'], tierModelArns),
    allow('AnswerSmallBatchesThroughTierProfiles', ['bedrock:InvokeModel'], [anyFoundationModel], throughTierProfiles),
  ].forEach((s) => status.addToRolePolicy(s));
  if (p.allowedModelArns.length > 0) {
    status.addToRolePolicy(allow('AllowedModels',
      ['bedrock:CreateModelInvocationJob', 'bedrock:InvokeModel'], p.allowedModelArns));
  }
  // The work queue's poller (SAM adds this managed policy for an SQS event).
  status.role!.addManagedPolicy(
    iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaSQSQueueExecutionRole'));

  // capacity
  const capacity = fns.capacity;
  [
    allow('RoutingTable', ['dynamodb:GetItem', 'dynamodb:PutItem'], [storage.routingTable.tableArn]),
    // Listing takes no resource: IAM cannot narrow it.
    allow('ListCapacity', ['bedrock:ListProvisionedModelThroughputs'], ['*']),
    allow('ReadCapacity', ['bedrock:GetProvisionedModelThroughput', 'bedrock:ListTagsForResource'], [provisionedModels]),
    // Creation only with this plan's bgw:plan tag and no other keys.
    allow('CreateTaggedCapacity', ['bedrock:CreateProvisionedModelThroughput'],
      [provisionedModels, `arn:${P}:bedrock:${R}::foundation-model/*`],
      { StringEquals: { 'aws:RequestTag/bgw:plan': name }, ...onlyPlanTags }),
    // Tagging only capacity that is this plan's already or no plan's.
    allow('TagOwnCapacity', ['bedrock:TagResource'], [provisionedModels],
      { StringEquals: { 'aws:RequestTag/bgw:plan': name, ...planTag }, ...onlyPlanTags }),
    allow('TagUnclaimedCapacity', ['bedrock:TagResource'], [provisionedModels],
      { 'StringEquals': { 'aws:RequestTag/bgw:plan': name }, 'Null': { 'aws:ResourceTag/bgw:plan': 'true' }, ...onlyPlanTags }),
    allow('DeleteOwnCapacity', ['bedrock:DeleteProvisionedModelThroughput'], [provisionedModels], { StringEquals: planTag }),
  ].forEach((s) => capacity.addToRolePolicy(s));

  // metrics-publisher
  const publisher = fns.metricsPublisher;
  [
    // Neither takes a resource: IAM cannot narrow them.
    allow('ReadRequestMetrics', ['cloudwatch:GetMetricData', 'cloudwatch:ListMetrics'], ['*']),
    // Publishing only into the reports namespace.
    allow('PublishReports', ['cloudwatch:PutMetricData'], ['*'],
      { StringEquals: { 'cloudwatch:namespace': `${p.metricsNamespace}/Reports` } }),
    allow('Watermark', ['dynamodb:GetItem', 'dynamodb:PutItem'], [storage.metricsStateTable.tableArn]),
    allow('ReadBatchRegistry', ['dynamodb:Scan'], [storage.batchTable.tableArn]),
    allow('ListCapacity', ['bedrock:ListProvisionedModelThroughputs'], ['*']),
  ].forEach((s) => publisher.addToRolePolicy(s));

  // With a customer-managed key, DynamoDB, S3 and SQS have KMS use it on the caller's behalf.
  if (p.kmsKey) {
    const keyArn = p.kmsKey.keyArn;
    const via = (...services: string[]) => ({
      StringEquals: { 'kms:ViaService': services.length === 1 ? services[0] : services },
    });
    const dynamodbVia = `dynamodb.${R}.amazonaws.com`;
    new iam.Policy(scope, 'InvokeWithCacheKmsPolicy', {
      policyName: 'cache-table-kms-key',
      roles: [iwc.role!],
      statements: [allow('CacheTableKey',
        ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey*', 'kms:ReEncrypt*', 'kms:DescribeKey'],
        // S3 too: OpenAI batch files are in the batch bucket, encrypted with the key.
        [keyArn], via(dynamodbVia, `s3.${R}.amazonaws.com`))],
    });
    new iam.Policy(scope, 'BatchKmsPolicy', {
      policyName: 'batch-kms-key',
      roles: [submit.role!, status.role!, batchServiceRole],
      statements: [allow('BatchDataKey', ['kms:Decrypt', 'kms:GenerateDataKey*'], [keyArn],
        via(`s3.${R}.amazonaws.com`, dynamodbVia, `sqs.${R}.amazonaws.com`))],
    });
    new iam.Policy(scope, 'CapacityKmsPolicy', {
      policyName: 'routing-table-kms-key',
      roles: [capacity.role!],
      statements: [allow('RoutingTableKey',
        ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey*', 'kms:ReEncrypt*', 'kms:DescribeKey'],
        [keyArn], via(dynamodbVia))],
    });
    new iam.Policy(scope, 'MetricsPublisherKmsPolicy', {
      policyName: 'metrics-tables-kms-key',
      roles: [publisher.role!],
      statements: [allow('TablesKey',
        ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey*', 'kms:DescribeKey'],
        [keyArn], via(dynamodbVia))],
    });
  }
}

/**
 * An example for the teams that upload batch inputs: attach it to a writer's role tagged
 * bgw-tenant=<tenant>; the role may then write only under batch-input/tenant/<tenant>/
 * (BatchUploadWriterPolicy).
 */
export function createBatchUploadWriterPolicy(scope: Construct, p: ResolvedProps, storage: Storage): iam.ManagedPolicy {
  const statements = [
    allow('UploadUnderOwnTenantPrefix', ['s3:PutObject'],
      [`arn:${P}:s3:::${storage.batchBucketName}/batch-input/tenant/\${aws:PrincipalTag/bgw-tenant}/*`],
      { StringLike: { 'aws:PrincipalTag/bgw-tenant': '?*' } }),
  ];
  if (p.kmsKey) {
    statements.push(allow('EncryptUploadsWithTheStacksKey', ['kms:GenerateDataKey'], [p.kmsKey.keyArn],
      { StringEquals: { 'kms:ViaService': `s3.${R}.amazonaws.com` } }));
  }
  return new iam.ManagedPolicy(scope, 'BatchUploadWriterPolicy', {
    description: 'Write batch inputs only under batch-input/tenant/<the role\'s bgw-tenant tag>/',
    statements,
  });
}
