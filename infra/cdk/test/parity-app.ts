#!/usr/bin/env node
// The parity check's second app (make cdk-check): a BedrockGateway with every option of the SAM
// template turned on, from the SAM parameter values in test/parity-full.json, so that
// scripts/cdk_parity.py compares it with the template translated for the same values (the KMS
// policies, the web ACL, the conditional statements). cdk-nag checks it like bin/app.ts.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Construct } from 'constructs';
import { BedrockGatewayProps, BedrockGatewayStack, DEFAULTS } from '../lib';

const app = new App();
if ([true, 'true'].includes(app.node.tryGetContext('skipBundling'))) {
  app.node.setContext('aws:cdk:bundling-stacks', []);
}
const parameters: Record<string, string> = JSON.parse(
  readFileSync(path.join(__dirname, 'parity-full.json'), 'utf8'));

new BedrockGatewayStack(app, 'BedrockGatewayFull', {
  stackName: 'bedrock-inference-toolkit',
  env: { account: '123456789012', region: 'us-east-1' },
  gateway: (stack) => propsFromSamParameters(stack, parameters),
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));

/** SAM parameter values as the construct's props (the names are the props' in PascalCase). */
function propsFromSamParameters(scope: Construct, values: Record<string, string>): BedrockGatewayProps {
  const props: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(values)) {
    const key = name[0].toLowerCase() + name.slice(1);
    if (name === 'KmsKeyArn') {
      props.kmsKey = kms.Key.fromKeyArn(scope, 'Key', value);
    } else if (name === 'ApiGatewayLogsRoleArn') {
      props.apiGatewayLogsRole = iam.Role.fromRoleArn(scope, 'ApiGatewayLogsRole', value);
    } else if (name === 'Architecture') {
      props.architecture = value === 'x86_64' ? lambda.Architecture.X86_64 : lambda.Architecture.ARM_64;
    } else if (name === 'AlarmEmail') {
      props.alarmEmail = value;
    } else {
      const like = (DEFAULTS as Record<string, unknown>)[key];
      if (like === undefined) throw new Error(`parity-full.json: no prop ${key} for ${name}`);
      props[key] = Array.isArray(like) ? value.split(',')
        : typeof like === 'number' ? Number(value)
          : typeof like === 'boolean' ? value === 'true'
            : value;
    }
  }
  return props as BedrockGatewayProps;
}
