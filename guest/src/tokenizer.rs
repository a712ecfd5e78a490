//! Tokenizers built from GGUF metadata, token for token what llama.cpp makes of the same file.
//!
//! The GGUF file carries everything needed: the algorithm (`tokenizer.ggml.model`), the
//! vocabulary (`tokenizer.ggml.tokens`), merge rules (`tokenizer.ggml.merges`) or scores
//! (`tokenizer.ggml.scores`), the token types (`tokenizer.ggml.token_type`: 3 = control,
//! 4 = user-defined, 6 = byte), the pre-tokenizer's name (`tokenizer.ggml.pre`) and the BOS/EOS
//! rules. Two algorithms are supported:
//!
//! - byte-level BPE (`gpt2`): the pre-tokenizer that `tokenizer.ggml.pre` names (the
//!   `tokenizers` crate's, see [`PreTokenizerKind`]) splits the text into words, which [`bpe`]
//!   merges; also Gemma 4's raw UTF-8 BPE (`gemma4`), with `▁` for spaces and `<0xXX>` byte
//!   fallback;
//! - SentencePiece-style (`llama`: Llama 2, Mistral, Phi-3, …): score-ordered merges with
//!   `<0xXX>` byte fallback and the space prefix rule (`tokenizer.ggml.add_space_prefix`),
//!   in [`spm`].
//!
//! Beside the model there is a flat table of every token's raw bytes for decoding and
//! streaming.
//!
//! Control and user-defined tokens are split out of a text before the model sees it (the way
//! llama.cpp does: longest token first). User-defined tokens always are; whether control tokens
//! are is decided per call: [`Tokenizer::encode`] parses them when `parse_control` is true, and
//! otherwise they are ordinary text. [`Tokenizer::encode_with_plain_spans`] does both in one
//! text: control tokens are parsed except where they would overlap given byte ranges (a chat's
//! message texts), which stay ordinary text.

mod bpe;
mod pre;
mod spm;

use std::ops::Range;

use edge_llm_kernel::gguf::{Gguf, MetadataArray, MetadataValue};
use tokenizers::{
    OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, PreTokenizerWrapper,
};

pub use pre::PreTokenizerKind;

/// GGUF token type of a normal token.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
/// GGUF token type of a control token (`<|im_start|>`, `<|endoftext|>`, …).
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of a user-defined token (always parsed in text, decoded verbatim).
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;
/// GGUF token type of the unknown token (`<unk>`; parsed in text like a control token).
pub const TOKEN_TYPE_UNKNOWN: i32 = 2;
/// GGUF token type of a byte token (`<0xXX>`, SentencePiece-style vocabularies).
pub const TOKEN_TYPE_BYTE: i32 = 6;

/// Token strings that end a turn when they are control or user-defined tokens of the
/// vocabulary (llama.cpp's end-of-generation list, for the families we tokenize).
const END_OF_TURN_STRINGS: [&str; 14] = [
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<EOT>",
    "_<EOT>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "<|return|>",
];

/// Errors from building or using a [`Tokenizer`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type.
    #[error("GGUF metadata `{key}`: {message}")]
    Metadata {
        /// The GGUF key.
        key: &'static str,
        /// What went wrong reading it.
        message: String,
    },
    /// The model's tokenizer kind is not supported.
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    /// The vocabulary or merges are inconsistent.
    #[error("invalid vocabulary: {0}")]
    InvalidVocab(String),
    /// The `tokenizers` crate failed to build or encode.
    #[error("tokenizer {context} failed: {message}")]
    Backend {
        /// What we were doing.
        context: &'static str,
        /// The underlying message.
        message: String,
    },
    /// A token id is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    UnknownToken {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
}

/// The tokenizer algorithm (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerModel {
    /// Byte-pair encoding with merge rules (`gpt2`, and Gemma 4's `gemma4`).
    Bpe,
    /// SentencePiece-style merges by token score (`llama`).
    Spm,
}

