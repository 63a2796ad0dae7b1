//! The words deterministic answers are made of: the text of a generated answer and the string
//! values of a tool call's input.

use sha2::{Digest, Sha256};

/// Every word an answer may hold.
pub const VOCABULARY: &[&str] = &[
    "the",
    "model",
    "answer",
    "cache",
    "token",
    "request",
    "serverless",
    "latency",
    "cost",
    "bedrock",
    "lambda",
    "response",
    "prompt",
    "context",
    "stream",
    "batch",
    "region",
    "capacity",
    "throughput",
    "provisioned",
    "demand",
    "result",
    "record",
    "metric",
    "signal",
    "value",
    "quickly",
    "clearly",
    "because",
    "therefore",
    "however",
    "and",
    "with",
    "from",
    "into",
    "about",
    "each",
    "every",
    "first",
    "next",
    "then",
    "finally",
    "simple",
    "moderate",
    "complex",
    "careful",
    "useful",
    "steady",
    "bright",
    "calm",
    "plan",
    "table",
    "item",
    "key",
    "hash",
    "window",
    "schedule",
    "route",
    "tier",
    "usage",
    "price",
    "saving",
    "budget",
    "report",
];

/// A word of the vocabulary derived from any bytes (a tool input's string values).
pub fn word_for(seed: &[u8]) -> &'static str {
    let digest = Sha256::digest(seed);
    let index = (usize::from(digest[0]) << 8) | usize::from(digest[1]);
    VOCABULARY[index % VOCABULARY.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_derived_from_their_seed() {
        assert_eq!(word_for(b"a"), word_for(b"a"));
        assert!(VOCABULARY.contains(&word_for(b"b")));
        let distinct: std::collections::HashSet<_> = (0u8..50).map(|i| word_for(&[i])).collect();
        assert!(distinct.len() > 10);
    }
}
