// The two APIs (infra/template.yaml: RestApi and its permissions, web ACL and access logs,
// ApiGatewayAccount and its logs role; Api, the HTTP API of the batch and capacity routes).
import { Aws, RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { Functions } from './functions';
import { ResolvedProps } from './props';

const P = Aws.PARTITION;
const R = Aws.REGION;
const A = Aws.ACCOUNT_ID;

export interface Apis {
  readonly restApi: apigw.SpecRestApi;
  readonly httpApi: apigwv2.HttpApi;
  /** The REST API stage's invoke URL, https://ID.execute-api.REGION.amazonaws.com/api */
  readonly apiUrl: string;
  /** The HTTP API's URL (its $default stage). */
  readonly httpApiUrl: string;
}

// One JSON object a line; requestId is the id the function logs and puts in its errors.
const REST_ACCESS_LOG_FORMAT = [
  '{"requestId":"$context.requestId","extendedRequestId":"$context.extendedRequestId",',
  '"requestTime":"$context.requestTime","caller":"$context.identity.caller",',
  '"userArn":"$context.identity.userArn","accountId":"$context.identity.accountId",',
  '"sourceIp":"$context.identity.sourceIp","userAgent":"$context.identity.userAgent",',
  '"httpMethod":"$context.httpMethod","resourcePath":"$context.resourcePath",',
  '"status":"$context.status","responseLength":"$context.responseLength",',
  '"responseLatency":"$context.responseLatency","integrationLatency":"$context.integrationLatency",',
  '"integrationStatus":"$context.integration.status","integrationRequestId":"$context.integration.requestId",',
  '"integrationError":"$context.integration.error","errorMessage":"$context.error.message",',
  '"errorResponseType":"$context.error.responseType","xrayTraceId":"$context.xrayTraceId"}',
].join(' ');

const HTTP_ACCESS_LOG_FORMAT = [
  '{"requestId":"$context.requestId","requestTime":"$context.requestTime",',
  '"caller":"$context.identity.caller","userArn":"$context.identity.userArn",',
  '"accountId":"$context.identity.accountId","sourceIp":"$context.identity.sourceIp",',
  '"userAgent":"$context.identity.userAgent","routeKey":"$context.routeKey",',
  '"status":"$context.status","responseLength":"$context.responseLength",',
  '"responseLatency":"$context.responseLatency","integrationLatency":"$context.integrationLatency",',
  '"integrationStatus":"$context.integrationStatus","integrationRequestId":"$context.integration.requestId",',
  '"integrationErrorMessage":"$context.integrationErrorMessage","errorMessage":"$context.error.message",',
  '"errorResponseType":"$context.error.responseType","authorizerError":"$context.authorizer.error"}',
].join(' ');

export function createApis(scope: Construct, p: ResolvedProps, name: string, fns: Functions): Apis {
  const accessLogs = (id: string) => new logs.LogGroup(scope, id, {
    retention: p.logRetentionDays,
    encryptionKey: p.kmsKey,
    removalPolicy: RemovalPolicy.DESTROY,
  });

  // REST API stages refuse access logging until the Region's API Gateway account settings name
  // a CloudWatch Logs role. The setting is account-wide, so a role made here is retained on delete.
  let logsRoleArn: string;
  if (p.apiGatewayLogsRole) {
    logsRoleArn = p.apiGatewayLogsRole.roleArn;
  } else {
    const role = new iam.Role(scope, 'ApiGatewayLogsRole', {
      assumedBy: new iam.ServicePrincipal('apigateway.amazonaws.com'),
      managedPolicies: [
        iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AmazonAPIGatewayPushToCloudWatchLogs'),
      ],
    });
    role.applyRemovalPolicy(RemovalPolicy.RETAIN);
    logsRoleArn = role.roleArn;
  }
  const account = new apigw.CfnAccount(scope, 'ApiGatewayAccount', { cloudWatchRoleArn: logsRoleArn });

  // The client API: a REST API, the only kind that streams a function's response
  // (ResponseTransferMode STREAM, up to 15 minutes). POST /v1/invoke requires IAM (SigV4); the
  // OpenAI-compatible routes take no API Gateway authorization, since the function verifies
  // their bearer tenant keys itself. Regional: an edge-optimized endpoint cuts a stream idle for 30 s.
  const iwcArn = fns.invokeWithCache.functionArn;
  const streamed = {
    'type': 'aws_proxy',
    'httpMethod': 'POST',
    'uri': `arn:${P}:apigateway:${R}:lambda:path/2021-11-15/functions/${iwcArn}/response-streaming-invocations`,
    'responseTransferMode': 'STREAM',
    'timeoutInMillis': 900000,
    'passthroughBehavior': 'when_no_match',
  };
  const definition = {
    openapi: '3.0.1',
    info: { title: `${name}-client-api`, version: '1.0' },
    paths: {
      '/v1/invoke': {
        post: {
          'security': [{ sigv4: [] }],
          'responses': { 200: { description: 'JSON answer, or text/event-stream with "stream" true' } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/v1/deferred': {
        post: {
          'security': [{ sigv4: [] }],
          'responses': { 202: { description: "the deferred request's id and status" } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/v1/deferred/{id}': {
        get: {
          'security': [{ sigv4: [] }],
          'parameters': [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          'responses': { 200: { description: "the deferred request's status and, once answered, its answer" } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/openai/v1/chat/completions': {
        post: {
          'responses': { 200: { description: 'chat.completion, or chat.completion.chunk events with stream true' } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/openai/v1/models': {
        get: {
          'responses': { 200: { description: 'the models a tenant key may name' } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/openai/v1/files': {
        post: {
          'responses': { 200: { description: 'the File object of the upload (a multipart form of purpose batch and file)' } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/openai/v1/files/{file_id}': {
        get: {
          'parameters': [{ name: 'file_id', in: 'path', required: true, schema: { type: 'string' } }],
          'responses': { 200: { description: 'the File object' } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/openai/v1/files/{file_id}/content': {
        get: {
          'parameters': [{ name: 'file_id', in: 'path', required: true, schema: { type: 'string' } }],
          'responses': { 200: { description: "the file's bytes" } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/openai/v1/batches': {
        post: {
          'responses': { 200: { description: 'the Batch object' } },
          'x-amazon-apigateway-integration': streamed,
        },
        get: {
          'responses': { 200: { description: "the tenant's batches" } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/openai/v1/batches/{batch_id}': {
        get: {
          'parameters': [{ name: 'batch_id', in: 'path', required: true, schema: { type: 'string' } }],
          'responses': { 200: { description: 'the Batch object' } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
      '/openai/v1/batches/{batch_id}/cancel': {
        post: {
          'parameters': [{ name: 'batch_id', in: 'path', required: true, schema: { type: 'string' } }],
          'responses': { 200: { description: 'the Batch object, cancelling' } },
          'x-amazon-apigateway-integration': streamed,
        },
      },
    },
    components: {
      securitySchemes: {
        sigv4: { 'type': 'apiKey', 'name': 'Authorization', 'in': 'header', 'x-amazon-apigateway-authtype': 'awsSigv4' },
      },
    },
  };
  const tenantThrottle = { throttlingRateLimit: p.tenantRoutesRateLimit, throttlingBurstLimit: p.tenantRoutesBurstLimit };
  const iamThrottle = { throttlingRateLimit: p.invokeRateLimit, throttlingBurstLimit: p.invokeBurstLimit };
  const restApi = new apigw.SpecRestApi(scope, 'RestApi', {
    apiDefinition: apigw.ApiDefinition.fromInline(definition),
    restApiName: `${name}-client-api`,
    endpointTypes: [apigw.EndpointType.REGIONAL],
    cloudWatchRole: false,
    deployOptions: {
      stageName: 'api',
      tracingEnabled: true,
      accessLogDestination: new apigw.LogGroupLogDestination(accessLogs('RestApiAccessLogs')),
      accessLogFormat: apigw.AccessLogFormat.custom(REST_ACCESS_LOG_FORMAT),
      // Each method a throttling bucket of its own: the IAM route keeps its capacity whatever
      // the keyed routes receive.
      methodOptions: {
        '/v1/invoke/POST': iamThrottle,
        // Deferred requests are IAM routes too, with the invoke route's limits.
        '/v1/deferred/POST': iamThrottle,
        '/v1/deferred/{id}/GET': iamThrottle,
        '/openai/v1/chat/completions/POST': tenantThrottle,
        '/openai/v1/models/GET': tenantThrottle,
        // OpenAI's files and batches routes: the keyed routes' limits.
        '/openai/v1/files/POST': tenantThrottle,
        '/openai/v1/files/{file_id}/GET': tenantThrottle,
        '/openai/v1/files/{file_id}/content/GET': tenantThrottle,
        '/openai/v1/batches/POST': tenantThrottle,
        '/openai/v1/batches/GET': tenantThrottle,
        '/openai/v1/batches/{batch_id}/GET': tenantThrottle,
        '/openai/v1/batches/{batch_id}/cancel/POST': tenantThrottle,
      },
    },
  });
  const cfnRestApi = restApi.node.defaultChild as apigw.CfnRestApi;
  cfnRestApi.addResourceDependency(account);
  // SpecRestApi leaves Description to the definition; the template sets both.
  cfnRestApi.description = 'Bedrock inference toolkit - /v1/invoke (IAM) and the OpenAI-compatible /openai/v1 (tenant keys), streamed';
  // RestApi's own CfnOutput of its URL: the gateway gives it as a property (and the app as ApiUrl).
  restApi.node.tryRemoveChild('Endpoint');

  // API Gateway may invoke the function only through these routes of this API, in any stage.
  const restPermission = (id: string, route: string) =>
    new lambda.CfnPermission(scope, id, {
      action: 'lambda:InvokeFunction',
      functionName: fns.invokeWithCache.functionName,
      principal: 'apigateway.amazonaws.com',
      sourceAccount: A,
      sourceArn: `arn:${P}:execute-api:${R}:${A}:${restApi.restApiId}/*/${route}`,
    });
  restPermission('InvokeWithCacheInvokePermission', 'POST/v1/invoke');
  restPermission('InvokeWithCacheChatPermission', 'POST/openai/v1/chat/completions');
  restPermission('InvokeWithCacheDeferredPermission', 'POST/v1/deferred');
  restPermission('InvokeWithCacheDeferredStatusPermission', 'GET/v1/deferred/*');
  restPermission('InvokeWithCacheFilesPermission', 'POST/openai/v1/files');
  restPermission('InvokeWithCacheFilePermission', 'GET/openai/v1/files/*');
  restPermission('InvokeWithCacheFileContentPermission', 'GET/openai/v1/files/*/content');
  restPermission('InvokeWithCacheCreateBatchPermission', 'POST/openai/v1/batches');
  restPermission('InvokeWithCacheListBatchesPermission', 'GET/openai/v1/batches');
  restPermission('InvokeWithCacheBatchPermission', 'GET/openai/v1/batches/*');
  restPermission('InvokeWithCacheCancelBatchPermission', 'POST/openai/v1/batches/*/cancel');
  restPermission('InvokeWithCacheModelsPermission', 'GET/openai/v1/models');

  // Optional: an IP address flooding the keyed routes is blocked by WAF before API Gateway.
  if (p.wafRateLimitPer5Minutes > 0) {
    const webAcl = new wafv2.CfnWebACL(scope, 'ClientApiWebAcl', {
      name: `${name}-client-api`,
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: `${name}-client-api`, sampledRequestsEnabled: true },
      rules: [{
        name: 'keyed-routes-rate',
        priority: 0,
        action: { block: {} },
        statement: {
          rateBasedStatement: {
            limit: p.wafRateLimitPer5Minutes,
            aggregateKeyType: 'IP',
            scopeDownStatement: {
              byteMatchStatement: {
                fieldToMatch: { uriPath: {} },
                // The stage's name comes first on the execute-api host, not on a custom domain.
                positionalConstraint: 'CONTAINS',
                searchString: '/openai/v1/',
                textTransformations: [{ priority: 0, type: 'NONE' }],
              },
            },
          },
        },
        visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'keyed-routes-rate', sampledRequestsEnabled: true },
      }],
    });
    const association = new wafv2.CfnWebACLAssociation(scope, 'ClientApiWebAclAssociation', {
      resourceArn: `arn:${P}:apigateway:${R}::/restapis/${restApi.restApiId}/stages/api`,
      webAclArn: webAcl.attrArn,
    });
    association.node.addDependency(restApi.deploymentStage);
  }

  // The batch and capacity routes: an HTTP API, buffered, every route IAM-authorized.
  const httpApi = new apigwv2.HttpApi(scope, 'Api', {
    createDefaultStage: false,
    defaultAuthorizer: new HttpIamAuthorizer(),
  });
  new apigwv2.HttpStage(scope, 'ApiDefaultStage', {
    httpApi,
    stageName: '$default',
    autoDeploy: true,
    // Every route throttled alike, each route a bucket of its own.
    throttle: { rateLimit: p.batchApiRateLimit, burstLimit: p.batchApiBurstLimit },
    accessLogSettings: {
      destination: new apigwv2.LogGroupLogDestination(accessLogs('ApiAccessLogs')),
      format: apigw.AccessLogFormat.custom(HTTP_ACCESS_LOG_FORMAT),
    },
  });
  const route = (fn: lambda.IFunction, eventId: string, method: apigwv2.HttpMethod, path: string) => {
    httpApi.addRoutes({ path, methods: [method], integration: new LambdaProxyIntegration(fn) });
    // As SAM's HttpApi event: this route's method and path, any stage ({param} as *).
    new lambda.CfnPermission(scope, `${fn.node.id}${eventId}Permission`, {
      action: 'lambda:InvokeFunction',
      functionName: fn.functionName,
      principal: 'apigateway.amazonaws.com',
      sourceArn: `arn:${P}:execute-api:${R}:${A}:${httpApi.apiId}/*/${method}${path.replace(/\{[^}]+\}/g, '*')}`,
    });
  };
  route(fns.batchSubmit, 'Submit', apigwv2.HttpMethod.POST, '/v1/batches');
  route(fns.batchStatus, 'Status', apigwv2.HttpMethod.GET, '/v1/batches/{batchId}');
  route(fns.batchStatus, 'Stop', apigwv2.HttpMethod.DELETE, '/v1/batches/{batchId}');
  route(fns.batchStatus, 'List', apigwv2.HttpMethod.GET, '/v1/batches');
  route(fns.batchStatus, 'Results', apigwv2.HttpMethod.GET, '/v1/batches/{batchId}/results');
  route(fns.capacity, 'Capacity', apigwv2.HttpMethod.GET, '/v1/capacity');

  return {
    restApi,
    httpApi,
    apiUrl: `https://${restApi.restApiId}.execute-api.${R}.${Aws.URL_SUFFIX}/${restApi.deploymentStage.stageName}`,
    httpApiUrl: `https://${httpApi.apiId}.execute-api.${R}.${Aws.URL_SUFFIX}`,
  };
}

/**
 * A Lambda proxy integration (payload 2.0) that grants nothing itself: each route's permission
 * is made beside it, scoped to its method and path as SAM scopes it.
 */
class LambdaProxyIntegration extends apigwv2.HttpRouteIntegration {
  constructor(private readonly fn: lambda.IFunction) {
    super(`${fn.node.id}Integration`);
  }

  bind(): apigwv2.HttpRouteIntegrationConfig {
    return {
      type: apigwv2.HttpIntegrationType.AWS_PROXY,
      uri: this.fn.functionArn,
      payloadFormatVersion: apigwv2.PayloadFormatVersion.VERSION_2_0,
    };
  }
}
