// The five functions, built from this workspace with cargo-lambda (infra/template.yaml:
// InvokeWithCacheFunction, BatchSubmitFunction, BatchStatusFunction, CapacityFunction,
// MetricsPublisherFunction, and their log groups), with the template's Globals: provided.al2023,
// 256 MB and 75 s unless a function says otherwise, active X-Ray tracing, JSON logs at INFO
// (application) and WARN (system).
import * as path from 'node:path';
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Bundling } from 'cargo-lambda-cdk/lib/bundling';
import { Construct } from 'constructs';
import { envValue, ResolvedProps } from './props';
import { Storage } from './storage';

export interface Functions {
  readonly invokeWithCache: lambda.Function;
  readonly batchSubmit: lambda.Function;
  readonly batchStatus: lambda.Function;
  readonly capacity: lambda.Function;
  readonly metricsPublisher: lambda.Function;
}

/** infra/cdk/lib -> the repository root's Cargo.toml (../../Cargo.toml from infra/cdk). */
export const WORKSPACE_MANIFEST = path.resolve(__dirname, '..', '..', '..', 'Cargo.toml');

interface FunctionSpec {
  /** The package (and binary) name, the SAM template's BuildProperties.Binary. */
  readonly binary: string;
  readonly description: string;
  readonly memorySize?: number;
  readonly timeout: number;
  readonly reservedConcurrency?: number;
  readonly environment: Record<string, string>;
  readonly deadLetterQueue?: boolean;
  readonly retryAttempts?: number;
  readonly maxEventAge?: number;
}

