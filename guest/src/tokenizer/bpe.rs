//! Byte-pair encoding of one pre-tokenized word: the word's characters are symbols; repeatedly
//! the adjacent pair with the best-ranked merge rule (leftmost among equals) becomes the merged
//! token. Built straight from the GGUF's token and merge strings, without copying them into a
//! general-purpose tokenizer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::TokenizerError;

/// A small, fast hasher for the tables' keys (a multiply-rotate hash of 8-byte chunks).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // Multiplication mixes only upwards: fold the high bits into the low ones the table
        // indexes by.
        let h = self.0 ^ (self.0 >> 33);
        let h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The merge rules and vocabulary of a BPE tokenizer.
pub(crate) struct Bpe {
    ids: FastMap<Box<str>, u32>,
    /// (left id, right id) → (rank, merged id).
    merges: FastMap<(u32, u32), (u32, u32)>,
    /// A word that is itself a token is that token (HF's `ignore_merges`).
    ignore_merges: bool,
    /// A character that is no token becomes its bytes' `<0xXX>` tokens.
    byte_ids: Option<Vec<Option<u32>>>,
}

/// A symbol of a word being merged (`len == 0`: merged into its left neighbour).
#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    len: u32,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

impl Bpe {
    /// Builds the tables. A token string that occurs twice, or a merge rule whose parts or
    /// result are not tokens, is refused.
    pub(crate) fn new(
        tokens: &[String],
        merges: &[String],
        ignore_merges: bool,
        byte_fallback: bool,
    ) -> Result<Self, TokenizerError> {
        let mut ids: FastMap<Box<str>, u32> = FastMap::default();
        ids.reserve(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if ids.insert(t.as_str().into(), i as u32).is_some() {
                return Err(TokenizerError::InvalidVocab(format!(
                    "duplicate token string {t:?}"
                )));
            }
        }
        let mut table: FastMap<(u32, u32), (u32, u32)> = FastMap::default();
        table.reserve(merges.len());
        let mut joined = String::new();
        for (rank, line) in merges.iter().enumerate() {
            let (a, b) = split_merge(line).ok_or_else(|| {
                TokenizerError::InvalidVocab(format!("merge {rank} has no separator: {line:?}"))
            })?;
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let id = |s: &str| {
                ids.get(s).copied().ok_or_else(|| {
                    TokenizerError::InvalidVocab(format!(
                        "merge {rank} ({line:?}): {s:?} is not a token"
                    ))
                })
            };
            let pair = (id(a)?, id(b)?);
            let merged = id(&joined)?;
            // The first (best-ranked) rule for a pair wins.
            table.entry(pair).or_insert((rank as u32, merged));
        }
        let byte_ids = byte_fallback.then(|| {
            (0..=255u8)
                .map(|b| ids.get(format!("<0x{b:02X}>").as_str()).copied())
                .collect()
        });
        Ok(Self {
            ids,
            merges: table,
            ignore_merges,
            byte_ids,
        })
    }

    /// The id of a token string.
    pub(crate) fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// Appends the tokens of one word.
    pub(crate) fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges {
            if let Some(&id) = self.ids.get(word) {
                out.push(id);
                return;
            }
        }
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        let mut buf = [0u8; 4];
        for c in word.chars() {
            let s = c.encode_utf8(&mut buf);
            match self.ids.get(&*s) {
                Some(&id) => symbols.push(Symbol {
                    id,
                    len: s.len() as u32,
                    prev: NONE,
                    next: NONE,
                }),
                None => {
                    // Byte fallback; without it (or a byte token) the character is dropped.
                    for &b in s.as_bytes() {
                        if let Some(id) = self.byte_ids.as_ref().and_then(|t| t[b as usize]) {
                            symbols.push(Symbol {
                                id,
                                len: 1,
                                prev: NONE,
                                next: NONE,
                            });
                        }
                    }
                }
            }
        }
        let n = symbols.len();
        for (i, s) in symbols.iter_mut().enumerate() {
            s.prev = if i == 0 { NONE } else { i - 1 };
            s.next = if i + 1 == n { NONE } else { i + 1 };
        }
        // Min-heap of (rank, left position, merged id).
        let mut queue = BinaryHeap::with_capacity(n);
        for i in 1..n {
            if let Some(&(rank, merged)) = self.merges.get(&(symbols[i - 1].id, symbols[i].id)) {
                queue.push(Reverse((rank, i - 1, merged)));
            }
        }
        while let Some(Reverse((rank, pos, merged))) = queue.pop() {
            let left = symbols[pos];
            if left.len == 0 || left.next == NONE {
                continue;
            }
            let right = symbols[left.next];
            // Skip entries made stale by an earlier merge.
            if self.merges.get(&(left.id, right.id)) != Some(&(rank, merged)) {
                continue;
            }
            let right_pos = left.next;
            symbols[pos].id = merged;
            symbols[pos].len += right.len;
            symbols[pos].next = right.next;
            symbols[right_pos].len = 0;
            if right.next != NONE {
                symbols[right.next].prev = pos;
            }
            if left.prev != NONE {
                let p = symbols[left.prev];
                if let Some(&(r, m)) = self.merges.get(&(p.id, merged)) {
                    queue.push(Reverse((r, left.prev, m)));
                }
            }
            if right.next != NONE {
                let nx = symbols[right.next];
                if let Some(&(r, m)) = self.merges.get(&(merged, nx.id)) {
                    queue.push(Reverse((r, pos, m)));
                }
            }
        }
        let mut i = if n == 0 { NONE } else { 0 };
        while i != NONE {
            out.push(symbols[i].id);
            i = symbols[i].next;
        }
    }
}

/// Splits a `"left right"` merge line at the first space after its first character.
pub(crate) fn split_merge(line: &str) -> Option<(&str, &str)> {
    let first = line.chars().next()?.len_utf8();
    let p = line[first..].find(' ')?;
    Some((&line[..first + p], &line[first + p + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn best_rank_merges_first() {
        let tokens = strings(&["a", "b", "c", "ab", "bc", "abc"]);
        // "b c" ranks before "a b": a + bc, and "a bc" is no rule.
        let bpe = Bpe::new(&tokens, &strings(&["b c", "a b", "ab c"]), false, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        bpe.encode_word("abc", &mut out);
        assert_eq!(out, vec![0, 4]);
        out.clear();
        bpe.encode_word("abab", &mut out);
        assert_eq!(out, vec![3, 3]);
        assert!(Bpe::new(&tokens, &strings(&["c c"]), false, false).is_err());
        assert_eq!(split_merge("Ġ t"), Some(("Ġ", "t")));
        assert_eq!(split_merge("  x"), Some((" ", "x")));
        assert_eq!(split_merge("ab"), None);
    }
}