/// Everything needed to build a [`Tokenizer`], independent of where it came from.
#[derive(Debug, Clone)]
pub struct VocabSpec {
    /// The algorithm.
    pub model: TokenizerModel,
    /// Token strings, indexed by id (byte-level alphabet for normal tokens of byte-level BPE).
    pub tokens: Vec<String>,
    /// GGUF token types, indexed by id (same length as `tokens`).
    pub token_types: Vec<i32>,
    /// Merge rules, `"left right"`, highest priority first (BPE; empty otherwise).
    pub merges: Vec<String>,
    /// Token scores (SentencePiece-style; empty when the file has none: all equal).
    pub scores: Vec<f32>,
    /// The pre-tokenizer (BPE; [`PreTokenizerKind::Default`] otherwise).
    pub pre: PreTokenizerKind,
    /// Beginning-of-sequence id, if any.
    pub bos_id: Option<u32>,
    /// End-of-sequence id, if any.
    pub eos_id: Option<u32>,
    /// Explicit end-of-turn id (`tokenizer.ggml.eot_token_id`), if any.
    pub eot_id: Option<u32>,
    /// The unknown token's id (`tokenizer.ggml.unknown_token_id`), if any.
    pub unk_id: Option<u32>,
    /// Whether [`Tokenizer::encode`] prepends the BOS token.
    pub add_bos: bool,
    /// Whether [`Tokenizer::encode`] appends the EOS token.
    pub add_eos: bool,
    /// SentencePiece-style: whether a text (at the start, or after a special token) gets a
    /// leading space.
    pub add_space_prefix: bool,
    /// Whether whitespace after a special token is dropped (llama.cpp's `rstrip` attribute,
    /// which it sets for Phi-3 by `general.name`; `<unk>`, `<s>` and `<|endoftext|>` keep it).
    pub rstrip_specials: bool,
}

impl VocabSpec {
    /// Reads the tokenizer metadata of a GGUF file.
    ///
    /// Supports `tokenizer.ggml.model` = `gpt2` (with a supported `tokenizer.ggml.pre`; none
    /// means llama.cpp's `default`), `gemma4` and `llama`. BOS/EOS and the space prefix follow
    /// the metadata, else llama.cpp's defaults for the kind.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        let model = gguf
            .get_str("tokenizer.ggml.model")
            .map_err(|e| meta_err("tokenizer.ggml.model", &e))?;
        let pre_name = match gguf.get("tokenizer.ggml.pre") {
            None => None,
            Some(_) => Some(
                gguf.get_str("tokenizer.ggml.pre")
                    .map_err(|e| meta_err("tokenizer.ggml.pre", &e))?,
            ),
        };
        let (model, pre) = match model {
            "gpt2" => (
                TokenizerModel::Bpe,
                pre_name.map_or(
                    Ok(PreTokenizerKind::Default),
                    PreTokenizerKind::from_gguf_name,
                )?,
            ),
            "gemma4" => (TokenizerModel::Bpe, PreTokenizerKind::Gemma4),
            "llama" => (TokenizerModel::Spm, PreTokenizerKind::Default),
            other => {
                let kind = match other {
                    "bert" => " (WordPiece)",
                    "t5" => " (Unigram)",
                    "rwkv" => " (RWKV greedy)",
                    _ => "",
                };
                return Err(TokenizerError::Unsupported(format!(
                    "tokenizer.ggml.model = {other}{kind}; supported: gpt2, gemma4, llama"
                )));
            }
        };
        let tokens = gguf
            .get_str_array("tokenizer.ggml.tokens")
            .map_err(|e| meta_err("tokenizer.ggml.tokens", &e))?
            .to_vec();
        let merges = match (model, gguf.get("tokenizer.ggml.merges")) {
            (TokenizerModel::Spm, None) => Vec::new(),
            _ => gguf
                .get_str_array("tokenizer.ggml.merges")
                .map_err(|e| meta_err("tokenizer.ggml.merges", &e))?
                .to_vec(),
        };
        let scores = match gguf.get("tokenizer.ggml.scores") {
            None => Vec::new(),
            Some(MetadataValue::Array(MetadataArray::F32(v))) => v.clone(),
            Some(v) => {
                return Err(TokenizerError::Metadata {
                    key: "tokenizer.ggml.scores",
                    message: format!("expected array<f32>, found {}", v.type_name()),
                })
            }
        };
        let token_types = match gguf.get("tokenizer.ggml.token_type") {
            None => vec![TOKEN_TYPE_NORMAL; tokens.len()],
            Some(_) => gguf
                .get_i32_array("tokenizer.ggml.token_type")
                .map_err(|e| meta_err("tokenizer.ggml.token_type", &e))?
                .to_vec(),
        };
        let spm = model == TokenizerModel::Spm;
        let add_bos = optional_bool(gguf, "tokenizer.ggml.add_bos_token")?
            .unwrap_or(spm || pre.default_add_bos());
        Ok(Self {
            model,
            tokens,
            token_types,
            merges,
            scores,
            pre,
            bos_id: optional_u32(gguf, "tokenizer.ggml.bos_token_id")?,
            eos_id: optional_u32(gguf, "tokenizer.ggml.eos_token_id")?,
            eot_id: optional_u32(gguf, "tokenizer.ggml.eot_token_id")?,
            unk_id: optional_u32(gguf, "tokenizer.ggml.unknown_token_id")?,
            // llama.cpp adds BOS to Gemma 4 whatever the file says.
            add_bos: add_bos || pre == PreTokenizerKind::Gemma4,
            add_eos: optional_bool(gguf, "tokenizer.ggml.add_eos_token")?.unwrap_or(false),
            add_space_prefix: optional_bool(gguf, "tokenizer.ggml.add_space_prefix")?
                .unwrap_or(spm),
            rstrip_specials: gguf.get_str("general.name").is_ok_and(|name| {
                let name = name.to_ascii_lowercase();
                name.contains("phi-3") || name.contains("phi3")
            }),
        })
    }
}

