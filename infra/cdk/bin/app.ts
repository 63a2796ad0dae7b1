#!/usr/bin/env node
// The small app: one stack holding one BedrockGateway with the SAM template's defaults, checked
// by cdk-nag's AwsSolutions pack. `cdk synth` needs no AWS credentials: the stack's environment
// is CDK_DEFAULT_ACCOUNT/REGION when the CLI has them, else a placeholder (nothing is looked up).
import { App, Validations } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { BedrockGatewayStack } from '../lib';

const app = new App();
// `cdk synth -c skipBundling=true`: build no function (RustFunction runs no cargo lambda), for a
// check of the template. The CLI refuses `-c aws:cdk:bundling-stacks=[]` (it reserves the aws:
// prefix), so the app sets that context itself: no stack then requires bundling.
if ([true, 'true'].includes(app.node.tryGetContext('skipBundling'))) {
  app.node.setContext('aws:cdk:bundling-stacks', []);
}
const stackName = app.node.tryGetContext('stackName') ?? 'bedrock-inference-toolkit';
// `-c architecture=x86_64` where only that Rust target is installed (the SAM template's
// Architecture parameter; arm64 by default).
const architecture = app.node.tryGetContext('architecture') === 'x86_64'
  ? lambda.Architecture.X86_64 : lambda.Architecture.ARM_64;
new BedrockGatewayStack(app, 'BedrockGateway', {
  stackName,
  env: {
    account: process.env.CDK_DEFAULT_ACCOUNT ?? '123456789012',
    region: process.env.CDK_DEFAULT_REGION ?? 'us-east-1',
  },
  description: 'Bedrock inference toolkit - cached, routed and observable Amazon Bedrock inference.',
  gateway: { architecture },
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
