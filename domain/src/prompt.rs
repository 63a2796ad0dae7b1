//! Prompt optimisation: fewer input tokens for the same meaning.

/// What marks a text block cut by `contextLimitChars`.
pub const CUT_MARKER: &str = " […truncated]";

/// Collapses every run of whitespace to one space and trims the ends.
pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Keeps the first `limit` characters, marking the cut; shorter text is kept whole.
pub fn limit_chars(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        None => text.to_owned(),
        Some((cut_at, _)) => format!("{}{CUT_MARKER}", &text[..cut_at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_runs_of_whitespace() {
        assert_eq!(collapse_whitespace("  a \n\n b\t c  "), "a b c");
    }

    #[test]
    fn cuts_on_characters_not_bytes() {
        assert_eq!(
            limit_chars("日本語のテキスト", 3),
            format!("日本語{CUT_MARKER}")
        );
        assert_eq!(limit_chars("short", 10), "short");
        assert_eq!(limit_chars("exact", 5), "exact");
    }
}