fn meta_err(key: &'static str, err: &impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Metadata {
        key,
        message: err.to_string(),
    }
}

fn optional_u32(gguf: &Gguf, key: &'static str) -> Result<Option<u32>, TokenizerError> {
    match gguf.get(key) {
        None => Ok(None),
        Some(_) => gguf.get_u32(key).map(Some).map_err(|e| meta_err(key, &e)),
    }
}

fn optional_bool(gguf: &Gguf, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match gguf.get(key) {
        None => Ok(None),
        Some(_) => gguf.get_bool(key).map(Some).map_err(|e| meta_err(key, &e)),
    }
}

/// The algorithm behind a [`Tokenizer`].
enum Model {
    /// Byte-level BPE: the pre-tokenizer's words, merged.
    ByteLevel(PreTokenizerWrapper, bpe::Bpe),
    /// Gemma 4's raw UTF-8 BPE: `▁`-escaped text in newline runs and the rest, merged.
    Raw(bpe::Bpe),
    /// SentencePiece-style.
    Spm(spm::Spm),
}

/// A token split out of a text before the model sees it.
#[derive(Debug, Clone)]
struct Special {
    text: String,
    id: u32,
    /// Control (or unknown) tokens are parsed only when asked; user-defined ones always.
    control: bool,
    /// Whitespace after the token is dropped.
    rstrip: bool,
}

/// A tokenizer with llama.cpp-compatible behaviour.
pub struct Tokenizer {
    model: Model,
    /// All tokens' raw bytes, concatenated; token `i` is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    token_types: Vec<i32>,
    /// Control tokens as (text, id), longest text first (llama.cpp's matching order).
    controls: Vec<(String, u32)>,
    /// Control, unknown and user-defined tokens, longest text first.
    specials: Vec<Special>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    eot_ids: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("controls", &self.controls.len())
            .field("specials", &self.specials.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("eot_ids", &self.eot_ids)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish()
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        Self::from_spec(VocabSpec::from_gguf(gguf)?)
    }

    /// Builds a tokenizer from an explicit vocabulary description.
    pub fn from_spec(spec: VocabSpec) -> Result<Self, TokenizerError> {
        validate_spec(&spec)?;
        let byte_level = spec.model == TokenizerModel::Bpe && spec.pre.byte_level();
        let (bytes, offsets) = token_byte_table(&spec.tokens, &spec.token_types, byte_level);
        let controls = control_tokens(&spec.tokens, &spec.token_types);
        let specials = special_tokens(&spec.tokens, &spec.token_types, spec.rstrip_specials);
        let eot_ids = end_of_turn_ids(&spec, &specials);
        let model = match spec.model {
            TokenizerModel::Spm => {
                Model::Spm(spm::Spm::new(&spec.tokens, &spec.scores, spec.unk_id))
            }
            TokenizerModel::Bpe => {
                let bpe = bpe::Bpe::new(
                    &spec.tokens,
                    &spec.merges,
                    spec.pre.ignore_merges(),
                    !byte_level,
                )?;
                match spec.pre.build()? {
                    Some(pre) => Model::ByteLevel(pre, bpe),
                    None => Model::Raw(bpe),
                }
            }
        };
        Ok(Self {
            model,
            bytes,
            offsets,
            token_types: spec.token_types,
            controls,
            specials,
            bos_id: spec.bos_id,
            eos_id: spec.eos_id,
            eot_ids,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
            add_space_prefix: spec.add_space_prefix,
        })
    }

