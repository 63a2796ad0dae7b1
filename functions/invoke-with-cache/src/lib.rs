//! invoke-with-cache: `POST /v1/invoke` and the OpenAI-compatible
//! `POST /openai/v1/chat/completions`, answered from a DynamoDB cache when possible, otherwise
//! by Bedrock Converse (or ConverseStream, streamed as server-sent events) on the chosen model
//! and capacity.
//!
//! The request path, in the order a request meets it ([`handler`] runs the steps):
//! [`caller`] (who is calling and what they may do), [`intake`] (reading the request),
//! [`limits`] (the tenant's rate and concurrency limits),
//! [`cache`] (the key, the claim and lease, storing), [`model_call`] (the model and spillover),
//! [`streaming`] (the stream pump), [`settle`] (cost and spend), [`report`] (log line and
//! metrics), [`respond`] (HTTP responses). [`deferred`] accepts and reads deferred requests; [`batch_api`] and [`files`] are OpenAI's
//! Batch API over them. The wire formats: [`request`] and [`openai`] read,
//! [`wire`], [`answered`] and [`sse`] write. [`app`] says what the function is made of.

pub mod answered;
pub mod app;
pub mod batch_api;
pub mod body;
pub mod cache;
pub mod caller;
pub mod config;
pub mod context;
pub mod deferred;
pub mod error;
pub mod files;
pub mod handler;
pub mod intake;
pub mod limits;
pub mod model_call;
pub mod openai;
pub mod report;
pub mod request;
pub mod respond;
pub mod settle;
pub mod sse;
pub mod streaming;
pub mod wire;

pub use app::{Adapters, App, Ports, Tenancy};
pub use body::ResponseBody;
pub use config::InvokeConfig;
