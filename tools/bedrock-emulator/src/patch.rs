//! What the partial updates of the services' settings (`POST /_emulator/config`) share.

use serde::{Deserialize, Deserializer};

/// Tells a `null` (clear: `Some(None)`) from an absent field (keep: `None`); use with
/// `#[serde(default, deserialize_with = "set_or_clear")]`.
pub fn set_or_clear<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
