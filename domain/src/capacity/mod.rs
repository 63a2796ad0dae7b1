//! Provisioned Throughput over time: the declared capacity plan (per base model: model units,
//! commitment and, for no-commitment capacity, an optional weekly window in a time zone), when
//! each capacity should exist, the routing table that tells invoke-with-cache where live
//! capacity is, and the decisions the capacity function executes to get from what exists to
//! what the plan wants. Pure: the clock, Bedrock's state and the stored table come in as values.
//!
//! The rules, in the order the capacity function applies them:
//!
//! - **Due**: capacity without a window is always due; windowed capacity is due from
//!   `lead_minutes` before its window opens until the window closes (the window read as the
//!   schedule policy reads it, [`Schedule`](crate::routing::Schedule), wall-clock times in its zone).
//! - **Ours**: a Provisioned Throughput is managed here when the routing table's records name
//!   it, when it carries the tag `bgw:plan` with this plan's name, or when it has no `bgw:plan`
//!   tag and the deterministic name of what it is (`bgw-<model-slug>-<units>u`). The last two are
//!   *adopted* (and tagged, so the invoking role's tag condition admits them). Anything else is
//!   left alone.
//! - **Create**: a due entry with no Provisioned Throughput of its model, units and commitment
//!   is created, under its deterministic name and a `clientRequestToken` derived from the plan
//!   and the window's opening, so repeated or concurrent runs create it once.
//! - **Route**: a model's routes are its planned, due, serving (`InService` or `Updating`)
//!   capacity, then any committed capacity of ours (paid for anyway), then, only while the
//!   planned one is not serving yet, the no-commitment capacity it replaces (blue/green).
//! - **Delete**: no-commitment capacity of ours that is not wanted any more is deleted once its
//!   route has been withdrawn, in a table write that succeeded, at least `drain` earlier (so
//!   instances that cached the old table have let go of it). Committed capacity is never
//!   deleted. A failed one is deleted at once (it never served).

mod actions;
mod observed;
mod plan;
mod prices;
mod reconcile;
mod table;
mod window;

pub use actions::*;
pub use observed::*;
pub use plan::*;
pub use prices::*;
pub use reconcile::*;
pub use table::*;
pub use window::*;

#[cfg(test)]
mod tests;
