// The stack of the small app (bin/app.ts): one BedrockGateway and the SAM template's outputs.
import { CfnOutput, Stack, StackProps } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { BedrockGateway } from './gateway';
import { BedrockGatewayProps } from './props';

export interface BedrockGatewayStackProps extends StackProps {
  /** The gateway's props, or a function of the stack making them (for imports such as a key). */
  readonly gateway?: BedrockGatewayProps | ((stack: Stack) => BedrockGatewayProps);
}

export class BedrockGatewayStack extends Stack {
  public readonly gateway: BedrockGateway;

  constructor(scope: Construct, id: string, props: BedrockGatewayStackProps = {}) {
    super(scope, id, props);
    const gatewayProps = typeof props.gateway === 'function' ? props.gateway(this) : props.gateway;
    const gw = new BedrockGateway(this, 'Gateway', gatewayProps);
    this.gateway = gw;
    const out = (name: string, value: string, description?: string) =>
      new CfnOutput(this, name, { value, description });
    out('ApiUrl', gw.apiUrl, "Invoke URL of the REST API's stage; its invoke-with-cache routes stream for up to 15 minutes");
    out('InvokeUrl', gw.invokeUrl, 'POST here, signed with SigV4 (service execute-api); buffered JSON, or text/event-stream with "stream" true');
    out('OpenAiBaseUrl', gw.openAiBaseUrl, 'base_url of an OpenAI client, with a tenant key as its api_key (chat/completions, models)');
    out('CacheTableName', gw.cacheTableName, 'DynamoDB table holding cached answers');
    out('TenantKeysTableName', gw.tenantKeysTableName, "DynamoDB table of tenant keys (hashes only), for the key tool's TENANT_KEYS_TABLE_NAME");
    out('BatchUploadWriterPolicyArn', gw.batchUploadWriterPolicy.managedPolicyArn, 'Attach to a role tagged bgw-tenant=<tenant> so it may upload batch inputs under batch-input/tenant/<tenant>/ only');
    out('SpendTableName', gw.spendTableName, "DynamoDB table of spend per tenant and month, for the key tool's SPEND_TABLE_NAME");
    out('InvokeWithCacheFunctionName', gw.functions.invokeWithCache.functionName);
    out('BatchBucketName', gw.batchBucketName, 'Upload batch inputs under batch-input/; results land under batch-results/');
    out('BatchesUrl', gw.batchesUrl, 'POST batches here, GET /v1/batches/{batchId} for their state (SigV4, service execute-api)');
    out('RoutingTableName', gw.routingTableName, 'The routing table (one item, pk routing-table) - base model to live Provisioned Throughput ARNs');
    out('CapacityUrl', gw.capacityUrl, 'GET the plan\'s Provisioned Throughput, its cost and routes (SigV4, service execute-api)');
    out('DashboardUrl', gw.dashboardUrl, 'The CloudWatch dashboard of latency, tokens, cost, savings, cache hit rate, batch backlog and Provisioned Throughput');
    out('AlarmTopicArn', gw.alarmTopic.topicArn, 'SNS topic of the 5xx, throttle, Provisioned Throughput utilization, daily cost and publisher alarms');
    out('MetricsStateTableName', gw.metricsStateTableName, "DynamoDB table of metrics-publisher's watermark");
  }
}
