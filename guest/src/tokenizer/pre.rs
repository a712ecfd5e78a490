//! Pre-tokenizers of byte-level BPE vocabularies, selected by `tokenizer.ggml.pre`.
//!
//! Each kind is the split rules of its model's `tokenizer.json` (what llama.cpp reproduces for
//! the same name): a sequence of regular expressions, each splitting every piece left by the one
//! before it into its matches and the text between them, then GPT-2's byte-to-character map.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use super::TokenizerError;

/// The pre-tokenizer selected by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// SmolLM, StarCoder, Refact, Command-R, CodeShell, EXAONE, Minerva: every digit on its own,
    /// then the GPT-2 regex.
    SmolLm,
    /// GPT-2, MPT, OLMo, Phi-2, JAIS, …: the GPT-2 regex alone.
    Gpt2,
    /// llama.cpp's `default` (a missing `tokenizer.ggml.pre` too): punctuation runs, the GPT-2
    /// regex, digit runs, then runs of three digits.
    Default,
    /// Llama 3 (`llama-bpe`, `llama3`, `falcon3`, `pixtral`, …): the Llama 3 regex (digits in
    /// groups of up to three); a word that is itself a token skips the merges.
    Llama3,
    /// DBRX and Smaug: the Llama 3 regex, with merges for every word.
    Dbrx,
    /// Qwen2, StableLM2, DeepSeek-R1-Qwen, Megrez, Hunyuan: like Llama 3 but one digit a piece.
    Qwen2,
    /// Qwen3.5: Qwen2's regex with combining marks kept with letters.
    Qwen35,
    /// DeepSeek LLM: newlines, Latin/Greek/Cyrillic… letter runs, ASCII and CJK punctuation runs,
    /// trailing whitespace, CJK runs, digit runs.
    DeepSeekLlm,
    /// DeepSeek Coder: newlines, letter runs, punctuation runs, CJK runs, single digits.
    DeepSeekCoder,
    /// Falcon: punctuation runs, the GPT-2 regex, runs of three digits.
    Falcon,
    /// ChatGLM4 (`chatglm-bpe`): the Llama 3 regex, merges for every word.
    ChatGlm4,
    /// GLM-4/5: the Llama 3 regex, a word that is itself a token skips the merges.
    Glm4,
    /// BLOOM, Poro, GPT-3 Finnish: runs of anything but whitespace and a few punctuation marks.
    Bloom,
    /// Viking: like BLOOM, then single digits.
    Viking,
    /// GPT-4o and Llama 4: the o200k regex (case-aware words, digits in threes).
    Gpt4o,
    /// DeepSeek V3/R1, Hunyuan dense, JoyAI, HY v4: digits in threes, CJK runs, then words with
    /// their marks, punctuation runs and whitespace.
    DeepSeekV3,
    /// Tekken (Mistral NeMo and later): the o200k-style case-aware words, single digits; a word
    /// that is itself a token skips the merges.
    Tekken,
    /// Seed-Coder: Qwen2's regex with newlines kept out of punctuation runs.
    SeedCoder,
    /// Gemma 4 (raw UTF-8 SentencePiece-style BPE): spaces become `▁`, the text splits only
    /// into newline runs and the rest, tokens are UTF-8 with `<0xXX>` byte fallback.
    Gemma4,
}

/// GPT-2's regex, as HF's `ByteLevel` pre-tokenizer applies it.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK_V3_CJK: &str = "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+";
const DEEPSEEK_V3_WORDS: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const BLOOM: &str = " ?[^(\\s|.,!?\u{2026}\u{3002}\u{ff0c}\u{3001}\u{964}\u{6d4}\u{60c})]+";
const CJK_RUNS: &str = "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+";
// Letters of the Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, … blocks.
const DEEPSEEK_LLM_LETTERS: &str = "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+";
const DEEPSEEK_LLM_PUNCT: &str =
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+";

/// One step of a pre-tokenizer sequence.
enum Step {
    /// Split on the matches of a regex, keeping them as pieces of their own.
    Regex(&'static str),
    /// HF's `Digits` pre-tokenizer: every digit alone (`true`) or digit runs.
    Digits(bool),
}

impl PreTokenizerKind {
    /// Maps a `tokenizer.ggml.pre` value to a supported kind.
    pub fn from_gguf_name(name: &str) -> Result<Self, TokenizerError> {
        Ok(match name {
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Self::SmolLm,
            "gpt2" | "gpt-2" | "mpt" | "olmo" | "phi-2" | "jais" | "jina-es" | "jina-de"
            | "gigachat" | "jina-v2-es" | "jina-v2-de" | "exaone4" | "trillion"
            | "granite-docling" => Self::Gpt2,
            "default" => Self::Default,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => Self::Llama3,
            "dbrx" | "smaug-bpe" => Self::Dbrx,
            "qwen2" | "stablelm2" | "deepseek-r1-qwen" | "megrez" | "hunyuan" | "kormo"
            | "f2llmv2" | "solar-open" => Self::Qwen2,
            "qwen35" => Self::Qwen35,
            "deepseek-llm" => Self::DeepSeekLlm,
            "deepseek-coder" => Self::DeepSeekCoder,
            "falcon" => Self::Falcon,
            "chatglm-bpe" => Self::ChatGlm4,
            "glm4" | "glm5" => Self::Glm4,
            "bloom" | "poro-chat" | "gpt3-finnish" => Self::Bloom,
            "viking" => Self::Viking,
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => Self::Gpt4o,
            "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => Self::DeepSeekV3,
            "tekken" => Self::Tekken,
            "seed-coder" => Self::SeedCoder,
            "grok-2" => Self::Qwen2,
            "gemma4" => Self::Gemma4,
            other => {
                return Err(TokenizerError::Unsupported(format!(
                    "tokenizer.ggml.pre = {other}"
                )))
            }
        })
    }

