//! Implementations of the ports: AWS SDK adapters convert SDK types at this boundary.

#[cfg(feature = "dynamodb")]
pub mod batch_registry;
#[cfg(feature = "bedrock-runtime")]
pub mod bedrock;
#[cfg(feature = "bedrock")]
pub mod bedrock_batch;
#[cfg(feature = "bedrock")]
pub mod bedrock_capacity;
pub mod capacity_emf;
pub mod clock;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "dynamodb")]
pub mod dynamo_cache;
#[cfg(feature = "dynamodb")]
pub mod dynamo_deferred;
#[cfg(feature = "dynamodb")]
pub mod dynamo_limits;
#[cfg(feature = "dynamodb")]
pub mod dynamo_routing;
#[cfg(feature = "dynamodb")]
pub mod dynamo_tenancy;
pub mod emf;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
pub mod memory_cache;
pub mod memory_deferred;
pub mod memory_limits;
pub mod memory_routing;
pub mod memory_tenancy;
#[cfg(feature = "bedrock")]
pub mod provisioned_inventory;
#[cfg(feature = "dynamodb")]
pub mod report_state;
#[cfg(feature = "s3")]
pub mod s3_store;
#[cfg(any(feature = "bedrock", feature = "cloudwatch"))]
mod sdk_error;
#[cfg(feature = "sqs")]
pub mod sqs_queue;