    /// Tokenizes `text`. With `parse_control`, control-token strings in the text (for example
    /// `<|im_start|>`) become those tokens; otherwise they are tokenized as plain text. The BOS
    /// and EOS tokens are added only if the model asks for them
    /// (`tokenizer.ggml.add_bos_token`, `tokenizer.ggml.add_eos_token`).
    pub fn encode(&self, text: &str, parse_control: bool) -> Result<Vec<u32>, TokenizerError> {
        self.tokenize(text, true, parse_control)
    }

    /// llama.cpp's `llama_tokenize`: with `add_special`, BOS and EOS as the model asks for them;
    /// with `parse_special`, control tokens in the text become those tokens. User-defined
    /// tokens are always parsed.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.tokenize_spans(text, add_special, parse_special, &[])
    }

    /// Tokenizes `text` with control-token strings parsed, except that a control-token string
    /// overlapping any of the byte ranges `plain` stays plain text (it is tokenized with the text
    /// around it, as if control tokens were not parsed there). A chat prompt uses this with its
    /// messages' texts as `plain`, so only the template's own text yields control tokens. With
    /// no ranges this is [`Tokenizer::encode`] with `parse_control`, except that a text that
    /// begins with the BOS token (a chat template's `{{ bos_token }}`) does not get a second
    /// one, as in llama.cpp's chat path.
    pub fn encode_with_plain_spans(
        &self,
        text: &str,
        plain: &[Range<usize>],
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.tokenize_spans(text, true, true, plain)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos_id) {
            if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
                ids.remove(0);
            }
        }
        Ok(ids)
    }

    fn tokenize_spans(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        plain: &[Range<usize>],
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if let (true, true, Some(bos)) = (add_special, self.add_bos, self.bos_id) {
            ids.push(bos);
        }
        // SentencePiece-style: a text at the start or after a special token gets a space prefix.
        let mut after_special = true;
        for piece in split_on_specials(text, &self.specials, parse_special, plain) {
            match piece {
                Piece::Special(id) => {
                    ids.push(id);
                    after_special = true;
                }
                Piece::Text(range) => {
                    self.encode_plain(&text[range], after_special, &mut ids)?;
                    after_special = false;
                }
            }
        }
        if let (true, true, Some(eos)) = (add_special, self.add_eos, self.eos_id) {
            ids.push(eos);
        }
        Ok(ids)
    }

    /// A control token whose text occurs in `text` (the longest one), if any.
    pub fn control_text_in(&self, text: &str) -> Option<&str> {
        self.controls
            .iter()
            .map(|(s, _)| s.as_str())
            .find(|s| text.contains(s))
    }

    fn encode_plain(
        &self,
        text: &str,
        after_special: bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        match &self.model {
            Model::ByteLevel(pre, bpe) => {
                let mut words = PreTokenizedString::from(text);
                pre.pre_tokenize(&mut words)
                    .map_err(|e| TokenizerError::Backend {
                        context: "pre-tokenize",
                        message: e.to_string(),
                    })?;
                for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::None)
                {
                    bpe.encode_word(word, out);
                }
                Ok(())
            }
            Model::Spm(spm) => {
                let mut escaped = String::with_capacity(text.len() + text.len() / 2 + 3);
                if self.add_space_prefix && after_special {
                    escaped.push('▁');
                }
                push_escaped(text, &mut escaped);
                spm.encode(&escaped, out);
                Ok(())
            }
            Model::Raw(bpe) => {
                let mut escaped = String::with_capacity(text.len() + text.len() / 2);
                push_escaped(text, &mut escaped);
                // Newline runs and the text between them are words of their own; a newline run
                // that is a token is that token (llama.cpp's rule for Gemma 4).
                let mut rest = escaped.as_str();
                while !rest.is_empty() {
                    let newlines = rest.starts_with('\n');
                    let end = rest
                        .find(|c: char| (c == '\n') != newlines)
                        .unwrap_or(rest.len());
                    let (word, tail) = rest.split_at(end);
                    match bpe.token_id(word).filter(|_| newlines) {
                        Some(id) => out.push(id),
                        None => bpe.encode_word(word, out),
                    }
                    rest = tail;
                }
                Ok(())
            }
        }
    }

    /// Whether [`Tokenizer::encode`] appends EOS.
    pub fn adds_eos(&self) -> bool {
        self.add_eos
    }

    /// Decodes ids to text (invalid UTF-8 becomes U+FFFD). With `skip_control`, control tokens
    /// are left out; otherwise their text (e.g. `<|im_end|>`) is included.
    pub fn decode(&self, ids: &[u32], skip_control: bool) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids, skip_control)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Decodes ids to raw bytes (may be invalid UTF-8 when cut mid-character).
    pub fn decode_bytes(&self, ids: &[u32], skip_control: bool) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if id as usize >= self.vocab_size() {
                return Err(TokenizerError::UnknownToken {
                    id,
                    vocab_size: self.vocab_size(),
                });
            }
            if skip_control && self.is_control(id) {
                continue;
            }
            out.extend_from_slice(self.token_bytes(id));
        }
        Ok(out)
    }

    /// The raw bytes of one token (its text for control tokens); empty for unknown ids.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.vocab_size() {
            return &[];
        }
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Looks up the id of a token by its exact vocabulary string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.model {
            Model::ByteLevel(_, bpe) | Model::Raw(bpe) => bpe.token_id(token),
            Model::Spm(spm) => spm.token_id(token),
        }
    }

    /// The end-of-sequence id from the metadata, if any.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The beginning-of-sequence id from the metadata, if any.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether [`Tokenizer::encode`] prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids that end generation: EOS, the explicit EOT id, and the control or user-defined
    /// tokens of llama.cpp's end-of-generation list (`<|endoftext|>`, `<|im_end|>`,
    /// `<|eot_id|>`, `<|end|>`, `<end_of_turn>`, …). Sorted, no duplicates.
    pub fn eot_ids(&self) -> &[u32] {
        &self.eot_ids
    }

    /// Whether `id` ends generation (see [`Tokenizer::eot_ids`]).
    pub fn is_eot(&self, id: u32) -> bool {
        self.eot_ids.binary_search(&id).is_ok()
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether `id` is a control token (GGUF token type 3).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_types.get(id as usize) == Some(&TOKEN_TYPE_CONTROL)
    }

    /// The text of a token as stored in the vocabulary (control tokens: e.g. `<|im_end|>`),
    /// decoded from its bytes (lossy).
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }
}

