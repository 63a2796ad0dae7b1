// The construct's props: one per parameter of infra/template.yaml (lowerCamelCase of its name),
// with the same defaults, plus what only a CDK app can pass (its own key, topic, VPC, tags).
// scripts/cdk_parity.py checks that every template parameter has its prop here.
import { Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';

export type ServiceTier = '' | 'default' | 'flex' | 'priority';

export interface BedrockGatewayProps {
  // --- Build and placement (no template parameter but Architecture) ---

  /** Instruction set of every function (Architecture). @default ARM_64 */
  readonly architecture?: lambda.Architecture;
  /**
   * The workspace's Cargo.toml, built with cargo-lambda (one binary per function).
   * @default the repository's root Cargo.toml (../../Cargo.toml from infra/cdk)
   */
  readonly manifestPath?: string;
  /**
   * Names the stack-wide resources (client API, bucket, dashboard, web ACL) and tags the
   * Provisioned Throughput the capacity function owns (bgw:plan).
   * @default the stack's name (AWS::StackName), as the SAM template
   */
  readonly name?: string;
  /** Functions in a VPC (e.g. one with DynamoDB, S3 and Bedrock endpoints). @default none, as the SAM template */
  readonly vpc?: ec2.IVpc;
  /** Subnets of the functions in `vpc`. @default the VPC's private subnets */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** Security groups of the functions in `vpc`. @default one per function */
  readonly securityGroups?: ec2.ISecurityGroup[];
  /** Tags on every resource of the gateway (Tags.of(gateway).add does the same). */
  readonly tags?: Record<string, string>;

  // --- Models and routing ---

  /** MODEL_SIMPLE (ModelSimple): a model id or a cross-region inference profile id. */
  readonly modelSimple?: string;
  /** MODEL_MODERATE (ModelModerate). */
  readonly modelModerate?: string;
  /** MODEL_COMPLEX (ModelComplex). */
  readonly modelComplex?: string;
  /** ALLOWED_MODELS (AllowedModels): more models, comma-separated, besides the tier models. @default '' */
  readonly allowedModels?: string;
  /** ARNs of the allowedModels models, for the functions' IAM policies (AllowedModelArns). @default [] */
  readonly allowedModelArns?: string[];
  /** PROVISIONED_THROUGHPUT (ProvisionedThroughput): MODEL_ID=PROVISIONED_MODEL_ARN pairs. @default '' */
  readonly provisionedThroughput?: string;
  /** Provisioned Throughput ARNs invoke-with-cache may call (ProvisionedThroughputArns). @default [] */
  readonly provisionedThroughputArns?: string[];
  /** CUSTOM_MODELS (CustomModels). @default '' */
  readonly customModels?: string;
  /** ROUTING_POLICY (RoutingPolicy). @default 'spillover' */
  readonly routingPolicy?: 'spillover' | 'schedule';
  /** PROVISIONED_SCHEDULE (ProvisionedSchedule), [DAYS ]HH:MM-HH:MM. @default '09:00-17:00' */
  readonly provisionedSchedule?: string;
  /** PROVISIONED_TIMEZONE (ProvisionedTimezone). @default 'UTC' */
  readonly provisionedTimezone?: string;
  /** MODEL_PRICES (ModelPrices). @default '' */
  readonly modelPrices?: string;
  /** GUARDRAIL_ID (GuardrailId): the id, not the ARN. @default '' (none) */
  readonly guardrailId?: string;
  /** GUARDRAIL_VERSION (GuardrailVersion): DRAFT or a number. @default '' */
  readonly guardrailVersion?: string;
  /** SERVICE_TIER (ServiceTier). @default '' (Bedrock's default tier) */
  readonly serviceTier?: ServiceTier;
  /** SERVICE_TIER_PRICE_FACTORS (ServiceTierPriceFactors). @default '' */
  readonly serviceTierPriceFactors?: string;

  // --- Cache ---

  /** CACHE_TTL_SECONDS (CacheTtlSeconds). @default 3600 */
  readonly cacheTtlSeconds?: number;
  /** CACHE_MAX_TTL_SECONDS (CacheMaxTtlSeconds). @default 86400 */
  readonly cacheMaxTtlSeconds?: number;
  /** CACHE_NAMESPACE (CacheNamespace). @default 'shared' */
  readonly cacheNamespace?: string;
  /** CACHE_SCOPE (CacheScope). @default 'shared' */
  readonly cacheScope?: 'shared' | 'caller';
  /** MEMORY_CACHE_ENTRIES (MemoryCacheEntries). @default 256 */
  readonly memoryCacheEntries?: number;
  /** MEMORY_CACHE_TTL_SECONDS (MemoryCacheTtlSeconds). @default 60 */
  readonly memoryCacheTtlSeconds?: number;
  /** SHARED_CACHE_ALLOW_REFRESH (SharedCacheAllowRefresh). @default false */
  readonly sharedCacheAllowRefresh?: boolean;
  /** SHARED_CACHE_ALLOW_TTL (SharedCacheAllowTtl). @default false */
  readonly sharedCacheAllowTtl?: boolean;
  /** CACHE_MAX_TOKENS_ANSWERS (CacheMaxTokensAnswers). @default false */
  readonly cacheMaxTokensAnswers?: boolean;
  /** CACHE_SAMPLED_REQUESTS (CacheSampledRequests). @default 'cache' */
  readonly cacheSampledRequests?: 'cache' | 'bypass';
  /** CACHE_LEASE_MS (CacheLeaseMs). @default 30000 */
  readonly cacheLeaseMs?: number;
  /** CACHE_LEASE_WAIT_MS (CacheLeaseWaitMs). @default 5000 */
  readonly cacheLeaseWaitMs?: number;
  /** CACHE_TIMEOUT_MS (CacheTimeoutMs). @default 1000 */
  readonly cacheTimeoutMs?: number;

  // --- Complexity ---

  /** COMPLEXITY_SIMPLE_MAX_WORDS (ComplexitySimpleMaxWords). @default 50 */
  readonly complexitySimpleMaxWords?: number;
  /** COMPLEXITY_MODERATE_MAX_WORDS (ComplexityModerateMaxWords). @default 200 */
  readonly complexityModerateMaxWords?: number;
  /** COMPLEXITY_KEYWORDS (ComplexityKeywords), comma-separated. */
  readonly complexityKeywords?: string;

  // --- Bedrock calls ---

  /** BEDROCK_CONNECT_TIMEOUT_MS (BedrockConnectTimeoutMs). @default 5000 */
  readonly bedrockConnectTimeoutMs?: number;
  /** BEDROCK_READ_TIMEOUT_MS (BedrockReadTimeoutMs). @default 60000 */
  readonly bedrockReadTimeoutMs?: number;
  /** BEDROCK_OPERATION_TIMEOUT_MS (BedrockOperationTimeoutMs); keep it below 300000. @default 240000 */
  readonly bedrockOperationTimeoutMs?: number;
  /** BEDROCK_PROVISIONED_TIMEOUT_MS (BedrockProvisionedTimeoutMs). @default 10000 */
  readonly bedrockProvisionedTimeoutMs?: number;
  /** BEDROCK_MAX_ATTEMPTS (BedrockMaxAttempts). @default 2 */
  readonly bedrockMaxAttempts?: number;
  /** BEDROCK_RETRY_MODE (BedrockRetryMode). @default 'adaptive' */
  readonly bedrockRetryMode?: 'adaptive' | 'standard';
  /** MAX_BODY_BYTES (MaxBodyBytes). @default 262144 */
  readonly maxBodyBytes?: number;

  // --- Tenants ---

  /** TENANT_KEY_CACHE_SECONDS (TenantKeyCacheSeconds). @default 60 */
  readonly tenantKeyCacheSeconds?: number;
  /** SPEND_CACHE_SECONDS (SpendCacheSeconds). @default 10 */
  readonly spendCacheSeconds?: number;

  // --- Operations ---

  /**
   * API Gateway's account-wide CloudWatch Logs role (ApiGatewayLogsRoleArn). Absent: the gateway
   * creates one (retained on delete) and sets it.
   */
  readonly apiGatewayLogsRole?: iam.IRole;
  /** METRICS_NAMESPACE (MetricsNamespace). @default 'Custom/Bedrock' */
  readonly metricsNamespace?: string;
  /** Retention of the log groups (LogRetentionDays). @default ONE_MONTH */
  readonly logRetentionDays?: logs.RetentionDays;
  /** Reserved concurrency of invoke-with-cache and the batch functions (ReservedConcurrency); -1 for none. @default 20 */
  readonly reservedConcurrency?: number;
  /**
   * Customer-managed key for the tables, bucket, queues, log groups, environments and the alarm
   * topic (KmsKeyArn). Its key policy must let CloudWatch Logs and DynamoDB use it.
   * @default AWS-managed keys (and a key of its own for the alarm topic)
   */
  readonly kmsKey?: kms.IKey;

  // --- Deferred requests ---

  /** DEFERRED_BATCH_TURNAROUND (DeferredBatchTurnaround), an ISO 8601 duration. @default 'PT6H' */
  readonly deferredBatchTurnaround?: string;
  /** DEFERRED_RETRY_MARGIN (DeferredRetryMargin), an ISO 8601 duration. @default 'PT15M' */
  readonly deferredRetryMargin?: string;

  // --- Batch ---

  /** BATCH_MIN_RECORDS (BatchMinRecords). @default 100 */
  readonly batchMinRecords?: number;
  /** BATCH_MAX_RECORDS (BatchMaxRecords). @default 50000 */
  readonly batchMaxRecords?: number;
  /** BATCH_SMALL_POLICY (BatchSmallPolicy). @default 'direct' */
  readonly batchSmallPolicy?: 'direct' | 'reject';
  /** BATCH_DEFAULT_MODEL (BatchDefaultModel). @default '' */
  readonly batchDefaultModel?: string;
  /** BATCH_EVENT_BUS (BatchEventBus). @default 'default' */
  readonly batchEventBus?: string;
  /** Days the batch bucket keeps its objects (BatchRetentionDays). @default 30 */
  readonly batchRetentionDays?: number;

  // --- Capacity and reports ---

  /** CAPACITY_PLAN (CapacityPlan), JSON. @default '{}' */
  readonly capacityPlan?: string;
  /** CAPACITY_LEAD_MINUTES (CapacityLeadMinutes). @default 15 */
  readonly capacityLeadMinutes?: number;
  /** CAPACITY_DRAIN_SECONDS (CapacityDrainSeconds). @default 60 */
  readonly capacityDrainSeconds?: number;
  /** CAPACITY_HOURLY_PRICES (CapacityHourlyPrices). @default '' */
  readonly capacityHourlyPrices?: string;
  /** ROUTING_TABLE_CACHE_SECONDS (RoutingTableCacheSeconds). @default 30 */
  readonly routingTableCacheSeconds?: number;
  /** PROVISIONED_TOKENS_PER_MINUTE_PER_UNIT (ProvisionedTokensPerMinutePerUnit). @default '*=100000' */
  readonly provisionedTokensPerMinutePerUnit?: string;
  /** PROVISIONED_HOURLY_PRICE_PER_UNIT (ProvisionedHourlyPricePerUnit). @default '' */
  readonly provisionedHourlyPricePerUnit?: string;
  /** RECOMMENDATION_HEADROOM (RecommendationHeadroom). @default 0.2 */
  readonly recommendationHeadroom?: number;

  // --- Alarms ---

  /** The cost alarm's threshold, USD over 24 hours (DailyCostBudgetUsd). @default 100 */
  readonly dailyCostBudgetUsd?: number;
  /** The 5xx alarm's threshold, percent (ServerErrorRateAlarmPercent). @default 5 */
  readonly serverErrorRateAlarmPercent?: number;
  /** The throttle alarm's threshold, percent (ThrottleRateAlarmPercent). @default 5 */
  readonly throttleRateAlarmPercent?: number;
  /** An address subscribed to the alarm topic (AlarmEmail). @default none */
  readonly alarmEmail?: string;
  /** The alarms' topic. @default a topic of the gateway's own (AlarmTopic), encrypted */
  readonly alarmTopic?: sns.ITopic;

  // --- Throttling and WAF ---

  /** POST /v1/invoke requests a second (InvokeRateLimit). @default 100 */
  readonly invokeRateLimit?: number;
  /** POST /v1/invoke burst (InvokeBurstLimit). @default 200 */
  readonly invokeBurstLimit?: number;
  /** Each OpenAI-compatible route's requests a second (TenantRoutesRateLimit). @default 50 */
  readonly tenantRoutesRateLimit?: number;
  /** Each OpenAI-compatible route's burst (TenantRoutesBurstLimit). @default 100 */
  readonly tenantRoutesBurstLimit?: number;
  /** Each batch and capacity route's requests a second (BatchApiRateLimit). @default 20 */
  readonly batchApiRateLimit?: number;
  /** Each batch and capacity route's burst (BatchApiBurstLimit). @default 40 */
  readonly batchApiBurstLimit?: number;
  /** 0 for no web ACL; else requests per IP and 5 minutes to /openai/ routes, at least 10 (WafRateLimitPer5Minutes). @default 0 */
  readonly wafRateLimitPer5Minutes?: number;
}

/** The template's defaults, one per parameter. */
export const DEFAULTS = {
  architecture: lambda.Architecture.ARM_64,
  modelSimple: 'us.anthropic.claude-haiku-4-5-20251001-v1:0',
  modelModerate: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
  modelComplex: 'us.anthropic.claude-opus-4-1-20250805-v1:0',
  allowedModels: '',
  allowedModelArns: [] as string[],
  provisionedThroughput: '',
  provisionedThroughputArns: [] as string[],
  customModels: '',
  routingPolicy: 'spillover',
  provisionedSchedule: '09:00-17:00',
  provisionedTimezone: 'UTC',
  modelPrices: '',
  guardrailId: '',
  guardrailVersion: '',
  serviceTier: '' as ServiceTier,
  serviceTierPriceFactors: '',
  cacheTtlSeconds: 3600,
  cacheMaxTtlSeconds: 86400,
  cacheNamespace: 'shared',
  cacheScope: 'shared',
  memoryCacheEntries: 256,
  memoryCacheTtlSeconds: 60,
  sharedCacheAllowRefresh: false,
  sharedCacheAllowTtl: false,
  cacheMaxTokensAnswers: false,
  cacheSampledRequests: 'cache',
  cacheLeaseMs: 30000,
  cacheLeaseWaitMs: 5000,
  cacheTimeoutMs: 1000,
  complexitySimpleMaxWords: 50,
  complexityModerateMaxWords: 200,
  complexityKeywords: 'analyze,analyse,analysis,compare,explain in detail,分析,比較,詳しく説明',
  bedrockConnectTimeoutMs: 5000,
  bedrockReadTimeoutMs: 60000,
  bedrockOperationTimeoutMs: 240000,
  bedrockProvisionedTimeoutMs: 10000,
  bedrockMaxAttempts: 2,
  bedrockRetryMode: 'adaptive',
  maxBodyBytes: 262144,
  tenantKeyCacheSeconds: 60,
  spendCacheSeconds: 10,
  metricsNamespace: 'Custom/Bedrock',
  logRetentionDays: logs.RetentionDays.ONE_MONTH,
  reservedConcurrency: 20,
  deferredBatchTurnaround: 'PT6H',
  deferredRetryMargin: 'PT15M',
  batchMinRecords: 100,
  batchMaxRecords: 50000,
  batchSmallPolicy: 'direct',
  batchDefaultModel: '',
  batchEventBus: 'default',
  batchRetentionDays: 30,
  capacityPlan: '{}',
  capacityLeadMinutes: 15,
  capacityDrainSeconds: 60,
  capacityHourlyPrices: '',
  routingTableCacheSeconds: 30,
  provisionedTokensPerMinutePerUnit: '*=100000',
  provisionedHourlyPricePerUnit: '',
  recommendationHeadroom: 0.2,
  dailyCostBudgetUsd: 100,
  serverErrorRateAlarmPercent: 5,
  throttleRateAlarmPercent: 5,
  invokeRateLimit: 100,
  invokeBurstLimit: 200,
  tenantRoutesRateLimit: 50,
  tenantRoutesBurstLimit: 100,
  batchApiRateLimit: 20,
  batchApiBurstLimit: 40,
  wafRateLimitPer5Minutes: 0,
};

type Defaulted = typeof DEFAULTS;

/** The props with every default filled in: what the other files read. */
export type ResolvedProps = Omit<BedrockGatewayProps, keyof Defaulted> & {
  readonly [K in keyof Defaulted]-?: NonNullable<BedrockGatewayProps[K & keyof BedrockGatewayProps]>;
};

export function resolveProps(props: BedrockGatewayProps): ResolvedProps {
  const merged: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, value] of Object.entries(props)) {
    if (value !== undefined) merged[key] = value;
  }
  const resolved = merged as unknown as ResolvedProps;
  validate(resolved);
  return resolved;
}

