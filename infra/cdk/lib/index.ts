export { BedrockGateway } from './gateway';
export { BedrockGatewayProps, DEFAULTS, ServiceTier } from './props';
export { Functions } from './functions';
export { BedrockGatewayStack, BedrockGatewayStackProps } from './stack';