fn validate_spec(spec: &VocabSpec) -> Result<(), TokenizerError> {
    if spec.tokens.is_empty() {
        return Err(TokenizerError::InvalidVocab("no tokens".into()));
    }
    if spec.tokens.len() > u32::MAX as usize / 2 {
        return Err(TokenizerError::InvalidVocab("too many tokens".into()));
    }
    if spec.token_types.len() != spec.tokens.len() {
        return Err(TokenizerError::InvalidVocab(format!(
            "{} token types for {} tokens",
            spec.token_types.len(),
            spec.tokens.len()
        )));
    }
    let n = spec.tokens.len();
    for (name, id) in [
        ("bos", spec.bos_id),
        ("eos", spec.eos_id),
        ("eot", spec.eot_id),
        ("unknown", spec.unk_id),
    ] {
        if let Some(id) = id.filter(|&id| id as usize >= n) {
            return Err(TokenizerError::InvalidVocab(format!(
                "{name} id {id} outside the vocabulary (size {n})"
            )));
        }
    }
    Ok(())
}

/// Appends `text` with every space replaced by `▁` (SentencePiece's whitespace escape).
fn push_escaped(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(i) = rest.find(' ') {
        out.push_str(&rest[..i]);
        out.push('▁');
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// Control tokens as (text, id), longest first, ties by id.
fn control_tokens(tokens: &[String], types: &[i32]) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (s, &t))| t == TOKEN_TYPE_CONTROL && !s.is_empty())
        .map(|(i, (s, _))| (s.clone(), i as u32))
        .collect();
    out.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
    out
}

/// Control, unknown and user-defined tokens, longest first, ties by id (llama.cpp's special
/// token cache); with `rstrip`, all but `<unk>`, `<s>` and `<|endoftext|>` drop the whitespace
/// after them.
fn special_tokens(tokens: &[String], types: &[i32], rstrip: bool) -> Vec<Special> {
    let mut out: Vec<Special> = tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (s, _))| !s.is_empty())
        .filter_map(|(i, (s, &t))| {
            let control = match t {
                TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN => true,
                TOKEN_TYPE_USER_DEFINED => false,
                _ => return None,
            };
            Some(Special {
                text: s.clone(),
                id: i as u32,
                control,
                rstrip: rstrip && !matches!(s.as_str(), "<unk>" | "<s>" | "<|endoftext|>"),
            })
        })
        .collect();
    out.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
    out
}

