//! Byte-level BPE tokenizer built from GGUF metadata.
//!
//! The GGUF file carries everything needed: the vocabulary (`tokenizer.ggml.tokens`), the merge
//! rules (`tokenizer.ggml.merges`), the token types (`tokenizer.ggml.token_type`, 3 = control)
//! and the name of the pre-tokenizer (`tokenizer.ggml.pre`). From those we build a
//! [`tokenizers::Tokenizer`] (BPE model + pre-tokenizers) that reproduces llama.cpp's
//! tokenization, plus a flat table of every token's raw bytes for decoding and streaming.
//!
//! Control tokens (`<|im_start|>`, …) are registered as special added tokens. Whether they are
//! recognised inside a text is decided per call: [`Tokenizer::encode`] splits the text on
//! control-token strings itself (the way llama.cpp does: longest token first) when
//! `parse_control` is true, and otherwise hands the whole text to the BPE pipeline, where they
//! are ordinary text. [`Tokenizer::encode_with_plain_spans`] does both in one text: control
//! tokens are parsed except where they would overlap given byte ranges (a chat's message
//! texts), which stay ordinary text.

use std::ops::Range;

use edge_llm_kernel::gguf::Gguf;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

/// GGUF token type of a normal token.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
/// GGUF token type of a control token (`<|im_start|>`, `<|endoftext|>`, …).
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of a user-defined token (always parsed in text, decoded verbatim).
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Token strings that end a turn when present in the vocabulary.
const END_OF_TURN_STRINGS: [&str; 3] = ["<|endoftext|>", "<|im_end|>", "<|eot_id|>"];

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

/// The pre-tokenizer selected by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// SmolLM: every digit on its own, then the GPT-2 regex.
    SmolLm,
    /// GPT-2: the GPT-2 regex alone.
    Gpt2,
}

impl PreTokenizerKind {
    /// Maps a `tokenizer.ggml.pre` value to a supported kind.
    pub fn from_gguf_name(name: &str) -> Result<Self, TokenizerError> {
        match name {
            "smollm" => Ok(Self::SmolLm),
            "gpt2" | "gpt-2" => Ok(Self::Gpt2),
            other => Err(TokenizerError::Unsupported(format!(
                "tokenizer.ggml.pre = {other}"
            ))),
        }
    }

    fn build(self) -> PreTokenizerWrapper {
        let byte_level = ByteLevel::new(false, false, true);
        match self {
            Self::SmolLm => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(byte_level),
            ])),
            Self::Gpt2 => PreTokenizerWrapper::ByteLevel(byte_level),
        }
    }
}

/// Everything needed to build a [`Tokenizer`], independent of where it came from.
#[derive(Debug, Clone)]
pub struct VocabSpec {
    /// Token strings, indexed by id (byte-level alphabet for normal tokens).
    pub tokens: Vec<String>,
    /// GGUF token types, indexed by id (same length as `tokens`).
    pub token_types: Vec<i32>,
    /// Merge rules, `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// The pre-tokenizer.
    pub pre: PreTokenizerKind,
    /// Beginning-of-sequence id, if any.
    pub bos_id: Option<u32>,
    /// End-of-sequence id, if any.
    pub eos_id: Option<u32>,
    /// Explicit end-of-turn id (`tokenizer.ggml.eot_token_id`), if any.
    pub eot_id: Option<u32>,
    /// Whether [`Tokenizer::encode`] prepends the BOS token.
    pub add_bos: bool,
}

