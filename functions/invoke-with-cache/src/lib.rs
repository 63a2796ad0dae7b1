//! invoke-with-cache: `POST /v1/invoke` and the OpenAI-compatible
//! `POST /openai/v1/chat/completions`, answered from a DynamoDB cache when possible, otherwise
//! by Bedrock Converse (or ConverseStream, streamed as server-sent events) on the chosen model
//! and capacity.

pub mod app;
pub mod body;
pub mod config;
pub mod error;
pub mod openai;
pub mod request;
pub mod wire;

pub use app::{App, Tenancy};
pub use body::ResponseBody;
pub use config::InvokeConfig;
