//! `tenant-keys`: what operators do with invoke-with-cache's tenant keys — create one (shown
//! once), list them with their tenant's spend this month, revoke one, change a budget, read a
//! tenant's spend.
//!
//! The commands are functions generic over the ports ([`domain::ports::TenantKeyStore`], [`domain::ports::SpendLedger`]), so
//! they are tested in memory; `main.rs` only parses, builds the DynamoDB adapters and prints
//! the [`Output`]. Nothing here ever prints a key's hash, and a key only when it is created.

mod cli;
mod commands;
mod error;
mod render;
mod run;
mod tables;
mod values;
mod views;

pub use cli::*;
pub use commands::*;
pub use error::*;
use render::*;
pub use run::*;
pub use tables::*;
pub use values::*;
pub use views::*;

#[cfg(test)]
mod tests;