impl VocabSpec {
    /// Reads the tokenizer metadata of a GGUF file.
    ///
    /// Requires `tokenizer.ggml.model = "gpt2"` and a supported `tokenizer.ggml.pre`.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        let model = gguf
            .get_str("tokenizer.ggml.model")
            .map_err(|e| meta_err("tokenizer.ggml.model", &e))?;
        if model != "gpt2" {
            return Err(TokenizerError::Unsupported(format!(
                "tokenizer.ggml.model = {model} (only gpt2 byte-level BPE)"
            )));
        }
        let pre = match gguf.get("tokenizer.ggml.pre") {
            None => {
                return Err(TokenizerError::Unsupported(
                    "tokenizer.ggml.pre missing".into(),
                ))
            }
            Some(_) => gguf
                .get_str("tokenizer.ggml.pre")
                .map_err(|e| meta_err("tokenizer.ggml.pre", &e))?,
        };
        let pre = PreTokenizerKind::from_gguf_name(pre)?;
        let tokens = gguf
            .get_str_array("tokenizer.ggml.tokens")
            .map_err(|e| meta_err("tokenizer.ggml.tokens", &e))?
            .to_vec();
        let merges = gguf
            .get_str_array("tokenizer.ggml.merges")
            .map_err(|e| meta_err("tokenizer.ggml.merges", &e))?
            .to_vec();
        let token_types = match gguf.get("tokenizer.ggml.token_type") {
            None => vec![TOKEN_TYPE_NORMAL; tokens.len()],
            Some(_) => gguf
                .get_i32_array("tokenizer.ggml.token_type")
                .map_err(|e| meta_err("tokenizer.ggml.token_type", &e))?
                .to_vec(),
        };
        Ok(Self {
            tokens,
            token_types,
            merges,
            pre,
            bos_id: optional_u32(gguf, "tokenizer.ggml.bos_token_id")?,
            eos_id: optional_u32(gguf, "tokenizer.ggml.eos_token_id")?,
            eot_id: optional_u32(gguf, "tokenizer.ggml.eot_token_id")?,
            add_bos: optional_bool(gguf, "tokenizer.ggml.add_bos_token")?.unwrap_or(false),
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

/// A byte-level BPE tokenizer (GPT-2 family) with llama.cpp-compatible behaviour.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// All tokens' raw bytes, concatenated; token `i` is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    token_types: Vec<i32>,
    /// Control tokens as (text, id), longest text first (llama.cpp's matching order).
    controls: Vec<(String, u32)>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    eot_ids: Vec<u32>,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("controls", &self.controls.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("eot_ids", &self.eot_ids)
            .field("add_bos", &self.add_bos)
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
        let (bytes, offsets) = token_byte_table(&spec.tokens, &spec.token_types);
        let controls = control_tokens(&spec.tokens, &spec.token_types);
        let eot_ids = end_of_turn_ids(&spec, &controls);
        let inner = build_inner(&spec)?;
        Ok(Self {
            inner,
            bytes,
            offsets,
            token_types: spec.token_types,
            controls,
            bos_id: spec.bos_id,
            eos_id: spec.eos_id,
            eot_ids,
            add_bos: spec.add_bos,
        })
    }

    /// Tokenizes `text`. With `parse_control`, control-token strings in the text (for example
    /// `<|im_start|>`) become those tokens; otherwise they are tokenized as plain text. The BOS
    /// token is prepended only if the model asks for it (`tokenizer.ggml.add_bos_token`).
    pub fn encode(&self, text: &str, parse_control: bool) -> Result<Vec<u32>, TokenizerError> {
        if parse_control {
            self.encode_with_plain_spans(text, &[])
        } else {
            let mut ids = self.start_ids(text);
            self.encode_plain(text, &mut ids)?;
            Ok(ids)
        }
    }

    /// Tokenizes `text` with control-token strings parsed, except that a control-token string
    /// overlapping any of the byte ranges `plain` stays plain text (it is tokenized with the text
    /// around it, as if control tokens were not parsed there). A chat prompt uses this with its
    /// messages' texts as `plain`, so only the template's own text yields control tokens. With
    /// no ranges this is [`Tokenizer::encode`] with `parse_control`; the BOS rule is the same.
    pub fn encode_with_plain_spans(
        &self,
        text: &str,
        plain: &[Range<usize>],
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.start_ids(text);
        for piece in split_on_controls(text, &self.controls, plain) {
            match piece {
                Piece::Control(id) => ids.push(id),
                Piece::Text(range) => self.encode_plain(&text[range], &mut ids)?,
            }
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

    /// An id buffer for tokenizing `text`, holding BOS when the model asks for it.
    fn start_ids(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if let (true, Some(bos)) = (self.add_bos, self.bos_id) {
            ids.push(bos);
        }
        ids
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Backend {
                context: "encode",
                message: e.to_string(),
            })?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
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
        self.inner.token_to_id(token)
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

    /// Ids that end generation: EOS, the explicit EOT id, and `<|endoftext|>`, `<|im_end|>`,
    /// `<|eot_id|>` when they are control tokens of this vocabulary. Sorted, no duplicates.
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
    ] {
        if let Some(id) = id.filter(|&id| id as usize >= n) {
            return Err(TokenizerError::InvalidVocab(format!(
                "{name} id {id} outside the vocabulary (size {n})"
            )));
        }
    }
    Ok(())
}

/// Builds the `tokenizers` pipeline: BPE model, pre-tokenizer, added tokens.
fn build_inner(spec: &VocabSpec) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let vocab: Vocab = spec
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    if vocab.len() != spec.tokens.len() {
        return Err(TokenizerError::InvalidVocab(
            "duplicate token strings".into(),
        ));
    }
    let merges = parse_merges(&spec.merges)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| TokenizerError::Backend {
            context: "BPE build",
            message: e.to_string(),
        })?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(spec.pre.build()));
    tok.add_special_tokens(&added_tokens(spec, TOKEN_TYPE_CONTROL, true));
    tok.add_tokens(&added_tokens(spec, TOKEN_TYPE_USER_DEFINED, false));
    // Control tokens are split out by `split_on_controls` when asked; inside the pipeline they
    // are always plain text.
    tok.set_encode_special_tokens(true);
    Ok(tok)
}

