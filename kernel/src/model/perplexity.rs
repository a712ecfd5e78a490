//! Perplexity as llama-perplexity computes it: `floor(len / n_ctx)` chunks, each from a fresh
//! cache, scoring the second half of every chunk.

use std::sync::Arc;

use super::forward::{ForwardError, Session, SessionOptions};
use super::Model;

/// A perplexity result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    /// `exp(mean negative log-likelihood)`.
    pub ppl: f64,
    /// Chunks evaluated.
    pub chunks: usize,
    /// Predictions scored.
    pub scored: usize,
}

/// Evaluates `tokens` in chunks of `n_ctx`; in each chunk the logits at positions
/// `n_ctx/2 .. n_ctx-2` score the tokens at `n_ctx/2+1 .. n_ctx-1` (softmax in `f64`).
pub fn perplexity(
    model: &Arc<Model>,
    tokens: &[u32],
    n_ctx: usize,
    threads: usize,
) -> Result<Perplexity, ForwardError> {
    if n_ctx < 4 || tokens.len() < n_ctx {
        return Err(ForwardError::EmptyInput);
    }
    let opts = SessionOptions { n_ctx, threads };
    let mut s = Session::new(model.clone(), opts).map_err(|_| ForwardError::ContextOverflow {
        needed: n_ctx,
        n_ctx: model.config().n_ctx_train,
    })?;
    let n_vocab = model.config().n_vocab;
    let first = n_ctx / 2;
    let (mut nll, mut scored) = (0f64, 0usize);
    let chunks = tokens.len() / n_ctx;
    for chunk in tokens.chunks_exact(n_ctx) {
        s.truncate(0);
        let logits = s.forward_from(chunk, first, &|| false)?;
        for (i, row) in (first..n_ctx - 1).zip(logits.chunks_exact(n_vocab)) {
            let target = chunk[i + 1] as usize;
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let max = f64::from(max);
            let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            nll += (sum.ln() + max) - f64::from(row[target]);
            scored += 1;
        }
    }
    Ok(Perplexity {
        ppl: (nll / scored as f64).exp(),
        chunks,
        scored,
    })
}
