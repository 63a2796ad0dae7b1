//! Implementations of the ports: AWS SDK adapters convert SDK types at this boundary.

pub mod bedrock;
pub mod clock;
pub mod dynamo_cache;
pub mod emf;
pub mod memory_cache;
