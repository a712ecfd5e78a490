//! Constrained decoding: before each token is sampled, every token that cannot continue a text
//! matching a JSON Schema or a grammar gets a logit of −∞. The masks come from `llguidance`
//! (an Earley parser over the grammar, with a lexer walking a trie of the vocabulary's bytes).
//!
//! 1. [`ConstraintSet`] is built once per model: the vocabulary as byte strings (control tokens
//!    marked as llguidance expects) and llguidance's parser factory over it.
//! 2. [`ConstraintSet::start`] compiles a [`ConstraintSpec`] into a [`Constraint`] for one
//!    generation; a schema or grammar that does not compile is an error naming why.
//! 3. Per token, [`Constraint::mask`] rules tokens out of the logits and
//!    [`Constraint::accept`] advances the parser past the sampled one; once the grammar is
//!    complete only the end-of-sequence token is allowed.
//! 4. Near the end of the token budget, [`Constraint::steer_to_close`] narrows the choice to
//!    closing tokens (`"`, `}`, `]`, end of sequence) where the grammar allows one, and to the
//!    most likely allowed token elsewhere, so that a text the sampler would otherwise leave
//!    unfinished at `max_tokens` (a runaway string or number) is closed instead.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

use crate::tokenizer::Tokenizer;

/// What a generation's text must match.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintSpec {
    /// A JSON value valid against this JSON Schema.
    JsonSchema(Value),
    /// Any JSON object.
    JsonObject,
    /// A grammar in llguidance's Lark syntax (rule `start` is the whole text).
    Lark(String),
    /// A grammar in llama.cpp's GBNF (rule `root` is the whole text).
    Gbnf(String),
}

/// Why a constraint cannot be built or followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The schema or grammar does not compile (unsupported keyword, syntax error, ...).
    #[error("the {what} cannot be used: {why}")]
    Invalid {
        /// `JSON schema` or `grammar`.
        what: &'static str,
        /// llguidance's reason.
        why: String,
    },
    /// The model has no end-of-sequence token to end a constrained text with.
    #[error("constrained generation needs a model with an end-of-sequence token")]
    NoEos,
    /// The parser failed while generating (a token it had allowed was refused).
    #[error("constrained decoding failed: {0}")]
    Failed(String),
}

/// The per-model part: the vocabulary's trie and the parser factory.
pub struct ConstraintSet {
    factory: ParserFactory,
    closers: Arc<Vec<u32>>,
}

impl ConstraintSet {
    /// Builds the vocabulary trie and the parser factory for `tokenizer`.
    pub fn new(tokenizer: &Tokenizer) -> Result<Self, ConstraintError> {
        let eos = tokenizer
            .eos_id()
            .or_else(|| tokenizer.eot_ids().first().copied())
            .ok_or(ConstraintError::NoEos)?;
        let words: Vec<Vec<u8>> = (0..tokenizer.vocab_size() as u32)
            .map(|id| {
                if tokenizer.is_control(id) {
                    // llguidance's mark for a special token: never produced by text.
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tokenizer.token_text(id).as_bytes());
                    w
                } else {
                    tokenizer.token_bytes(id).to_vec()
                }
            })
            .collect();
        let info = TokRxInfo::new(words.len() as u32, eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| ConstraintError::Invalid {
                what: "vocabulary",
                why: e.to_string(),
            })?;
        factory.quiet();
        // Tokens made only of the characters that end a JSON string, object or array.
        let mut closers: Vec<u32> = (0..tokenizer.vocab_size() as u32)
            .filter(|&id| {
                let bytes = tokenizer.token_bytes(id);
                !tokenizer.is_control(id)
                    && !bytes.is_empty()
                    && bytes.iter().all(|b| matches!(b, b'"' | b'}' | b']'))
            })
            .collect();
        closers.push(eos);
        Ok(Self {
            factory,
            closers: Arc::new(closers),
        })
    }

    /// Compiles `spec` for one generation.
    pub fn start(&self, spec: &ConstraintSpec) -> Result<Constraint, ConstraintError> {
        let (what, grammar) = match spec {
            ConstraintSpec::JsonSchema(schema) => ("JSON schema", json_grammar(schema.clone())),
            ConstraintSpec::JsonObject => ("JSON schema", json_grammar(json!({"type": "object"}))),
            ConstraintSpec::Lark(lark) => ("grammar", TopLevelGrammar::from_lark(lark.clone())),
            ConstraintSpec::Gbnf(gbnf) => {
                let lark = crate::gbnf::to_lark(gbnf).map_err(|e| ConstraintError::Invalid {
                    what: "grammar",
                    why: e.to_string(),
                })?;
                ("grammar", TopLevelGrammar::from_lark(lark))
            }
        };
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| ConstraintError::Invalid {
                what,
                why: e.to_string(),
            })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(why) = matcher.get_error() {
            return Err(ConstraintError::Invalid { what, why });
        }
        Ok(Constraint {
            matcher,
            closers: self.closers.clone(),
        })
    }
}

/// A schema compiled with compact separators and no free whitespace: the model cannot spend
/// its tokens on blank space, and every answer is the shortest spelling of its value.
fn json_grammar(mut schema: Value) -> TopLevelGrammar {
    if let Value::Object(o) = &mut schema {
        o.entry("x-guidance")
            .or_insert_with(|| json!({"whitespace_flexible": false}));
    }
    TopLevelGrammar::from_json_schema(schema)
}

/// One generation's parser state.
pub struct Constraint {
    matcher: Matcher,
    /// Closing tokens and end of sequence, for [`Constraint::steer_to_close`].
    closers: Arc<Vec<u32>>,
}

impl Constraint {
    /// Sets the logit of every token the grammar does not allow next to −∞ (ids past the
    /// vocabulary too). Once the grammar is complete, only end-of-sequence is allowed.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| ConstraintError::Failed(e.to_string()))?;
        let words = allowed.as_slice();
        for (i, chunk) in logits.chunks_mut(32).enumerate() {
            let word = words.get(i).copied().unwrap_or(0);
            if word == u32::MAX && chunk.len() == 32 {
                continue;
            }
            for (j, logit) in chunk.iter_mut().enumerate() {
                if (word >> j) & 1 == 0 {
                    *logit = f32::NEG_INFINITY;
                }
            }
        }
        Ok(())
    }

    /// On masked `logits`: keeps only the allowed closing tokens (end of sequence among them)
    /// if there is one, else only the most likely allowed token (lowest id on ties).
    pub fn steer_to_close(&self, logits: &mut [f32]) {
        let allowed = |id: u32| logits.get(id as usize).is_some_and(|l| l.is_finite());
        let keep: Vec<u32> = self
            .closers
            .iter()
            .copied()
            .filter(|&id| allowed(id))
            .collect();
        let keep = if keep.is_empty() {
            crate::sampling::greedy_argmax(logits).into_iter().collect()
        } else {
            keep
        };
        let kept: Vec<f32> = keep.iter().map(|&id| logits[id as usize]).collect();
        logits.fill(f32::NEG_INFINITY);
        for (&id, &l) in keep.iter().zip(&kept) {
            logits[id as usize] = l;
        }
    }

    /// Advances past the sampled `token`.
    pub fn accept(&mut self, token: u32) -> Result<(), ConstraintError> {
        if self.matcher.is_stopped() {
            // The grammar was complete and `token` is the end of sequence it allowed.
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| ConstraintError::Failed(e.to_string()))
    }
}
