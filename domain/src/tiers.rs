//! Choosing a model by the complexity of the conversation.

use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation;

use super::conversation::Conversation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Simple,
    Moderate,
    Complex,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Moderate => "moderate",
            Self::Complex => "complex",
        }
    }
}

pub const DEFAULT_COMPLEX_KEYWORDS: &[&str] = &[
    "analyze",
    "analyse",
    "analysis",
    "compare",
    "explain in detail",
    "分析",
    "比較",
    "詳しく説明",
];

/// Under `simple_max_words` words and no keyword: simple; under `moderate_max_words`: moderate;
/// else complex. Words are Unicode words, so Japanese text counts by its segments, not spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplexityRules {
    pub simple_max_words: usize,
    pub moderate_max_words: usize,
    /// Lower-cased.
    pub keywords: Vec<String>,
}

impl Default for ComplexityRules {
    fn default() -> Self {
        Self::new(50, 200, DEFAULT_COMPLEX_KEYWORDS.iter().copied())
    }
}

impl ComplexityRules {
    pub fn new<'a>(
        simple_max_words: usize,
        moderate_max_words: usize,
        keywords: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Self {
            simple_max_words,
            moderate_max_words,
            keywords: keywords.into_iter().map(str::to_lowercase).collect(),
        }
    }

    pub fn classify(&self, conversation: &Conversation) -> Tier {
        let mut words = 0;
        let mut has_keyword = false;
        for text in conversation.message_texts() {
            words += text.unicode_words().count();
            if !has_keyword {
                let lower = text.to_lowercase();
                has_keyword = self.keywords.iter().any(|k| lower.contains(k.as_str()));
            }
        }
        if words < self.simple_max_words && !has_keyword {
            Tier::Simple
        } else if words < self.moderate_max_words {
            Tier::Moderate
        } else {
            Tier::Complex
        }
    }
}

/// The model of each tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierModels {
    pub simple: String,
    pub moderate: String,
    pub complex: String,
}

// Current Claude models take on-demand calls only through a cross-region inference profile.
pub const DEFAULT_SIMPLE_MODEL: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
pub const DEFAULT_MODERATE_MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
pub const DEFAULT_COMPLEX_MODEL: &str = "us.anthropic.claude-opus-4-1-20250805-v1:0";

impl TierModels {
    pub fn model(&self, tier: Tier) -> &str {
        match tier {
            Tier::Simple => &self.simple,
            Tier::Moderate => &self.moderate,
            Tier::Complex => &self.complex,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ContentBlock, InferenceConfig, Message, Role};

    fn ask(text: &str) -> Conversation {
        Conversation {
            system: vec![],
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::text(text)],
            }],
            inference_config: InferenceConfig::default(),
            additional_model_request_fields: None,
            tool_config: None,
        }
    }

    fn words(n: usize) -> String {
        vec!["word"; n].join(" ")
    }

    #[test]
    fn word_counts_pick_the_tier() {
        let rules = ComplexityRules::default();
        assert_eq!(rules.classify(&ask(&words(49))), Tier::Simple);
        assert_eq!(rules.classify(&ask(&words(50))), Tier::Moderate);
        assert_eq!(rules.classify(&ask(&words(199))), Tier::Moderate);
        assert_eq!(rules.classify(&ask(&words(200))), Tier::Complex);
    }

    #[test]
    fn keywords_lift_a_short_prompt() {
        let rules = ComplexityRules::default();
        assert_eq!(rules.classify(&ask("Please ANALYZE this")), Tier::Moderate);
        assert_eq!(
            rules.classify(&ask("この文章を分析してください")),
            Tier::Moderate
        );
        assert_eq!(rules.classify(&ask("詳しく説明して")), Tier::Moderate);
        assert_eq!(rules.classify(&ask("こんにちは")), Tier::Simple);
        let custom = ComplexityRules::new(50, 200, ["refactor"]);
        assert_eq!(custom.classify(&ask("refactor this")), Tier::Moderate);
        assert_eq!(custom.classify(&ask("analyze this")), Tier::Simple);
    }
}
