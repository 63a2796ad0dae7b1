//! invoke-with-cache: `POST /v1/invoke` answered from a DynamoDB cache when possible, otherwise
//! by Bedrock Converse on the chosen model and capacity.

pub mod app;
pub mod config;
pub mod error;
pub mod request;

pub use app::App;
pub use config::InvokeConfig;
