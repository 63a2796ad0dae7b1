// cdk-nag's AwsSolutions findings this stack keeps on purpose, each with its reason (the checkov
// reasons of infra/template.yaml where the same check exists there). A finding with no reason
// here fails `cdk synth`.
//
// IAM findings are acknowledged by walking the gateway's own policies after they are made: an
// AWS managed policy is acknowledged only if MANAGED_POLICIES names it, and a wildcard (a `*` in
// a resource or an action) only if a WILDCARDS entry matches it and every action of its statement.
// A permission added later with a new wildcard therefore needs a reason here before it synthesises.
import { Stack, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct, IConstruct } from 'constructs';
import { ResolvedProps } from './props';

const MANAGED_POLICIES: Record<string, string> = {
  'service-role/AWSLambdaBasicExecutionRole':
    "Lambda's basic execution role, which SAM gives every function too: CreateLogGroup, CreateLogStream and PutLogEvents, for the function's own log group",
  'AWSXrayWriteOnlyAccess':
    'Active tracing: SAM adds this policy for Tracing: Active; it writes trace segments and reads sampling rules, nothing else',
  'service-role/AWSLambdaSQSQueueExecutionRole':
    "The work queue's poller: SAM adds this policy for an SQS event (ReceiveMessage, DeleteMessage, GetQueueAttributes)",
  'service-role/AWSLambdaVPCAccessExecutionRole':
    'Functions in a VPC (the vpc prop): Lambda manages their network interfaces with this policy, which CDK attaches',
  'service-role/AmazonAPIGatewayPushToCloudWatchLogs':
    "API Gateway's account-wide CloudWatch Logs role, with the managed policy AWS documents for it (REST API access logs)",
};

interface Wildcard {
  /** The resource (or action, for `action: true`) as cdk-nag writes it. */
  readonly pattern: RegExp;
  /** Every action of the statement must be one of these (prefix match on a trailing `*`). */
  readonly actions: string[];
  readonly reason: string;
  readonly action?: boolean;
}

const WILDCARDS: Wildcard[] = [
  {
    pattern: /^\*$/,
    actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'bedrock:ListProvisionedModelThroughputs',
      'cloudwatch:GetMetricData', 'cloudwatch:ListMetrics', 'cloudwatch:PutMetricData'],
    reason: "These actions take no resource, so IAM cannot narrow them (PutMetricData is conditioned on the reports' namespace)",
  },
  {
    pattern: /^arn:<AWS::Partition>:bedrock:\*::foundation-model\/\*$/,
    actions: ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream', 'bedrock:CreateModelInvocationJob'],
    reason: "A cross-region inference profile routes to its foundation model in any of its Regions; allowed only through one of the tier profiles (bedrock:InferenceProfileArn condition), as in infra/template.yaml",
  },
  {
    pattern: /^arn:<AWS::Partition>:bedrock:<AWS::Region>::foundation-model\/\*$/,
    actions: ['bedrock:CreateProvisionedModelThroughput'],
    reason: "Creating Provisioned Throughput names its base model, any the plan lists; allowed only with this plan's bgw:plan tag and no other tag keys",
  },
  {
    pattern: /^arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:provisioned-model\/\*$/,
    actions: ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream', 'bedrock:GetProvisionedModelThroughput',
      'bedrock:ListTagsForResource', 'bedrock:CreateProvisionedModelThroughput', 'bedrock:TagResource',
      'bedrock:DeleteProvisionedModelThroughput'],
    reason: "Bedrock picks a Provisioned Throughput's id when it creates it: IAM cannot name it beforehand. Invoking, tagging and deleting are conditioned on this plan's bgw:plan tag; reading is read-only",
  },
  {
    pattern: /^arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:model-invocation-job\/\*$/,
    actions: ['bedrock:CreateModelInvocationJob', 'bedrock:TagResource', 'bedrock:GetModelInvocationJob',
      'bedrock:StopModelInvocationJob'],
    reason: "Bedrock picks a batch job's id when it creates it: IAM cannot name it beforehand",
  },
  {
    pattern: /^(<[A-Za-z0-9]+\.Arn>|arn:<AWS::Partition>:s3:::.*-batch-<AWS::AccountId>-<AWS::Region>)\/batch-(input|jobs|output|results|direct)\/\*$/,
    actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
    reason: 'Object keys are per batch and per job: the statement is narrowed to one prefix of the batch bucket',
  },
  {
    pattern: /^<[A-Za-z0-9]+\.Arn>\/openai-files\/\*$/,
    actions: ['s3:GetObject', 's3:PutObject'],
    reason: "OpenAI batch files are named by their file id, made when a tenant uploads one or a batch ends: the statement is narrowed to the batch bucket's openai-files/ prefix",
  },
  {
    pattern: /^arn:<AWS::Partition>:s3:::.*-batch-<AWS::AccountId>-<AWS::Region>\/batch-input\/tenant\/<aws:PrincipalTag\/bgw-tenant>\/\*$/,
    actions: ['s3:PutObject'],
    reason: "Uploads only under the caller's own tenant prefix, named by its bgw-tenant tag (BatchUploadWriterPolicy)",
  },
  {
    pattern: /^kms:(GenerateDataKey|ReEncrypt)\*$/,
    action: true,
    actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey*', 'kms:ReEncrypt*', 'kms:DescribeKey'],
    reason: 'DynamoDB, S3 and SQS ask KMS for GenerateDataKeyWithoutPlaintext and ReEncrypt variants on the caller\'s behalf; only on the given key, and only through those services (kms:ViaService)',
  },
];

