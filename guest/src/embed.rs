//! Embeddings: a text's final normed hidden states (one per token, from either backend's
//! [`Backend::prefill_hidden`]) pooled into one vector and L2-normalized, as llama.cpp's
//! `llama_get_embeddings_seq` and its server's `embd_normalize = 2` give them.

use edge_llm_kernel::gguf::Gguf;

use crate::generate::{Backend, GenerateError};

/// How a text's token states become one vector (llama.cpp's `llama_pooling_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the tokens.
    Mean,
    /// The first token's state.
    Cls,
    /// The last token's state.
    Last,
}

impl Pooling {
    /// The pooling `{arch}.pooling_type` asks for: 1 mean, 2 CLS, 3 last; absent or 0 ("none",
    /// per-token states, which the OpenAI shape cannot carry) means the mean. Rank pooling (4,
    /// rerankers) and unknown values are refused.
    pub fn from_gguf(gguf: &Gguf, architecture: &str) -> Result<Self, String> {
        let key = format!("{architecture}.pooling_type");
        match gguf.get(&key) {
            None => Ok(Self::Mean),
            Some(_) => match gguf.get_u32(&key).map_err(|e| e.to_string())? {
                0 | 1 => Ok(Self::Mean),
                2 => Ok(Self::Cls),
                3 => Ok(Self::Last),
                4 => Err(format!(
                    "{key} = 4 (rank): a reranker gives scores, not embeddings"
                )),
                n => Err(format!(
                    "{key} = {n} is not a pooling type llama.cpp defines"
                )),
            },
        }
    }

    /// Pools `states` (`n * n_embd` values, row-major, n ≥ 1) into one vector of `n_embd`.
    pub fn pool(self, states: &[f32], n_embd: usize) -> Vec<f32> {
        let mut rows = states.chunks_exact(n_embd);
        match self {
            Self::Cls => rows.next().map(<[f32]>::to_vec).unwrap_or_default(),
            Self::Last => rows.next_back().map(<[f32]>::to_vec).unwrap_or_default(),
            Self::Mean => {
                let n = rows.len();
                let mut sum = vec![0.0f64; n_embd];
                for row in rows {
                    sum.iter_mut()
                        .zip(row)
                        .for_each(|(s, &v)| *s += f64::from(v));
                }
                sum.iter().map(|&s| (s / n.max(1) as f64) as f32).collect()
            }
        }
    }
}

/// Scales `v` to unit Euclidean length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
}

/// Embeds one token sequence on `backend`, from an empty context: its states pooled and
/// normalized. The backend keeps the sequence in its cache.
pub fn embed(
    backend: &mut dyn Backend,
    tokens: &[u32],
    pooling: Pooling,
) -> Result<Vec<f32>, GenerateError> {
    if tokens.is_empty() {
        return Err(GenerateError::InvalidInput(
            "an input to embed has no tokens".into(),
        ));
    }
    if tokens.len() > backend.n_ctx() {
        return Err(GenerateError::ContextOverflow {
            prompt_tokens: tokens.len(),
            max_tokens: 0,
            n_ctx: backend.n_ctx(),
        });
    }
    backend.reset();
    let states = backend.prefill_hidden(tokens)?;
    let n_embd = states.len() / tokens.len();
    let mut v = pooling.pool(&states, n_embd);
    l2_normalize(&mut v);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_picks_rows_or_their_mean() {
        let states = [1.0, 2.0, 3.0, 6.0, 5.0, 10.0];
        assert_eq!(Pooling::Mean.pool(&states, 2), [3.0, 6.0]);
        assert_eq!(Pooling::Cls.pool(&states, 2), [1.0, 2.0]);
        assert_eq!(Pooling::Last.pool(&states, 2), [5.0, 10.0]);
    }

    #[test]
    fn vectors_get_unit_length() {
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0.0, 0.0];
        l2_normalize(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}