    /// Whether a word that is itself a token is that token without running the merges
    /// (HF's `ignore_merges`).
    pub fn ignore_merges(self) -> bool {
        matches!(self, Self::Llama3 | Self::Glm4 | Self::Tekken)
    }

    /// Whether BOS is added when the metadata does not say (llama.cpp's defaults).
    pub(crate) fn default_add_bos(self) -> bool {
        matches!(self, Self::Llama3 | Self::Tekken | Self::Gemma4)
    }

    /// Whether tokens are GPT-2 byte-level strings (all but Gemma 4's raw UTF-8 tokens).
    pub(crate) fn byte_level(self) -> bool {
        self != Self::Gemma4
    }

    fn steps(self) -> Vec<Step> {
        use Step::{Digits as D, Regex as R};
        match self {
            Self::SmolLm => vec![D(true), R(GPT2)],
            Self::Gpt2 => vec![R(GPT2)],
            Self::Default => vec![
                R(r"[\p{P}\$\+<=>\^~\|]+"),
                R(GPT2),
                R(r"\p{N}+"),
                R("[0-9][0-9][0-9]"),
            ],
            Self::Llama3 | Self::Dbrx | Self::ChatGlm4 | Self::Glm4 => vec![R(LLAMA3)],
            Self::Qwen2 => vec![R(QWEN2)],
            Self::Qwen35 => vec![R(QWEN35)],
            Self::DeepSeekLlm => vec![
                R("[\r\n]"),
                R(DEEPSEEK_LLM_LETTERS),
                R(DEEPSEEK_LLM_PUNCT),
                R(r"\s+$"),
                R(CJK_RUNS),
                D(false),
            ],
            Self::DeepSeekCoder => vec![
                R("[\r\n]"),
                R(r"\s?\p{L}+"),
                R(r"\s?\p{P}+"),
                R(CJK_RUNS),
                D(true),
            ],
            Self::Falcon => vec![R(r"[\p{P}\$\+<=>\^~\|`]+"), R(GPT2), R("[0-9][0-9][0-9]")],
            Self::Bloom => vec![R(BLOOM)],
            Self::Viking => vec![R(BLOOM), D(true)],
            Self::Gpt4o => vec![R(GPT4O)],
            Self::DeepSeekV3 => vec![R(r"\p{N}{1,3}"), R(DEEPSEEK_V3_CJK), R(DEEPSEEK_V3_WORDS)],
            Self::Tekken => vec![R(TEKKEN)],
            Self::SeedCoder => vec![R(SEED_CODER)],
            Self::Gemma4 => vec![],
        }
    }

    /// The `tokenizers` pre-tokenizer: the split steps, then the byte-to-character map (none for
    /// Gemma 4, whose text [`super::Tokenizer`] splits itself).
    pub(crate) fn build(self) -> Result<Option<PreTokenizerWrapper>, TokenizerError> {
        if !self.byte_level() {
            return Ok(None);
        }
        let mut spec = self.steps();
        // HF's ByteLevel applies the GPT-2 regex itself: it does a final GPT-2 step.
        let gpt2_last = matches!(spec.last(), Some(Step::Regex(r)) if *r == GPT2);
        if gpt2_last {
            spec.pop();
        }
        let mut steps = Vec::with_capacity(spec.len() + 1);
        for step in spec {
            steps.push(match step {
                Step::Digits(individual) => PreTokenizerWrapper::Digits(Digits::new(individual)),
                Step::Regex(re) => PreTokenizerWrapper::Split(
                    Split::new(
                        SplitPattern::Regex(re.to_owned()),
                        SplitDelimiterBehavior::Isolated,
                        false,
                    )
                    .map_err(|e| TokenizerError::Backend {
                        context: "pre-tokenizer regex",
                        message: e.to_string(),
                    })?,
                ),
            });
        }
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, gpt2_last,
        )));
        Ok(Some(if steps.len() == 1 {
            steps.remove(0)
        } else {
            PreTokenizerWrapper::Sequence(Sequence::new(steps))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn words(kind: PreTokenizerKind, text: &str) -> Vec<String> {
        let pre = kind.build().ok().flatten().expect("a pre-tokenizer");
        let mut s = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut s).expect("pre-tokenizes");
        s.get_splits(OffsetReferential::Original, OffsetType::None)
            .into_iter()
            .map(|(w, _, _)| w.replace('Ġ', " "))
            .collect()
    }

    #[test]
    fn kinds_split_as_their_regexes_say() {
        use PreTokenizerKind as K;
        assert_eq!(
            words(K::Llama3, "I'm 12345 ok"),
            ["I", "'m", " ", "123", "45", " ok"]
        );
        assert_eq!(words(K::Qwen2, "a 12"), ["a", " ", "1", "2"]);
        assert_eq!(
            words(K::Tekken, "HelloWorld 12"),
            ["Hello", "World", " ", "1", "2"]
        );
        assert_eq!(
            words(K::DeepSeekV3, "Hi, 12345 日本"),
            ["Hi", ",", " ", "123", "45", " ", "日本"]
                .map(|w| w.replace('日', "æĹ¥").replace('本', "æľ¬"))
        );
        assert_eq!(words(K::SmolLm, "ab 12"), ["ab", " ", "1", "2"]);
        assert_eq!(words(K::Gpt2, "ab 12"), ["ab", " 12"]);
    }
}