fn added_tokens(spec: &VocabSpec, token_type: i32, special: bool) -> Vec<AddedToken> {
    spec.tokens
        .iter()
        .zip(&spec.token_types)
        .filter(|(_, &t)| t == token_type)
        .map(|(s, _)| AddedToken::from(s.clone(), special))
        .collect()
}

/// Splits `"left right"` merge lines at the first space after the first character.
fn parse_merges(lines: &[String]) -> Result<Vec<(String, String)>, TokenizerError> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let first = line.chars().next().map_or(0, char::len_utf8);
            match line[first..].find(' ') {
                Some(p) if first > 0 => {
                    let (a, b) = line.split_at(first + p);
                    Ok((a.to_owned(), b[1..].to_owned()))
                }
                _ => Err(TokenizerError::InvalidVocab(format!(
                    "merge {i} has no separator: {line:?}"
                ))),
            }
        })
        .collect()
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

fn end_of_turn_ids(spec: &VocabSpec, controls: &[(String, u32)]) -> Vec<u32> {
    let mut ids: Vec<u32> = spec.eos_id.into_iter().chain(spec.eot_id).collect();
    for (text, id) in controls {
        if END_OF_TURN_STRINGS.contains(&text.as_str()) {
            ids.push(*id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A piece of text after splitting on control tokens.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// A byte range of the text.
    Text(Range<usize>),
    Control(u32),
}

/// Splits text on control-token strings, longest token first (llama.cpp's order): each control
/// token in turn splits every remaining text fragment at all of its occurrences, except those
/// that overlap a range of `plain`.
fn split_on_controls(text: &str, controls: &[(String, u32)], plain: &[Range<usize>]) -> Vec<Piece> {
    let mut pieces = vec![Piece::Text(0..text.len())];
    for (needle, id) in controls {
        if !text.contains(needle.as_str()) {
            continue;
        }
        let mut next = Vec::with_capacity(pieces.len() + 2);
        for piece in pieces {
            match piece {
                Piece::Text(range) => split_one(text, range, needle, *id, plain, &mut next),
                control => next.push(control),
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
    needle: &str,
    id: u32,
    plain: &[Range<usize>],
    out: &mut Vec<Piece>,
) {
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
        out.push(Piece::Control(id));
        start = b;
        from = b;
    }
    if start < range.end {
        out.push(Piece::Text(start..range.end));
    }
}

/// Builds the concatenated raw-bytes table of every token.
fn token_byte_table(tokens: &[String], types: &[i32]) -> (Vec<u8>, Vec<u32>) {
    let decode = ByteLevelDecoder::new();
    let total: usize = tokens.iter().map(String::len).sum();
    let mut bytes = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    offsets.push(0u32);
    for (token, &ty) in tokens.iter().zip(types) {
        if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
            bytes.extend_from_slice(token.as_bytes());
        } else {
            decode.push_token(token, &mut bytes);
        }
        offsets.push(bytes.len() as u32);
    }
    (bytes, offsets)
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

    #[test]
    fn merges_split_at_first_separator() {
        let m = parse_merges(&["Ġ t".into(), "a b".into()]).unwrap_or_default();
        assert_eq!(m, vec![("Ġ".into(), "t".into()), ("a".into(), "b".into())]);
        assert!(parse_merges(&["ab".into()]).is_err());
    }

    #[test]
    fn control_split_longest_first() {
        let controls = vec![("<|a|><|b|>".to_string(), 5), ("<|a|>".to_string(), 1)];
        let pieces = split_on_controls("x<|a|><|b|>y<|a|>", &controls, &[]);
        assert_eq!(
            pieces,
            vec![
                Piece::Text(0..1),
                Piece::Control(5),
                Piece::Text(11..12),
                Piece::Control(1)
            ]
        );
    }

    #[test]
    fn control_split_skips_plain_ranges() {
        let controls = vec![("<|a|>".to_string(), 1)];
        let text = "<|a|>x<|a|>y<|a|>";
        // The middle occurrence lies in a plain range; the last one overlaps one.
        let pieces = split_on_controls(text, &controls, &[5..12, 13..14]);
        assert_eq!(pieces, vec![Piece::Control(1), Piece::Text(5..17)]);
        // An occurrence that only touches a plain range is parsed.
        let touching = [Range { start: 5, end: 6 }];
        let pieces = split_on_controls(text, &controls, &touching);
        assert_eq!(
            pieces,
            vec![
                Piece::Control(1),
                Piece::Text(5..6),
                Piece::Control(1),
                Piece::Text(11..12),
                Piece::Control(1)
            ]
        );
    }
}
