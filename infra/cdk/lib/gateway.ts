// BedrockGateway: the stack of infra/template.yaml as one construct, for an existing CDK app.
import { Aws, Tags } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { createApis } from './api';
import { createTriggers } from './events';
import { createFunctions, Functions } from './functions';
import { createBatchServiceRole, createBatchUploadWriterPolicy, grantFunctionPermissions } from './iam';
import { createMonitoring } from './monitoring';
import { applyNagSuppressions } from './nag';
import { BedrockGatewayProps, resolveProps } from './props';
import { createStorage } from './storage';

export class BedrockGateway extends Construct {
  /** The REST API stage's invoke URL (the template's ApiUrl output). */
  public readonly apiUrl: string;
  /** POST here, signed with SigV4 (InvokeUrl). */
  public readonly invokeUrl: string;
  /** An OpenAI client's base_url, a tenant key as its api_key (OpenAiBaseUrl). */
  public readonly openAiBaseUrl: string;
  /** The batch routes (BatchesUrl). */
  public readonly batchesUrl: string;
  /** GET /v1/capacity (CapacityUrl). */
  public readonly capacityUrl: string;
  /** The CloudWatch dashboard (DashboardUrl). */
  public readonly dashboardUrl: string;

  public readonly cacheTable: dynamodb.ITable;
  public readonly deferredTable: dynamodb.ITable;
  public readonly tenantKeysTable: dynamodb.ITable;
  public readonly spendTable: dynamodb.ITable;
  public readonly batchTable: dynamodb.ITable;
  public readonly routingTable: dynamodb.ITable;
  public readonly metricsStateTable: dynamodb.ITable;
  public readonly batchBucket: s3.IBucket;
  public readonly batchDeadLetterQueue: sqs.IQueue;
  public readonly batchWorkQueue: sqs.IQueue;
  /** The alarms' topic: the one passed in, or the gateway's own (AlarmTopicArn). */
  public readonly alarmTopic: sns.ITopic;
  /** Attach to a role tagged bgw-tenant=<tenant> (BatchUploadWriterPolicyArn). */
  public readonly batchUploadWriterPolicy: iam.IManagedPolicy;
  public readonly restApi: apigw.IRestApi;
  public readonly httpApi: apigwv2.IHttpApi;
  public readonly functions: Functions;

  /** Table names (CacheTableName, TenantKeysTableName, …) */
  public readonly cacheTableName: string;
  public readonly tenantKeysTableName: string;
  public readonly spendTableName: string;
  public readonly routingTableName: string;
  public readonly metricsStateTableName: string;
  public readonly batchBucketName: string;

  constructor(scope: Construct, id: string, props: BedrockGatewayProps = {}) {
    super(scope, id);
    const p = resolveProps(props);
    const name = props.name ?? Aws.STACK_NAME;

    const storage = createStorage(this, p, name);
    const batchServiceRole = createBatchServiceRole(this, storage);
    const fns = createFunctions(this, p, name, storage, batchServiceRole);
    grantFunctionPermissions(this, p, name, storage, fns, batchServiceRole);
    this.batchUploadWriterPolicy = createBatchUploadWriterPolicy(this, p, storage);
    createTriggers(this, storage, fns);
    const apis = createApis(this, p, name, fns);
    const monitoring = createMonitoring(this, p, name, fns);
    applyNagSuppressions(this, p);

    for (const [key, value] of Object.entries(props.tags ?? {})) {
      Tags.of(this).add(key, value);
    }

    this.apiUrl = apis.apiUrl;
    this.invokeUrl = `${apis.apiUrl}/v1/invoke`;
    this.openAiBaseUrl = `${apis.apiUrl}/openai/v1`;
    this.batchesUrl = `${apis.httpApiUrl}/v1/batches`;
    this.capacityUrl = `${apis.httpApiUrl}/v1/capacity`;
    this.dashboardUrl = monitoring.dashboardUrl;
    this.restApi = apis.restApi;
    this.httpApi = apis.httpApi;
    this.alarmTopic = monitoring.alarmTopic;
    this.functions = fns;
    this.cacheTable = storage.cacheTable;
    this.deferredTable = storage.deferredTable;
    this.tenantKeysTable = storage.tenantKeysTable;
    this.spendTable = storage.spendTable;
    this.batchTable = storage.batchTable;
    this.routingTable = storage.routingTable;
    this.metricsStateTable = storage.metricsStateTable;
    this.batchBucket = storage.batchBucket;
    this.batchDeadLetterQueue = storage.batchDeadLetterQueue;
    this.batchWorkQueue = storage.batchWorkQueue;
    this.cacheTableName = storage.cacheTable.tableName;
    this.tenantKeysTableName = storage.tenantKeysTable.tableName;
    this.spendTableName = storage.spendTable.tableName;
    this.routingTableName = storage.routingTable.tableName;
    this.metricsStateTableName = storage.metricsStateTable.tableName;
    this.batchBucketName = storage.batchBucket.bucketName;
  }
}