export function applyNagSuppressions(gateway: Construct, p: ResolvedProps): void {
  const stack = Stack.of(gateway);
  for (const node of gateway.node.findAll()) {
    if (node instanceof iam.CfnRole) {
      const managed = stack.resolve(node.managedPolicyArns) as unknown[] | undefined;
      for (const arn of managed ?? []) {
        const rendered = render(arn);
        const name = rendered.replace(/^arn:<AWS::Partition>:iam::aws:policy\//, '');
        if (MANAGED_POLICIES[name]) {
          ack(node, `AwsSolutions-IAM4[Policy::${rendered}]`, MANAGED_POLICIES[name]);
        }
      }
      const inline = stack.resolve(node.policies) as { policyDocument: unknown }[] | undefined;
      for (const policy of inline ?? []) {
        acknowledgeWildcards(node, policy.policyDocument);
      }
    } else if (node instanceof iam.CfnPolicy || node instanceof iam.CfnManagedPolicy) {
      acknowledgeWildcards(node, stack.resolve(node.policyDocument));
    }
  }

  const restApi = gateway.node.tryFindChild('RestApi') as apigw.SpecRestApi | undefined;
  if (restApi) {
    Validations.of(restApi).acknowledge(
      {
        id: 'AwsSolutions::AwsSolutions-APIG2',
        reason: 'The function validates every request body itself and answers its own JSON errors (with the request id); a model in API Gateway would duplicate that schema',
      },
      {
        id: 'AwsSolutions::AwsSolutions-APIG6',
        reason: 'Execution logging would log request bodies (prompts); every request has a JSON access log line instead (requestId, caller, route, status, latencies, integration error) and an X-Ray trace',
      },
    );
    if (p.wafRateLimitPer5Minutes === 0) {
      Validations.of(restApi).acknowledge({
        id: 'AwsSolutions::AwsSolutions-APIG3',
        reason: 'A web ACL is optional (wafRateLimitPer5Minutes, about 6 USD a month): POST /v1/invoke requires SigV4 and the OpenAI-compatible routes a tenant key checked before any model is called, each route throttled by API Gateway',
      });
    }
  }
}

function acknowledgeWildcards(node: IConstruct, document: unknown): void {
  const statements = ((document as { Statement?: unknown[] })?.Statement ?? []) as Record<string, unknown>[];
  for (const statement of statements) {
    const actions = list(statement.Action).map(String);
    for (const resource of list(statement.Resource).map(render)) {
      if (resource.includes('*')) acknowledgeOne(node, resource, actions, false);
    }
    for (const action of actions) {
      if (action.includes('*')) acknowledgeOne(node, action, actions, true);
    }
  }
}

function acknowledgeOne(node: IConstruct, finding: string, actions: string[], isAction: boolean): void {
  const known = WILDCARDS.find((w) => Boolean(w.action) === isAction && w.pattern.test(finding)
    && actions.every((a) => w.actions.includes(a)));
  if (known) {
    ack(node, `AwsSolutions-IAM5[${isAction ? 'Action' : 'Resource'}::${finding}]`, known.reason);
  }
}

function ack(node: IConstruct, id: string, reason: string): void {
  Validations.of(node).acknowledge({ id: `AwsSolutions::${id}`, reason });
}

function list(value: unknown): unknown[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** A resolved value as cdk-nag writes it in a finding: Ref X as <X>, GetAtt X.Y as <X.Y>. */
function render(value: unknown): string {
  // ${aws:PrincipalTag/x}, a policy variable, as cdk-nag writes it too.
  if (typeof value === 'string') return value.replace(/\$\{([^}]+)\}/g, '<$1>');
  if (typeof value === 'number') return String(value);
  if (value && typeof value === 'object') {
    const [fn, arg] = Object.entries(value as Record<string, unknown>)[0] ?? [];
    if (fn === 'Ref') return `<${arg}>`;
    if (fn === 'Fn::GetAtt') return `<${(arg as string[]).join('.')}>`;
    if (fn === 'Fn::Join') {
      const [sep, parts] = arg as [string, unknown[]];
      return parts.map(render).join(sep);
    }
  }
  return JSON.stringify(value);
}
