//! Ids of the resources the control plane creates (batch jobs, Provisioned Throughputs).

use chrono::Utc;
use sha2::{Digest, Sha256};

/// Twelve lowercase alphanumerics, as Bedrock's job and Provisioned Throughput ids, from the
/// creation order, the clock and the process (`salt` tells one kind of resource from another),
/// drawn again while `taken` says the id is in use.
pub fn new_id(salt: &str, seq: u64, taken: impl Fn(&str) -> bool) -> String {
    let mut id = draw(salt, seq);
    while taken(&id) {
        id = draw(salt, seq ^ u64::from(id.as_bytes()[0]));
    }
    id
}

fn draw(salt: &str, seq: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let digest = Sha256::digest(format!("{salt}{seq}:{nanos}:{}", std::process::id()));
    digest
        .iter()
        .take(12)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}
