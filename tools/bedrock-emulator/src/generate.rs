//! Deterministic answers: the text is derived from a fingerprint of the request, and token
//! counts follow the rule of thumb of about four characters a token.

use sha2::{Digest, Sha256};

const VOCABULARY: &[&str] = &[
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

/// Tokens for a piece of text: about four characters a token, at least one.
pub fn tokens_for(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(4).max(1)).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub text: String,
    pub output_tokens: u32,
    /// Converse's stop reason: `end_turn`, `max_tokens` or `stop_sequence`.
    pub stop_reason: &'static str,
    /// The stop sequence that ended the answer, if one did.
    pub stop_sequence: Option<String>,
}

/// A small xorshift generator seeded from the request fingerprint.
struct WordStream(u64);

impl WordStream {
    fn next_index(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        usize::try_from(x % VOCABULARY.len() as u64).unwrap_or(0)
    }
}

/// Generates the answer for a request fingerprint (any bytes that identify the request).
pub fn generate(fingerprint: &[u8], max_tokens: u32, stop_sequences: &[String]) -> Generated {
    let digest = Sha256::digest(fingerprint);
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let seed = u64::from_le_bytes(seed) | 1;
    // Between 12 and 75 tokens when nothing caps the answer.
    let wanted_tokens = 12 + usize::from(digest[8]) % 64;
    let budget_chars = usize::try_from(max_tokens)
        .unwrap_or(usize::MAX)
        .saturating_mul(4);

    // Room for the closing full stop within the wanted length.
    let wanted_chars = wanted_tokens * 4 - 1;
    // Whole words up to the wanted length, so an answer that ends on its own ends on a word.
    let mut words = WordStream(seed);
    let mut text = String::with_capacity(wanted_chars + 16);
    loop {
        let word = VOCABULARY[words.next_index()];
        let separator = usize::from(!text.is_empty());
        if !text.is_empty() && text.len() + separator + word.len() > wanted_chars {
            break;
        }
        if separator == 1 {
            text.push(' ');
        }
        text.push_str(word);
    }
    let mut text = text[..1].to_uppercase() + &text[1..];

    let mut stop_reason = "end_turn";
    let mut stop_sequence = None;
    if let Some((at, sequence)) = stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at)
    {
        text.truncate(at);
        stop_reason = "stop_sequence";
        stop_sequence = Some(sequence.clone());
    }
    if text.len() + 1 > budget_chars {
        text.truncate(budget_chars);
        stop_reason = "max_tokens";
        stop_sequence = None;
    } else if stop_sequence.is_none() {
        text.push('.');
    }
    let output_tokens = tokens_for(text.len());
    Generated {
        text,
        output_tokens,
        stop_reason,
        stop_sequence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_fingerprint_same_answer_other_fingerprint_other_answer() {
        let a = generate(b"request one", 1000, &[]);
        assert_eq!(a, generate(b"request one", 1000, &[]));
        assert_ne!(a.text, generate(b"request two", 1000, &[]).text);
        assert_eq!(a.stop_reason, "end_turn");
    }

    #[test]
    fn max_tokens_caps_the_answer() {
        let capped = generate(b"request", 3, &[]);
        assert!(capped.output_tokens <= 3, "{capped:?}");
        assert_eq!(capped.stop_reason, "max_tokens");
        for fingerprint in 0u32..200 {
            let answer = generate(&fingerprint.to_le_bytes(), 40, &[]);
            assert!(answer.output_tokens <= 40, "{answer:?}");
        }
    }

    #[test]
    fn stop_sequence_cuts_the_answer() {
        let full = generate(b"request", 1000, &[]);
        let word = full.text.split(' ').nth(2).unwrap().to_owned();
        let cut = generate(b"request", 1000, std::slice::from_ref(&word));
        assert_eq!(cut.stop_reason, "stop_sequence");
        assert_eq!(cut.stop_sequence, Some(word));
        assert!(cut.text.len() < full.text.len());
    }

    #[test]
    fn about_four_characters_a_token() {
        assert_eq!(tokens_for(0), 1);
        assert_eq!(tokens_for(8), 2);
        assert_eq!(tokens_for(9), 3);
    }
}
