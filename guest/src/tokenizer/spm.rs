//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`: Llama 1/2, Mistral v1,
//! Phi-3, …) the way llama.cpp does it: the text's characters are symbols; repeatedly the
//! adjacent pair whose concatenation is a token with the highest score is merged (leftmost
//! first among equal scores); a symbol that is no token becomes its bytes' `<0xXX>` tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::bpe::FastMap;

/// The vocabulary of a SentencePiece-style tokenizer.
pub(crate) struct Spm {
    ids: FastMap<Box<str>, u32>,
    scores: Vec<f32>,
    /// The token of each byte (`<0xXX>`, else the one-byte token), if any.
    byte_ids: Vec<Option<u32>>,
    unk_id: Option<u32>,
}

/// A symbol: a byte range of the text, linked to its neighbours (`usize::MAX` = none).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

/// A candidate merge of two adjacent symbols.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    /// Highest score first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl Spm {
    /// Builds the lookup tables. Scores may be empty (all zero); a token string that occurs
    /// twice maps to its last id, as in llama.cpp.
    pub(crate) fn new(tokens: &[String], scores: &[f32], unk_id: Option<u32>) -> Self {
        let mut ids = FastMap::default();
        ids.reserve(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            ids.insert(t.as_str().into(), i as u32);
        }
        let scores = if scores.len() == tokens.len() {
            scores.to_vec()
        } else {
            vec![0.0; tokens.len()]
        };
        let byte_ids = (0..=255u8)
            .map(|b| {
                ids.get(format!("<0x{b:02X}>").as_str())
                    .or_else(|| {
                        let s = [b];
                        std::str::from_utf8(&s).ok().and_then(|s| ids.get(s))
                    })
                    .copied()
            })
            .collect();
        Self {
            ids,
            scores,
            byte_ids,
            unk_id,
        }
    }

    /// The id of a token string.
    pub(crate) fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// Tokenizes `text` (spaces already escaped to `▁`), appending to `out`.
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            let len = c.len_utf8();
            symbols.push(Symbol {
                start,
                len,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if start + len == text.len() {
                    NONE
                } else {
                    i + 1
                },
            });
        }
        let mut queue = BinaryHeap::with_capacity(symbols.len());
        for i in 1..symbols.len() {
            self.try_bigram(text, &symbols, i - 1, i, &mut queue);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Skip candidates made stale by an earlier merge.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if r.next != NONE {
                symbols[r.next].prev = b.left;
            }
            let prev = symbols[b.left].prev;
            self.try_bigram(text, &symbols, prev, b.left, &mut queue);
            self.try_bigram(text, &symbols, b.left, r.next, &mut queue);
        }
        let mut i = if symbols.is_empty() { NONE } else { 0 };
        while i != NONE {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                // Merged symbols are tokens: only a single character can be missing.
                None => out.extend(
                    piece
                        .bytes()
                        .filter_map(|b| self.byte_ids[b as usize].or(self.unk_id)),
                ),
            }
            i = s.next;
        }
    }

    fn try_bigram(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (symbols[left], symbols[right]);
        let len = l.len + r.len;
        if let Some(&id) = self.ids.get(&text[l.start..l.start + len]) {
            queue.push(Bigram {
                score: self.scores[id as usize],
                left,
                right,
                len,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_score_merges_first_and_bytes_fall_back() {
        let tokens: Vec<String> = [
            "<unk>", "a", "b", "c", "ab", "bc", "<0xE2>", "<0x82>", "<0xAC>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let scores = [0.0, 0.0, 0.0, 0.0, -1.0, -0.5, 0.0, 0.0, 0.0];
        let spm = Spm::new(&tokens, &scores, Some(0));
        let mut out = Vec::new();
        // "bc" scores higher than "ab", and "abc" is no token.
        spm.encode("abc", &mut out);
        assert_eq!(out, vec![1, 5]);
        out.clear();
        spm.encode("€a", &mut out);
        assert_eq!(out, vec![6, 7, 8, 1]);
    }
}