/** The template's AllowedPattern, AllowedValues and Rules, for values known at synth time. */
function validate(p: ResolvedProps): void {
  const problems: string[] = [];
  const known = (value: unknown): value is string | number =>
    (typeof value === 'string' || typeof value === 'number') && !Token.isUnresolved(value);
  const pattern = (name: string, value: string, re: RegExp) => {
    if (known(value) && !re.test(value)) problems.push(`${name} ${JSON.stringify(value)} does not match ${re}`);
  };
  const days = '(Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
  const hhmm = '([01][0-9]|2[0-3]):[0-5][0-9]';
  pattern('provisionedSchedule', p.provisionedSchedule,
    new RegExp(`^(${days}(-${days})?(,${days}(-${days})?)* )?${hhmm}-${hhmm}$`));
  pattern('guardrailId', p.guardrailId, /^([a-z0-9]+)?$/);
  pattern('guardrailVersion', p.guardrailVersion, /^(DRAFT|[1-9][0-9]{0,7})?$/);
  const isoDuration = /^P(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?$/;
  pattern('deferredBatchTurnaround', p.deferredBatchTurnaround, isoDuration);
  pattern('deferredRetryMargin', p.deferredRetryMargin, isoDuration);
  if (p.alarmEmail !== undefined) pattern('alarmEmail', p.alarmEmail, /^([^@\s]+@[^@\s]+\.[^@\s]+)?$/);
  if (known(p.reservedConcurrency) && (p.reservedConcurrency === 0 || p.reservedConcurrency < -1)) {
    problems.push('reservedConcurrency 0 would throttle every call; use -1 for no reservation');
  }
  const waf = p.wafRateLimitPer5Minutes;
  if (known(waf) && waf !== 0 && (waf < 10 || waf > 2_000_000_000)) {
    problems.push('wafRateLimitPer5Minutes is 0 (no WAF) or between 10 and 2000000000');
  }
  if (known(p.capacityLeadMinutes) && (p.capacityLeadMinutes < 0 || p.capacityLeadMinutes > 1440)) {
    problems.push('capacityLeadMinutes is between 0 and 1440');
  }
  if (known(p.capacityDrainSeconds) && (p.capacityDrainSeconds < 0 || p.capacityDrainSeconds > 3600)) {
    problems.push('capacityDrainSeconds is between 0 and 3600');
  }
  if (problems.length > 0) {
    throw new Error(`BedrockGateway: ${problems.join('; ')}`);
  }
}

/** A prop as an environment variable's value, as CloudFormation writes a parameter. */
export function envValue(value: string | number | boolean): string {
  return typeof value === 'string' ? value : String(value);
}