fn end_of_turn_ids(spec: &VocabSpec, specials: &[Special]) -> Vec<u32> {
    let mut ids: Vec<u32> = spec.eos_id.into_iter().chain(spec.eot_id).collect();
    for special in specials {
        let unknown = spec.token_types.get(special.id as usize) == Some(&TOKEN_TYPE_UNKNOWN);
        if !unknown && END_OF_TURN_STRINGS.contains(&special.text.as_str()) {
            ids.push(special.id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A piece of text after splitting on special tokens.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// A byte range of the text.
    Text(Range<usize>),
    Special(u32),
}

/// Splits text on special-token strings, longest token first (llama.cpp's order): each token in
/// turn splits every remaining text fragment at all of its occurrences. Control tokens take part
/// only with `parse_control`, and not where an occurrence overlaps a range of `plain`;
/// user-defined tokens always do.
fn split_on_specials(
    text: &str,
    specials: &[Special],
    parse_control: bool,
    plain: &[Range<usize>],
) -> Vec<Piece> {
    let mut pieces = vec![Piece::Text(0..text.len())];
    for special in specials {
        if special.control && !parse_control {
            continue;
        }
        if !text.contains(special.text.as_str()) {
            continue;
        }
        let plain = if special.control { plain } else { &[] };
        let mut next = Vec::with_capacity(pieces.len() + 2);
        for piece in pieces {
            match piece {
                Piece::Text(range) => split_one(text, range, special, plain, &mut next),
                token => next.push(token),
            }
        }
        pieces = next;
    }
    pieces.retain(|p| !matches!(p, Piece::Text(r) if r.is_empty()));
    pieces
}

fn split_one(
    text: &str,
    range: Range<usize>,
    special: &Special,
    plain: &[Range<usize>],
    out: &mut Vec<Piece>,
) {
    let needle = special.text.as_str();
    // A skipped occurrence resumes the search one character later (occurrences may overlap).
    let step = needle.chars().next().map_or(1, char::len_utf8);
    let mut start = range.start;
    let mut from = range.start;
    while let Some(pos) = text[from..range.end].find(needle) {
        let (a, b) = (from + pos, from + pos + needle.len());
        if plain.iter().any(|p| p.start < b && a < p.end) {
            from = a + step;
            continue;
        }
        if a > start {
            out.push(Piece::Text(start..a));
        }
        out.push(Piece::Special(special.id));
        start = b;
        if special.rstrip {
            // llama.cpp strips with C's isspace: ASCII whitespace only.
            start += text[b..range.end]
                .bytes()
                .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
                .count();
        }
        from = start;
    }
    if start < range.end {
        out.push(Piece::Text(start..range.end));
    }
}

/// Builds the concatenated raw-bytes table of every token: control and user-defined tokens are
/// their text; byte-level tokens map back through GPT-2's alphabet; otherwise (SentencePiece
/// style) `▁` is a space and `<0xXX>` byte tokens are their byte.
fn token_byte_table(tokens: &[String], types: &[i32], byte_level: bool) -> (Vec<u8>, Vec<u32>) {
    let decode = ByteLevelDecoder::new();
    let total: usize = tokens.iter().map(String::len).sum();
    let mut bytes = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    offsets.push(0u32);
    for (token, &ty) in tokens.iter().zip(types) {
        match ty {
            TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED => {
                bytes.extend_from_slice(token.as_bytes())
            }
            _ if byte_level => decode.push_token(token, &mut bytes),
            TOKEN_TYPE_BYTE if byte_token_value(token).is_some() => {
                bytes.extend(byte_token_value(token))
            }
            _ => {
                let mut rest = token.as_str();
                while let Some(i) = rest.find('▁') {
                    bytes.extend_from_slice(&rest.as_bytes()[..i]);
                    bytes.push(b' ');
                    rest = &rest[i + '▁'.len_utf8()..];
                }
                bytes.extend_from_slice(rest.as_bytes());
            }
        }
        offsets.push(bytes.len() as u32);
    }
    (bytes, offsets)
}

/// The byte of a `<0xXX>` token.
fn byte_token_value(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Inverse of GPT-2's byte → printable-character mapping.
struct ByteLevelDecoder {
    /// The bytes that GPT-2 maps to U+0100 + i, in order.
    shifted: Vec<u8>,
}

impl ByteLevelDecoder {
    fn new() -> Self {
        Self {
            shifted: (0..=255u8).filter(|&b| !is_printable_byte(b)).collect(),
        }
    }

    /// The byte a byte-level character stands for, if it is one.
    fn byte_of(&self, c: char) -> Option<u8> {
        let cp = c as u32;
        if cp < 256 && is_printable_byte(cp as u8) {
            return Some(cp as u8);
        }
        let idx = cp.checked_sub(256)? as usize;
        self.shifted.get(idx).copied()
    }

    /// Appends a token's bytes; characters outside the byte-level alphabet are kept as UTF-8.
    fn push_token(&self, token: &str, out: &mut Vec<u8>) {
        for c in token.chars() {
            match self.byte_of(c) {
                Some(b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
}

/// Bytes that GPT-2's byte-level alphabet represents by the same code point.
fn is_printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_roundtrip() {
        let d = ByteLevelDecoder::new();
        assert_eq!(d.shifted.len(), 68);
        assert_eq!(d.byte_of('Ġ'), Some(b' '));
        assert_eq!(d.byte_of('Ċ'), Some(b'\n'));
        assert_eq!(d.byte_of('a'), Some(b'a'));
        assert_eq!(d.byte_of('€'), None);
    }

    fn control(text: &str, id: u32) -> Special {
        Special {
            text: text.into(),
            id,
            control: true,
            rstrip: false,
        }
    }

    #[test]
    fn user_defined_tokens_split_even_in_plain_text() {
        let specials = vec![
            control("<|a|>", 1),
            Special {
                text: "<u>".into(),
                id: 2,
                control: false,
                rstrip: false,
            },
        ];
        let pieces = split_on_specials("<|a|>x<u>", &specials, false, &[]);
        assert_eq!(pieces, vec![Piece::Text(0..6), Piece::Special(2)]);
        let all = [Range { start: 0, end: 9 }];
        let pieces = split_on_specials("<|a|>x<u>", &specials, true, &all);
        assert_eq!(pieces, vec![Piece::Text(0..6), Piece::Special(2)]);
    }

    #[test]
    fn rstrip_drops_the_whitespace_after_a_token() {
        let specials = vec![Special {
            rstrip: true,
            ..control("<|end|>", 7)
        }];
        let pieces = split_on_specials("a <|end|>\n \tb<|end|> ", &specials, true, &[]);
        assert_eq!(
            pieces,
            vec![
                Piece::Text(0..2),
                Piece::Special(7),
                Piece::Text(12..13),
                Piece::Special(7)
            ]
        );
    }

    #[test]
    fn byte_tokens_and_escaped_spaces() {
        assert_eq!(byte_token_value("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_token_value("<0xZZ>"), None);
        let mut s = String::new();
        push_escaped(" a  b", &mut s);
        assert_eq!(s, "▁a▁▁b");
    }

    #[test]
    fn control_split_longest_first() {
        let controls = vec![control("<|a|><|b|>", 5), control("<|a|>", 1)];
        let pieces = split_on_specials("x<|a|><|b|>y<|a|>", &controls, true, &[]);
        assert_eq!(
            pieces,
            vec![
                Piece::Text(0..1),
                Piece::Special(5),
                Piece::Text(11..12),
                Piece::Special(1)
            ]
        );
    }

    #[test]
    fn control_split_skips_plain_ranges() {
        let controls = vec![control("<|a|>", 1)];
        let text = "<|a|>x<|a|>y<|a|>";
        // The middle occurrence lies in a plain range; the last one overlaps one.
        let pieces = split_on_specials(text, &controls, true, &[5..12, 13..14]);
        assert_eq!(pieces, vec![Piece::Special(1), Piece::Text(5..17)]);
        // An occurrence that only touches a plain range is parsed.
        let touching = [Range { start: 5, end: 6 }];
        let pieces = split_on_specials(text, &controls, true, &touching);
        assert_eq!(
            pieces,
            vec![
                Piece::Special(1),
                Piece::Text(5..6),
                Piece::Special(1),
                Piece::Text(11..12),
                Piece::Special(1)
            ]
        );
    }
}
