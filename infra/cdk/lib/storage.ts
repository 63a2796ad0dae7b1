// The tables, the batch bucket and the batch queues (infra/template.yaml: CacheTable,
// TenantKeysTable, SpendTable, BatchTable, RoutingTable, MetricsStateTable, BatchBucket,
// BatchBucketPolicy, BatchDeadLetterQueue, BatchWorkQueue).
import { Aws, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ResolvedProps } from './props';

export interface Storage {
  readonly cacheTable: dynamodb.Table;
  readonly deferredTable: dynamodb.Table;
  readonly tenantKeysTable: dynamodb.Table;
  readonly spendTable: dynamodb.Table;
  readonly batchTable: dynamodb.Table;
  readonly routingTable: dynamodb.Table;
  readonly metricsStateTable: dynamodb.Table;
  readonly batchBucket: s3.Bucket;
  /**
   * The bucket's name, known before the bucket exists: batch-submit's environment and policy
   * use it, as a reference would make a cycle with the bucket's notification to batch-submit.
   */
  readonly batchBucketName: string;
  readonly batchDeadLetterQueue: sqs.Queue;
  readonly batchWorkQueue: sqs.Queue;
}

export function createStorage(scope: Construct, p: ResolvedProps, name: string): Storage {
  const table = (id: string, partitionKey: string, opts: { ttl?: boolean; pitr: boolean }) =>
    new dynamodb.Table(scope, id, {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: opts.ttl ? 'expiresAt' : undefined,
      encryption: p.kmsKey ? dynamodb.TableEncryption.CUSTOMER_MANAGED : dynamodb.TableEncryption.AWS_MANAGED,
      encryptionKey: p.kmsKey,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: opts.pitr },
      removalPolicy: RemovalPolicy.DESTROY,
    });

  // A cache that refills itself: no point-in-time recovery.
  const cacheTable = table('CacheTable', 'pk', { ttl: true, pitr: false });
  Validations.of(cacheTable).acknowledge({
    id: 'AwsSolutions::AwsSolutions-DDB3',
    reason: 'A cache that refills itself: entries expire by TTL and a lost one is a Bedrock call on the next miss, so point-in-time recovery would bill backups of nothing worth restoring (checkov CKV_AWS_28 in infra/template.yaml)',
  });
  // Deferred requests until a week after their deadline; the sparse `pending` index holds only
  // those not yet answered, which the schedule scans. Accepted work: worth recovering.
  const deferredTable = table('DeferredTable', 'id', { ttl: true, pitr: true });
  deferredTable.addGlobalSecondaryIndex({
    indexName: 'pending',
    partitionKey: { name: 'pending', type: dynamodb.AttributeType.STRING },
    projectionType: dynamodb.ProjectionType.ALL,
  });
  // Tenant keys (hashes only): worth recovering, losing it locks every tenant out.
  const tenantKeysTable = table('TenantKeysTable', 'keyId', { pitr: true });
  // Spend per tenant and month, the limiter's windows and leases.
  const spendTable = table('SpendTable', 'tenantMonth', { ttl: true, pitr: true });
  // The batch registry tracks batches in flight.
  const batchTable = table('BatchTable', 'batchId', { ttl: true, pitr: true });
  // The capacity function's routing table.
  const routingTable = table('RoutingTable', 'pk', { pitr: true });
  // metrics-publisher's watermark.
  const metricsStateTable = table('MetricsStateTable', 'pk', { pitr: true });

  const batchBucketName = `${name}-batch-${Aws.ACCOUNT_ID}-${Aws.REGION}`;
  const batchBucket = new s3.Bucket(scope, 'BatchBucket', {
    bucketName: batchBucketName,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    // The AWS-managed aws/s3 key unless kmsKey names one; the bucket key keeps KMS calls few.
    encryption: p.kmsKey ? s3.BucketEncryption.KMS : s3.BucketEncryption.KMS_MANAGED,
    encryptionKey: p.kmsKey,
    bucketKeyEnabled: true,
    versioned: true,
    // BatchBucketPolicy: TLS only.
    enforceSSL: true,
    lifecycleRules: [{
      id: 'expire-batch-data',
      enabled: true,
      expiration: Duration.days(p.batchRetentionDays),
      noncurrentVersionExpiration: Duration.days(1),
      abortIncompleteMultipartUploadAfter: Duration.days(1),
    }],
    removalPolicy: RemovalPolicy.RETAIN,
  });
  Validations.of(batchBucket).acknowledge({
    id: 'AwsSolutions::AwsSolutions-S1',
    reason: "Server access logs would need a second bucket of their own; every write here is made by the stack's functions or Bedrock, whose calls CloudTrail records (checkov CKV_AWS_18 in infra/template.yaml)",
  });

  const encryption = p.kmsKey
    ? { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: p.kmsKey }
    : { encryption: sqs.QueueEncryption.SQS_MANAGED };
  const batchDeadLetterQueue = new sqs.Queue(scope, 'BatchDeadLetterQueue', {
    retentionPeriod: Duration.seconds(1209600),
    ...encryption,
  });
  // One open batch a message, batch-status one message an invocation; a batch that keeps
  // failing goes to the dead-letter queue after five deliveries.
  const batchWorkQueue = new sqs.Queue(scope, 'BatchWorkQueue', {
    // Six times batch-status's timeout, as AWS advises for a queue a function consumes.
    visibilityTimeout: Duration.seconds(1800),
    retentionPeriod: Duration.seconds(3600),
    deadLetterQueue: { queue: batchDeadLetterQueue, maxReceiveCount: 5 },
    ...encryption,
  });
  const noQueuePolicy = {
    id: 'AwsSolutions::AwsSolutions-SQS4',
    reason: "As infra/template.yaml, no queue policy: only this stack's functions (SigV4, over the SDK's HTTPS endpoints), EventBridge Scheduler (through its role) and Lambda's own dead-letter delivery write to the queue; its messages are encrypted at rest",
  };
  Validations.of(batchDeadLetterQueue).acknowledge(noQueuePolicy,
    { id: 'AwsSolutions::AwsSolutions-SQS3', reason: 'It is the dead-letter queue of the batch functions, the work queue, the job-state rule and the poll schedule' });
  Validations.of(batchWorkQueue).acknowledge(noQueuePolicy);

  return {
    cacheTable, deferredTable, tenantKeysTable, spendTable, batchTable, routingTable, metricsStateTable,
    batchBucket, batchBucketName, batchDeadLetterQueue, batchWorkQueue,
  };
}