export function createFunctions(
  scope: Construct,
  p: ResolvedProps,
  name: string,
  storage: Storage,
  batchServiceRole: iam.IRole,
): Functions {
  const reserved = p.reservedConcurrency === -1 ? undefined : p.reservedConcurrency;
  // Reserved only when ReservedConcurrency reserves any (HasReservedConcurrency).
  const reservedIf = (n: number) => (p.reservedConcurrency === -1 ? undefined : n);

  const make = (id: string, spec: FunctionSpec): lambda.Function => {
    const logGroup = new logs.LogGroup(scope, id.replace(/Function$/, 'Logs'), {
      retention: p.logRetentionDays,
      encryptionKey: p.kmsKey,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const fn = withoutCargoProbe(scope, () => new RustFunction(scope, id, {
      manifestPath: p.manifestPath ?? WORKSPACE_MANIFEST,
      binaryName: spec.binary,
      // As sam build, which builds each function in its own package directory: cargo then
      // compiles the function with its own package's features only, not every member's.
      bundling: { cargoLambdaFlags: ['--package', spec.binary] },
      architecture: p.architecture,
      description: spec.description,
      memorySize: spec.memorySize ?? 256,
      timeout: Duration.seconds(spec.timeout),
      reservedConcurrentExecutions: spec.reservedConcurrency,
      environmentEncryption: p.kmsKey,
      tracing: lambda.Tracing.ACTIVE,
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: lambda.ApplicationLogLevel.INFO,
      systemLogLevelV2: lambda.SystemLogLevel.WARN,
      logGroup,
      environment: spec.environment,
      deadLetterQueueEnabled: spec.deadLetterQueue ? true : undefined,
      deadLetterQueue: spec.deadLetterQueue ? storage.batchDeadLetterQueue : undefined,
      retryAttempts: spec.retryAttempts,
      maxEventAge: spec.maxEventAge === undefined ? undefined : Duration.seconds(spec.maxEventAge),
      vpc: p.vpc,
      vpcSubnets: p.vpcSubnets,
      securityGroups: p.securityGroups,
    }));
    // SAM adds AWSXrayWriteOnlyAccess to each function's role for Tracing: Active.
    fn.role!.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('AWSXrayWriteOnlyAccess'));
    return fn;
  };

  const tierModels = {
    MODEL_SIMPLE: p.modelSimple,
    MODEL_MODERATE: p.modelModerate,
    MODEL_COMPLEX: p.modelComplex,
  };

  const invokeWithCache = make('InvokeWithCacheFunction', {
    binary: 'invoke-with-cache',
    description: 'POST /v1/invoke and the OpenAI-compatible /openai/v1 - cached, routed, streamed Bedrock Converse',
    // A stream may last as long as the REST API lets it (15 minutes).
    timeout: 900,
    reservedConcurrency: reserved,
    environment: {
      CACHE_TABLE_NAME: storage.cacheTable.tableName,
      DEFERRED_TABLE_NAME: storage.deferredTable.tableName,
      FILES_BUCKET_NAME: storage.batchBucket.bucketName,
      TENANT_KEYS_TABLE_NAME: storage.tenantKeysTable.tableName,
      SPEND_TABLE_NAME: storage.spendTable.tableName,
      TENANT_KEY_CACHE_SECONDS: envValue(p.tenantKeyCacheSeconds),
      SPEND_CACHE_SECONDS: envValue(p.spendCacheSeconds),
      CACHE_TTL_SECONDS: envValue(p.cacheTtlSeconds),
      CACHE_MAX_TTL_SECONDS: envValue(p.cacheMaxTtlSeconds),
      CACHE_SCOPE: p.cacheScope,
      CACHE_NAMESPACE: p.cacheNamespace,
      MEMORY_CACHE_ENTRIES: envValue(p.memoryCacheEntries),
      MEMORY_CACHE_TTL_SECONDS: envValue(p.memoryCacheTtlSeconds),
      CACHE_TIMEOUT_MS: envValue(p.cacheTimeoutMs),
      SHARED_CACHE_ALLOW_REFRESH: envValue(p.sharedCacheAllowRefresh),
      SHARED_CACHE_ALLOW_TTL: envValue(p.sharedCacheAllowTtl),
      CACHE_MAX_TOKENS_ANSWERS: envValue(p.cacheMaxTokensAnswers),
      CACHE_SAMPLED_REQUESTS: p.cacheSampledRequests,
      CACHE_LEASE_MS: envValue(p.cacheLeaseMs),
      CACHE_LEASE_WAIT_MS: envValue(p.cacheLeaseWaitMs),
      BEDROCK_PROVISIONED_TIMEOUT_MS: envValue(p.bedrockProvisionedTimeoutMs),
      CUSTOM_MODELS: p.customModels,
      COMPLEXITY_SIMPLE_MAX_WORDS: envValue(p.complexitySimpleMaxWords),
      COMPLEXITY_MODERATE_MAX_WORDS: envValue(p.complexityModerateMaxWords),
      COMPLEXITY_KEYWORDS: p.complexityKeywords,
      BEDROCK_CONNECT_TIMEOUT_MS: envValue(p.bedrockConnectTimeoutMs),
      BEDROCK_READ_TIMEOUT_MS: envValue(p.bedrockReadTimeoutMs),
      BEDROCK_OPERATION_TIMEOUT_MS: envValue(p.bedrockOperationTimeoutMs),
      BEDROCK_MAX_ATTEMPTS: envValue(p.bedrockMaxAttempts),
      BEDROCK_RETRY_MODE: p.bedrockRetryMode,
      MAX_BODY_BYTES: envValue(p.maxBodyBytes),
      ...tierModels,
      ALLOWED_MODELS: p.allowedModels,
      PROVISIONED_THROUGHPUT: p.provisionedThroughput,
      ROUTING_TABLE_NAME: storage.routingTable.tableName,
      ROUTING_TABLE_CACHE_SECONDS: envValue(p.routingTableCacheSeconds),
      ROUTING_POLICY: p.routingPolicy,
      PROVISIONED_SCHEDULE: p.provisionedSchedule,
      PROVISIONED_TIMEZONE: p.provisionedTimezone,
      MODEL_PRICES: p.modelPrices,
      SERVICE_TIER: p.serviceTier,
      GUARDRAIL_ID: p.guardrailId,
      GUARDRAIL_VERSION: p.guardrailVersion,
      SERVICE_TIER_PRICE_FACTORS: p.serviceTierPriceFactors,
      METRICS_NAMESPACE: p.metricsNamespace,
    },
  });

  const batchSubmit = make('BatchSubmitFunction', {
    binary: 'batch-submit',
    description: 'POST /v1/batches and batch-input/*.jsonl uploads - records to Bedrock batch-inference jobs',
    memorySize: 512,
    timeout: 29,
    reservedConcurrency: reserved,
    // S3 invokes it asynchronously: an event that still fails after Lambda's retries lands here.
    deadLetterQueue: true,
    environment: {
      BATCH_BUCKET_NAME: storage.batchBucketName,
      BATCH_TABLE_NAME: storage.batchTable.tableName,
      BATCH_ROLE_ARN: batchServiceRole.roleArn,
      BATCH_MIN_RECORDS: envValue(p.batchMinRecords),
      BATCH_MAX_RECORDS: envValue(p.batchMaxRecords),
      BATCH_SMALL_POLICY: p.batchSmallPolicy,
      BATCH_DEFAULT_MODEL: p.batchDefaultModel,
      BATCH_WORK_QUEUE_URL: storage.batchWorkQueue.queueUrl,
      ...tierModels,
      ALLOWED_MODELS: p.allowedModels,
      MODEL_PRICES: p.modelPrices,
      TENANT_KEYS_TABLE_NAME: storage.tenantKeysTable.tableName,
      SPEND_TABLE_NAME: storage.spendTable.tableName,
    },
  });

  const batchStatus = make('BatchStatusFunction', {
    binary: 'batch-status',
    description: 'Follows batch jobs (events, a queue and a schedule), answers small batches, merges results, GET /v1/batches/{batchId}',
    memorySize: 512,
    timeout: 300,
    reservedConcurrency: reserved,
    deadLetterQueue: true,
    environment: {
      BATCH_BUCKET_NAME: storage.batchBucket.bucketName,
      BATCH_TABLE_NAME: storage.batchTable.tableName,
      BATCH_ROLE_ARN: batchServiceRole.roleArn,
      BATCH_MIN_RECORDS: envValue(p.batchMinRecords),
      BATCH_MAX_RECORDS: envValue(p.batchMaxRecords),
      BATCH_SMALL_POLICY: p.batchSmallPolicy,
      BATCH_EVENT_BUS: p.batchEventBus,
      BATCH_WORK_QUEUE_URL: storage.batchWorkQueue.queueUrl,
      MODEL_PRICES: p.modelPrices,
      // The schedule places deferred requests (batch, flex or default by their deadlines).
      DEFERRED_TABLE_NAME: storage.deferredTable.tableName,
      DEFERRED_BATCH_TURNAROUND: p.deferredBatchTurnaround,
      DEFERRED_RETRY_MARGIN: p.deferredRetryMargin,
      SERVICE_TIER_PRICE_FACTORS: p.serviceTierPriceFactors,
      METRICS_NAMESPACE: p.metricsNamespace,
      TENANT_KEYS_TABLE_NAME: storage.tenantKeysTable.tableName,
      SPEND_TABLE_NAME: storage.spendTable.tableName,
    },
  });

  const capacity = make('CapacityFunction', {
    binary: 'capacity',
    description: 'Provisioned Throughput by plan (created before windows, deleted after), the routing table, GET /v1/capacity',
    timeout: 60,
    // One scheduled run a minute and the odd GET: a small ceiling.
    reservedConcurrency: reservedIf(5),
    // A tick that failed is not worth retrying: the next one comes within a minute.
    retryAttempts: 0,
    maxEventAge: 60,
    environment: {
      CAPACITY_PLAN: p.capacityPlan,
      CAPACITY_PLAN_NAME: name,
      CAPACITY_LEAD_MINUTES: envValue(p.capacityLeadMinutes),
      CAPACITY_DRAIN_SECONDS: envValue(p.capacityDrainSeconds),
      CAPACITY_HOURLY_PRICES: p.capacityHourlyPrices,
      ROUTING_TABLE_NAME: storage.routingTable.tableName,
      METRICS_NAMESPACE: p.metricsNamespace,
    },
  });

  const metricsPublisher = make('MetricsPublisherFunction', {
    binary: 'metrics-publisher',
    description: 'Every 5 minutes - cost, savings, cache hit rate, batch backlog and Provisioned Throughput advice to CloudWatch',
    // Under PUBLISH_LEASE_SECONDS (240): a run never outlives the lease that keeps others out.
    timeout: 120,
    // One run at a time is all it needs.
    reservedConcurrency: reservedIf(1),
    retryAttempts: 0,
    maxEventAge: 300,
    environment: {
      METRICS_NAMESPACE: p.metricsNamespace,
      METRICS_STATE_TABLE_NAME: storage.metricsStateTable.tableName,
      BATCH_TABLE_NAME: storage.batchTable.tableName,
      ...tierModels,
      PROVISIONED_THROUGHPUT: p.provisionedThroughput,
      CUSTOM_MODELS: p.customModels,
      PROVISIONED_TOKENS_PER_MINUTE_PER_UNIT: p.provisionedTokensPerMinutePerUnit,
      PROVISIONED_HOURLY_PRICE_PER_UNIT: p.provisionedHourlyPricePerUnit,
      RECOMMENDATION_HEADROOM: envValue(p.recommendationHeadroom),
    },
  });

  return { invokeWithCache, batchSubmit, batchStatus, capacity, metricsPublisher };
}

/**
 * cargo-lambda-cdk's Bundling asks `cargo lambda --version` once per process, when the first
 * RustFunction is made, to choose between local and Docker bundling. A stack whose bundling is
 * skipped (cdk synth -c aws:cdk:bundling-stacks=[]) bundles nothing, so the question is answered
 * "no" for it without running cargo, and left unanswered for any stack that does bundle.
 */
function withoutCargoProbe<T>(scope: Construct, make: () => T): T {
  if (Stack.of(scope).bundlingRequired) {
    return make();
  }
  const cache = Bundling as unknown as { runsLocally?: boolean };
  const before = cache.runsLocally;
  cache.runsLocally = before ?? false;
  try {
    return make();
  } finally {
    cache.runsLocally = before;
  }
}
