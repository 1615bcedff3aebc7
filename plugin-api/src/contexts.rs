//! One shape for "where does this activate most": a top-activating token with the text around it.
//! act-stats (per neuron), sae (per latent) and snmf (per feature) all write their top tokens as
//! [`TopContext`]s, so one reader, one viewer, serves them all.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model;

/// A token where a neuron, latent or feature activates strongly, in its context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopContext {
    /// The activation (or coefficient) at the token.
    pub value: f32,
    /// The token's text, as the tokenizer decodes it alone.
    pub token: String,
    /// The token's id in the model's vocabulary.
    pub token_id: u32,
    /// The text of the tokens just before it in the same sequence (at most the window asked for).
    pub before: String,
    /// The text of the tokens just after it in the same sequence (at most the window asked for).
    pub after: String,
    /// The row of the dataset the token is in, counting from 0.
    pub sequence: u64,
    /// The token's position in that row, counting from 0.
    pub position: u32,
}

/// The ranges of `window` tokens before and after `position` in a sequence of `len` tokens:
/// `(start..position, position + 1..end)`.
pub fn window_around(
    len: usize,
    position: usize,
    window: usize,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let start = position.saturating_sub(window);
    let end = position.saturating_add(1).saturating_add(window).min(len);
    (start..position, (position + 1).min(end)..end)
}

impl TopContext {
    /// Decodes a context from its parts: the token ids before the activating token, its id, and the
    /// ids after it (each side already cut to the window wanted).
    pub fn decode(
        value: f32,
        sequence: u64,
        position: u32,
        before: &[u32],
        token_id: u32,
        after: &[u32],
    ) -> Result<TopContext> {
        Ok(TopContext {
            value,
            token: model::decode(&[token_id])?,
            token_id,
            before: model::decode(before)?,
            after: model::decode(after)?,
            sequence,
            position,
        })
    }

    /// The context of the token at `position` of dataset row `sequence`, whose token ids are
    /// `tokens`, with up to `window` tokens of text on each side.
    pub fn in_sequence(
        value: f32,
        sequence: u64,
        tokens: &[u32],
        position: usize,
        window: usize,
    ) -> Result<TopContext> {
        let (before, after) = window_around(tokens.len(), position, window);
        Self::decode(
            value,
            sequence,
            position as u32,
            &tokens[before],
            tokens[position],
            &tokens[after],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_stop_at_the_sequence_ends() {
        assert_eq!(window_around(10, 5, 2), (3..5, 6..8));
        assert_eq!(window_around(10, 0, 3), (0..0, 1..4));
        assert_eq!(window_around(10, 9, 3), (6..9, 10..10));
        assert_eq!(window_around(1, 0, 8), (0..0, 1..1));
        assert_eq!(window_around(10, 4, 0), (4..4, 5..5));
    }

    #[test]
    fn serializes_with_the_documented_keys() {
        let c = TopContext {
            value: 1.5,
            token: " cat".into(),
            token_id: 3797,
            before: "the".into(),
            after: " sat".into(),
            sequence: 4,
            position: 7,
        };
        let v = serde_json::to_value(&c).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "after", "before", "position", "sequence", "token", "token_id", "value"
            ]
        );
        assert_eq!(serde_json::from_value::<TopContext>(v).unwrap(), c);
    }
}
