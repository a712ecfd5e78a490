//! The forward pass over a batch of tokens, for every family of [`super::Arch`], and the
//! [`Session`] that owns the KV cache and scratch buffers.
//!
//! Steps per call: embed the tokens (scaled, plus learned positions, where the family says);
//! per layer norm → Q/K/V (+ biases) → per-head q/k norm → RoPE → append K/V to the cache →
//! grouped-query attention (within a sliding window on such layers) → output projection
//! (+ bias, post-norm) → residual → norm → gated or plain FFN (+ biases, post-norm) →
//! residual; final norm and output projection (+ bias, soft-capping) for the tokens whose
//! logits are wanted. Parts a family lacks are skipped; Llama runs exactly the steps it
//! always did.
//! The tokens of one pass may belong to several sessions ([`Batch`]): the matmuls stream the
//! weights once for all of them, each token's RoPE angles and attention use its own session's
//! positions and KV cache, and every per-token operation is the same as alone, so each
//! session's logits are bit for bit its own.
//! Every matmul streams the weights once per batch. Buffers grow only when a larger batch
//! arrives, so steady-state decoding does not allocate (the KV cache grows in chunks).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use thiserror::Error;

use super::config::{FfnAct, NormKind, RopeStyle};
use super::kv_cache::KvCache;
use super::team::{Team, MAX_THREADS};
use super::weights::{Norm, QMatrix};
use super::{Config, Model, ModelError};
use crate::quant::q8_1::BlockQ8_1;
use crate::quant::q8_k::BlockQ8_K;
use crate::quant::{Partner, QK, QK_K};
use crate::simd::{self, Acts, Isa};
use crate::{activation, ops};

/// Options of a [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Maximum positions held (1 ..= `n_ctx_train`).
    pub n_ctx: usize,
    /// Matmul threads (feature `threads`; 0 = all cores; ignored without the feature).
    pub threads: usize,
}

/// Why a forward call failed; the session is back at its length before the call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ForwardError {
    /// The tokens do not fit in the context.
    #[error("context overflow: {needed} positions needed, n_ctx is {n_ctx}")]
    ContextOverflow {
        /// Positions the call would need.
        needed: usize,
        /// The session's context size.
        n_ctx: usize,
    },
    /// A token id is outside the vocabulary.
    #[error("invalid token id {id} (vocabulary has {n_vocab} tokens)")]
    InvalidToken {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// No tokens were given.
    #[error("empty input")]
    EmptyInput,
    /// The cancel callback returned true.
    #[error("cancelled")]
    Cancelled,
    /// A [`Batch`] step's session is of another model than the first step's.
    #[error("a batch runs the sessions of one model")]
    OtherModel,
    /// The memory for the KV cache of the positions the call needs could not be allocated.
    #[error("out of memory: the KV cache of {positions} positions needs {} MiB", bytes.div_ceil(1 << 20))]
    OutOfMemory {
        /// Positions the call would hold.
        positions: usize,
        /// Bytes their keys and values take.
        bytes: usize,
    },
    /// The memory for the working buffers of a pass could not be allocated.
    #[error("out of memory: a pass of {tokens} tokens needs {} MiB more of working buffers", bytes.div_ceil(1 << 20))]
    ScratchOutOfMemory {
        /// Tokens (rows) of the pass.
        tokens: usize,
        /// Bytes the buffers had to grow by.
        bytes: usize,
    },
}

/// Scratch buffers sized for `cap` tokens per call.
#[derive(Debug, Default)]
struct Scratch {
    cap: usize,
    /// Residual stream, `[T][n_embd]`.
    x: Vec<f32>,
    /// Normalized rows, `[T][n_embd]`.
    xn: Vec<f32>,
    /// A block's output before its post-norm, `[T][n_embd]`.
    tmp: Vec<f32>,
    /// Quantized activations, `[T][max(n_embd, n_q, n_ff) / 32]`.
    act: Vec<BlockQ8_1>,
    /// The same as Q8_K blocks (for K-quant matrices), `[T][max(n_embd, n_q, n_ff) / 256]`.
    act_k: Vec<BlockQ8_K>,
    /// Matmul output, `[rows][T]`, rows up to `max(n_q, n_ff, n_embd)`.
    mm: Vec<f32>,
    /// Second matmul output (FFN up), `[n_ff][T]`.
    mm2: Vec<f32>,
    /// Key and value matmul outputs, `[kv_dim][T]`.
    mmk: Vec<f32>,
    mmv: Vec<f32>,
    /// Queries, `[T][n_head * head_dim]`.
    q: Vec<f32>,
    /// New keys, `[T][kv_dim]`.
    k: Vec<f32>,
    /// New values, `[T][kv_dim]`.
    v: Vec<f32>,
    /// Attention output, `[T][n_head * head_dim]`.
    att: Vec<f32>,
    /// SwiGLU hidden, `[T][n_ff]`.
    hid: Vec<f32>,
    /// RoPE cosines and sines, `[T][rope_dim / 2]`, of the global and the sliding layers.
    cos: Vec<f32>,
    sin: Vec<f32>,
    cos_swa: Vec<f32>,
    sin_swa: Vec<f32>,
    /// Attention scores, `[threads][HEADS_AT_ONCE * n_ctx]`.
    scores: Vec<f32>,
    /// Logits, `[T'][n_vocab]`, and their transpose `[n_vocab][T']`.
    logits: Vec<f32>,
    logits_t: Vec<f32>,
}

/// Inference state over a shared [`Model`]: KV cache, scratch and team of threads.
pub struct Session {
    model: Arc<Model>,
    n_ctx: usize,
    isa: Isa,
    cache: KvCache,
    s: Scratch,
    /// Shared with the process's other sessions of the same thread count.
    team: Arc<Team>,
    /// Parallel items of this session's regions that the team's helper threads ran.
    helper_items: AtomicUsize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("n_ctx", &self.n_ctx)
            .field("len", &self.cache.len())
            .field("threads", &self.team.threads())
            .finish()
    }
}

/// Parallel context for matmuls: ISA and the session's team of threads.
#[derive(Clone, Copy)]
struct Par<'t> {
    isa: Isa,
    team: &'t Team,
    helper_items: &'t AtomicUsize,
}

/// Most tokens of one forward pass over a prompt's tokens that need no logits (llama.cpp's
/// default micro-batch is as large).
pub const PREFILL_CHUNK: usize = 512;

/// Below this many weight bytes × tokens a matmul region runs on one thread (a fork/join costs
/// more than the work it would split).
const MIN_PAR_WORK: usize = 64 * 1024;

/// Below this many query items × positions × head width, attention runs on one thread.
const MIN_PAR_ATTENTION: usize = 1 << 10;

/// Below this many elements, elementwise work between the matmuls (norms, quantizing the
/// activations, transposes, SwiGLU) runs on one thread: a prompt's is split, a decoding
/// step's (but its logits') is not.
const MIN_PAR_ELEMS: usize = 1 << 14;

impl Par<'_> {
    /// `out[r * n_tok + t] = w[r] · acts[t]`, rows split over threads.
    fn matmul(self, w: &QMatrix, file: &[u8], acts: Acts<'_>, n_tok: usize, out: &mut [f32]) {
        self.matmuls(file, acts, n_tok, [(w, out)]);
    }

    /// Several matmuls over the same activations in one parallel region: each thread takes its
    /// share of the rows of every matrix (whole pairs of 8-row groups, the AVX-512 tile's unit;
    /// the per-row arithmetic is unchanged).
    fn matmuls<const N: usize>(
        self,
        file: &[u8],
        acts: Acts<'_>,
        n_tok: usize,
        jobs: [(&QMatrix, &mut [f32]); N],
    ) {
        let work: usize = jobs.iter().map(|(w, _)| w.rows * w.row_bytes).sum();
        let threads = self.team.threads();
        if threads == 1 || work * n_tok < MIN_PAR_WORK {
            for (w, out) in jobs {
                w.matmul(
                    self.isa,
                    w.bytes(file),
                    acts,
                    n_tok,
                    &mut out[..w.rows * n_tok],
                );
            }
            return;
        }
        let mut shares: [[Option<Part<'_>>; N]; MAX_THREADS] = [const { [const { None }; N] }; _];
        let shares = &mut shares[..threads];
        for (j, (w, out)) in jobs.into_iter().enumerate() {
            let per = w.rows.div_ceil(threads).next_multiple_of(16);
            let (mut wb, mut out) = (w.bytes(file), &mut out[..w.rows * n_tok]);
            for share in shares.iter_mut() {
                let rows = per.min(wb.len() / w.row_bytes);
                let (mine, rest) = wb.split_at(rows * w.row_bytes);
                let (o, o_rest) = std::mem::take(&mut out).split_at_mut(rows * n_tok);
                share[j] = Some((w, mine, o));
                (wb, out) = (rest, o_rest);
            }
        }
        let isa = self.isa;
        self.run_each(shares, &|_, share| {
            for (w, wb, out) in share.iter_mut().flatten() {
                w.matmul(isa, wb, acts, n_tok, out);
            }
        });
    }

    /// `f(first, part)` over `data` cut into one run of whole `unit`-element items per thread
    /// (`first`: the index of the run's first item), or over all of it on this thread when the
    /// work is below [`MIN_PAR_ELEMS`] elements. Each item's result is what `f` gives it alone.
    fn split<T: Send>(
        self,
        data: &mut [T],
        unit: usize,
        elems: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let (items, threads) = (data.len() / unit, self.team.threads());
        if threads == 1 || items < 2 || elems < MIN_PAR_ELEMS {
            return f(0, data);
        }
        let per = items.div_ceil(threads);
        let mut parts: [Option<(usize, &mut [T])>; MAX_THREADS] = [const { None }; _];
        for (i, (part, run)) in parts
            .iter_mut()
            .zip(data.chunks_mut(per * unit))
            .enumerate()
        {
            *part = Some((i * per, run));
        }
        self.run_each(&mut parts[..threads], &|_, part| {
            if let Some((first, run)) = part {
                f(*first, run);
            }
        });
    }

    /// `dst[t][r] = src[r * n + t]` for `rows` rows, split over tokens.
    fn transpose_into(self, src: &[f32], rows: usize, n: usize, dst: &mut [f32]) {
        self.transpose(src, rows, n, dst, false);
    }

    /// `dst[t][r] += src[r * n + t]`, split over tokens.
    fn transpose_add(self, src: &[f32], rows: usize, n: usize, dst: &mut [f32]) {
        self.transpose(src, rows, n, dst, true);
    }

    fn transpose(self, src: &[f32], rows: usize, n: usize, dst: &mut [f32], add: bool) {
        let dst = &mut dst[..rows * n];
        let isa = self.isa;
        self.split(dst, rows, rows * n, &|t0, d| {
            simd::transpose(isa, src, rows, n, t0, d, add)
        });
    }

    /// The `n` rows of `x` normalized into `out` by the model's norm kind, split over tokens.
    fn norm_rows(self, c: &Config, w: &Norm, x: &[f32], out: &mut [f32], n: usize) {
        let e = w.w.len();
        let isa = self.isa;
        self.split(&mut out[..n * e], e, n * e, &|t0, o| {
            norm_rows(isa, c, w, &x[t0 * e..], o, o.len() / e);
        });
    }

    /// [`Team::run_each`], counting the items the helpers ran.
    fn run_each<T: Send>(self, items: &mut [T], f: &(dyn Fn(usize, &mut T) + Sync)) {
        let by_helpers = self.team.run_each(items, f);
        self.helper_items.fetch_add(by_helpers, Ordering::Relaxed);
    }
}

/// A share of one matmul: the matrix, a run of its rows' bytes, and their outputs.
type Part<'a> = (&'a QMatrix, &'a [u8], &'a mut [f32]);

impl Session {
    /// A session with an empty cache.
    pub fn new(model: Arc<Model>, opts: SessionOptions) -> Result<Session, ModelError> {
        let c = model.config();
        if opts.n_ctx == 0 || opts.n_ctx > c.n_ctx_train {
            return Err(ModelError::BadOptions(format!(
                "n_ctx {} must be between 1 and the training context {}",
                opts.n_ctx, c.n_ctx_train
            )));
        }
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        #[cfg(not(feature = "threads"))]
        let threads = {
            let _ = threads;
            1
        };
        let team = Team::shared(threads)
            .map_err(|e| ModelError::BadOptions(format!("{threads} threads: {e}")))?;
        let cache = KvCache::new(c.n_layer, c.kv_dim(), opts.n_ctx);
        Ok(Session {
            n_ctx: opts.n_ctx,
            isa: Isa::best(),
            cache,
            s: Scratch::default(),
            team,
            helper_items: AtomicUsize::new(0),
            model,
        })
    }

    /// Forces a kernel variant (for tests and benchmarks; results are identical).
    pub fn set_isa(&mut self, isa: Isa) {
        self.isa = isa;
    }

    /// How many parallel items of this session's forward passes the team's helper threads ran
    /// (0 at one thread): shows that a multi-threaded session really used its helpers.
    pub fn helper_items(&self) -> usize {
        self.helper_items.load(Ordering::Relaxed)
    }

    /// Lets the helper threads of this session's team park now, instead of spinning for the
    /// next parallel region as they do for a while after each: for a caller that knows other
    /// threads need the cores before its next pass.
    pub fn rest_team(&self) {
        self.team.rest();
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Positions in the KV cache.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True if the KV cache is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Maximum positions.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Keeps the first `n` positions of the cache.
    pub fn truncate(&mut self, n: usize) {
        self.cache.truncate(n);
    }

    /// Drops every cached position and gives back all of the cache's memory.
    pub fn release_cache(&mut self) {
        self.cache.release();
    }

    /// Bytes the KV cache holds now.
    pub fn cache_bytes(&self) -> usize {
        self.cache.capacity_bytes()
    }

    /// Bytes the KV cache holds once it has room for `n` positions (grown in chunks, capped
    /// at `n_ctx`): what holding `n` positions costs.
    pub fn cache_bytes_for(&self, n: usize) -> usize {
        self.cache.bytes_for(n)
    }

    /// Appends `tokens` at positions `len()..`, returns the logits (`n_vocab`) of the last token.
    pub fn forward(
        &mut self,
        tokens: &[u32],
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<&[f32], ForwardError> {
        let from = tokens.len().saturating_sub(1);
        self.forward_from(tokens, from, cancel)
    }

    /// Same, but returns logits for every token (`tokens.len() * n_vocab`, row-major).
    pub fn forward_all(
        &mut self,
        tokens: &[u32],
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<&[f32], ForwardError> {
        self.forward_from(tokens, 0, cancel)
    }

    /// Appends `tokens` and returns the final normed hidden state of each (`tokens.len() *
    /// n_embd`, row-major): what the output projection reads, for embeddings. No logits are
    /// computed. Runs in passes of at most [`PREFILL_CHUNK`] tokens; on an error the cache is
    /// left as it was.
    pub fn forward_hidden(
        &mut self,
        tokens: &[u32],
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, ForwardError> {
        self.check(tokens)?;
        let model = self.model.clone();
        let (c, w) = (model.config(), model.weights());
        let e = c.n_embd;
        let p0 = self.cache.len();
        let mut hidden = vec![0.0; tokens.len() * e];
        for (chunk, out) in tokens
            .chunks(PREFILL_CHUNK)
            .zip(hidden.chunks_mut(PREFILL_CHUNK * e))
        {
            if let Err(err) = self.forward_pass(chunk, chunk.len(), cancel) {
                self.cache.truncate(p0);
                return Err(err);
            }
            let n = chunk.len();
            norm_rows(self.isa, c, &w.output_norm, &self.s.x[..n * e], out, n);
        }
        Ok(hidden)
    }

    /// Appends `tokens`, returns the logits of `tokens[from..]` (`(len - from) * n_vocab`).
    ///
    /// The tokens before `from`, which need no logits, run in passes of at most
    /// [`PREFILL_CHUNK`] tokens: a long prompt then checks `cancel` every layer of every chunk
    /// (not once a layer of the whole prompt) and its scratch buffers stay chunk-sized. Each
    /// token's arithmetic is the same in any chunking, so the logits are too. On an error the
    /// cache is left as it was.
    pub(crate) fn forward_from(
        &mut self,
        tokens: &[u32],
        from: usize,
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<&[f32], ForwardError> {
        self.check(tokens)?;
        let from = from.min(tokens.len() - 1);
        let p0 = self.cache.len();
        let mut start = 0;
        let mut result = Ok(());
        while result.is_ok() && from - start > PREFILL_CHUNK {
            let end = start + PREFILL_CHUNK;
            result = self.forward_pass(&tokens[start..end], PREFILL_CHUNK - 1, cancel);
            start = end;
        }
        if let Err(e) =
            result.and_then(|()| self.forward_pass(&tokens[start..], from - start, cancel))
        {
            self.cache.truncate(p0);
            return Err(e);
        }
        let n = (tokens.len() - from) * self.model.config().n_vocab;
        Ok(&self.s.logits[..n])
    }

    /// One forward pass over `tokens` (checked by [`Session::forward_from`]; `from` <=
    /// `tokens.len()`), appended to the cache, leaving the logits of `tokens[from..]` (none
    /// when `from == tokens.len()`) and every token's last residual (`s.x`) in the scratch;
    /// on an error the caller rolls the cache back.
    fn forward_pass(
        &mut self,
        tokens: &[u32],
        from: usize,
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), ForwardError> {
        let model = self.model.clone();
        let par = Par {
            isa: self.isa,
            team: &self.team,
            helper_items: &self.helper_items,
        };
        let mut segs = [Seg::new(&mut self.cache, self.n_ctx, tokens, from, cancel)];
        run_pass(&model, par, &mut self.s, &mut segs, &mut || {})?;
        match segs[0].cancelled {
            true => Err(ForwardError::Cancelled),
            false => Ok(()),
        }
    }
}

/// One session's part of a [`Batch`] step.
pub struct Step<'a> {
    /// The session; its cache gains `tokens`.
    pub session: &'a mut Session,
    /// Tokens appended at positions `session.len()..`.
    pub tokens: &'a [u32],
    /// Logits are wanted for `tokens[from..]` (none when `from == tokens.len()`).
    pub from: usize,
    /// Checked before every layer: once it returns true, this session's step fails with
    /// [`ForwardError::Cancelled`] and its cache stays as it was; the others go on.
    pub cancel: &'a (dyn Fn() -> bool + Sync),
}

/// Scratch for forward passes over several sessions at once: one step of each runs as one
/// pass whose matmuls stream every weight matrix once for all their tokens, while each
/// session's attention reads its own KV cache at its own positions. A session's logits are
/// bit for bit those it computes alone (`Session::forward_from`): every matmul row, every
/// activation quantization and every attention item is computed per token, whatever else is
/// in the pass.
#[derive(Debug, Default)]
pub struct Batch {
    s: Scratch,
}

impl Batch {
    /// An empty batch scratch (it grows to the largest step run).
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Runs one pass over every step's tokens (one pass: callers chunk long prompts, e.g. at
    /// [`PREFILL_CHUNK`] tokens), on the first step's session's team of threads. Per step, in
    /// order, the logits of `tokens[from..]` (`(len - from) * n_vocab`, row-major) or why
    /// that step failed; a failed step leaves its session as it was.
    pub fn forward<'b>(
        &'b mut self,
        steps: &mut [Step<'_>],
    ) -> Vec<Result<&'b [f32], ForwardError>> {
        self.forward_between(steps, &mut || {})
    }

    /// [`Batch::forward`], calling `between` on the calling thread before each layer but the
    /// first, when none of the pass's parallel regions runs. It may run passes of other
    /// sessions with another `Batch` (a new prompt that should not wait for the whole of this
    /// pass), which change nothing of this one's: its state is in this scratch and its
    /// sessions' caches.
    pub fn forward_between<'b>(
        &'b mut self,
        steps: &mut [Step<'_>],
        between: &mut dyn FnMut(),
    ) -> Vec<Result<&'b [f32], ForwardError>> {
        let mut checked: Vec<Result<(), ForwardError>> = Vec::with_capacity(steps.len());
        let Some(first) = steps.first() else {
            return Vec::new();
        };
        let model = first.session.model.clone();
        let (isa, team) = (first.session.isa, first.session.team.clone());
        for st in steps.iter_mut() {
            let same_model = Arc::ptr_eq(&st.session.model, &model);
            checked.push(match same_model {
                true => st.session.check(st.tokens),
                false => Err(ForwardError::OtherModel),
            });
        }
        let helper_items = AtomicUsize::new(0);
        let par = Par {
            isa,
            team: &team,
            helper_items: &helper_items,
        };
        // Per step: the rows of its logits, or its error.
        let mut outcome: Vec<Result<Range<usize>, ForwardError>> =
            checked.iter().map(|ok| ok.clone().map(|()| 0..0)).collect();
        let mut segs: Vec<Seg<'_>> = steps
            .iter_mut()
            .zip(&checked)
            .filter(|(_, ok)| ok.is_ok())
            .map(|(st, _)| {
                let from = st.from.min(st.tokens.len());
                Seg::new(
                    &mut st.session.cache,
                    st.session.n_ctx,
                    st.tokens,
                    from,
                    st.cancel,
                )
            })
            .collect();
        if !segs.is_empty() {
            let pass = run_pass(&model, par, &mut self.s, &mut segs, between);
            let ran = outcome.iter_mut().filter(|o| o.is_ok());
            for (o, seg) in ran.zip(&mut segs) {
                let failed = match &pass {
                    Err(e) => Some(e.clone()),
                    Ok(()) => seg.cancelled.then_some(ForwardError::Cancelled),
                };
                *o = match failed {
                    Some(e) => {
                        seg.cache.truncate(seg.p0);
                        Err(e)
                    }
                    None => Ok(seg.out..seg.out + seg.tokens.len() - seg.from),
                };
            }
        }
        drop(segs);
        if let Some(first) = steps.first() {
            first
                .session
                .helper_items
                .fetch_add(helper_items.into_inner(), Ordering::Relaxed);
        }
        let n_vocab = model.config().n_vocab;
        let logits = &self.s.logits;
        outcome
            .into_iter()
            .map(|o| o.map(|r| &logits[r.start * n_vocab..r.end * n_vocab]))
            .collect()
    }
}

impl Session {
    /// Whether `tokens` can be appended (not empty, in the vocabulary, within the context, with
    /// memory for their keys and values), and room made for them in the cache.
    fn check(&mut self, tokens: &[u32]) -> Result<(), ForwardError> {
        let c = self.model.config();
        if tokens.is_empty() {
            return Err(ForwardError::EmptyInput);
        }
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= c.n_vocab) {
            return Err(ForwardError::InvalidToken {
                id,
                n_vocab: c.n_vocab,
            });
        }
        let needed = self.cache.len() + tokens.len();
        if needed > self.n_ctx {
            return Err(ForwardError::ContextOverflow {
                needed,
                n_ctx: self.n_ctx,
            });
        }
        // Room for every position of the call before any of it runs, so that running out of
        // memory is an error, not an abort.
        self.cache
            .reserve(needed)
            .map_err(|_| ForwardError::OutOfMemory {
                positions: needed,
                bytes: self.cache.bytes_for(needed),
            })
    }
}

/// One session's rows in a forward pass.
struct Seg<'c> {
    cache: &'c mut KvCache,
    n_ctx: usize,
    tokens: &'c [u32],
    /// Logits are wanted for `tokens[from..]`.
    from: usize,
    /// Positions cached before the pass.
    p0: usize,
    /// The first of its rows among the pass's tokens, and among its logits.
    row: usize,
    out: usize,
    cancel: &'c (dyn Fn() -> bool + Sync),
    /// Cancelled during the pass: its rows still run with the others' (they share the
    /// matmuls), its cache is rolled back at the end.
    cancelled: bool,
}

impl<'c> Seg<'c> {
    fn new(
        cache: &'c mut KvCache,
        n_ctx: usize,
        tokens: &'c [u32],
        from: usize,
        cancel: &'c (dyn Fn() -> bool + Sync),
    ) -> Self {
        let p0 = cache.len();
        Seg {
            cache,
            n_ctx,
            tokens,
            from,
            p0,
            row: 0,
            out: 0,
            cancel,
            cancelled: false,
        }
    }
}

/// One forward pass over the segments' tokens, appended to their caches, leaving the wanted
/// logits in `s.logits` (each segment's at its `out` row). Calls `between` before each layer
/// but the first, then checks every segment's `cancel`: `Err(Cancelled)` once all are
/// cancelled (the caller rolls their caches back), else the cancelled ones are flagged; fails
/// before it begins when its working buffers cannot grow.
fn run_pass(
    model: &Model,
    par: Par<'_>,
    s: &mut Scratch,
    segs: &mut [Seg<'_>],
    between: &mut dyn FnMut(),
) -> Result<(), ForwardError> {
    let (mut row, mut out) = (0, 0);
    for seg in segs.iter_mut() {
        (seg.row, seg.out) = (row, out);
        row += seg.tokens.len();
        out += seg.tokens.len() - seg.from;
    }
    let n_ctx = segs.iter().map(|seg| seg.n_ctx).max().unwrap_or(1);
    s.ensure(model, row, out, par.team.threads(), n_ctx)?;
    // The calling thread runs the pass and, with the helpers, the items of each region.
    let mut st = Forward {
        model,
        par,
        segs,
        s,
        n: row,
        n_out: out,
    };
    st.prologue();
    for l in 0..model.config().n_layer {
        if l > 0 {
            between();
        }
        if st.all_cancelled() {
            return Err(ForwardError::Cancelled);
        }
        st.layer(l);
    }
    st.epilogue();
    Ok(())
}

/// Grows `v` to `n` elements if it is shorter, adding the bytes that takes to `asked`; false
/// if the allocator has none (an instance at its memory limit), `v` then unchanged.
fn grow<T: Clone + Default>(v: &mut Vec<T>, n: usize, asked: &mut usize) -> bool {
    let Some(more) = n.checked_sub(v.len()).filter(|&m| m > 0) else {
        return true;
    };
    *asked += more * size_of::<T>();
    if v.try_reserve_exact(more).is_err() {
        return false;
    }
    v.resize(n, T::default());
    true
}

impl Scratch {
    /// Grows the buffers for a pass of `n_tok` rows and `n_logits` rows of logits; fails,
    /// before the pass changes anything, when the memory cannot be had.
    fn ensure(
        &mut self,
        m: &Model,
        n_tok: usize,
        n_logits: usize,
        threads: usize,
        n_ctx: usize,
    ) -> Result<(), ForwardError> {
        let c = m.config();
        let nq = c.q_dim();
        let (mut asked, mut ok) = (0, true);
        let a = &mut asked;
        if n_tok > self.cap {
            let wide = c.n_embd.max(nq).max(c.n_ff);
            ok &= grow(&mut self.x, n_tok * c.n_embd, a);
            ok &= grow(&mut self.xn, n_tok * c.n_embd, a);
            ok &= grow(&mut self.tmp, n_tok * c.n_embd.max(c.head_dim), a);
            ok &= grow(&mut self.act, n_tok * wide / QK, a);
            if m.weights().any_partner(Partner::Q8_K) {
                ok &= grow(&mut self.act_k, n_tok * wide / QK_K, a);
            }
            ok &= grow(&mut self.mm, n_tok * wide, a);
            ok &= grow(&mut self.mm2, n_tok * c.n_ff, a);
            ok &= grow(&mut self.mmk, n_tok * c.kv_dim(), a);
            ok &= grow(&mut self.mmv, n_tok * c.kv_dim(), a);
            ok &= grow(&mut self.q, n_tok * nq, a);
            ok &= grow(&mut self.k, n_tok * c.kv_dim(), a);
            ok &= grow(&mut self.v, n_tok * c.kv_dim(), a);
            ok &= grow(&mut self.att, n_tok * nq, a);
            ok &= grow(&mut self.hid, n_tok * c.n_ff, a);
            let half = c.rope_dim() / 2;
            ok &= grow(&mut self.cos, n_tok * half, a);
            ok &= grow(&mut self.sin, n_tok * half, a);
            if c.swa.is_some() {
                ok &= grow(&mut self.cos_swa, n_tok * half, a);
                ok &= grow(&mut self.sin_swa, n_tok * half, a);
            }
            if ok {
                self.cap = n_tok;
            }
        }
        ok &= grow(&mut self.scores, threads.max(1) * HEADS_AT_ONCE * n_ctx, a);
        ok &= grow(&mut self.logits, n_logits * c.n_vocab, a);
        if n_logits > 1 {
            ok &= grow(&mut self.logits_t, n_logits * c.n_vocab, a);
        }
        match ok {
            true => Ok(()),
            false => Err(ForwardError::ScratchOutOfMemory {
                tokens: n_tok,
                bytes: asked,
            }),
        }
    }
}

/// The `n` rows of width `w` of `x` in the activation forms the matrices `ms` take: each form
/// any of them needs is quantized once per row, into `act` (Q8_1) or `act_k` (Q8_K).
fn activations<'a>(
    par: Par<'_>,
    x: &'a [f32],
    w: usize,
    n: usize,
    ms: &[&QMatrix],
    act: &'a mut [BlockQ8_1],
    act_k: &'a mut [BlockQ8_K],
) -> Acts<'a> {
    let needs = |p: Partner| ms.iter().any(|m| m.partner() == p);
    let x = &x[..n * w];
    let mut q8_1: &[BlockQ8_1] = &[];
    if needs(Partner::Q8_1) {
        let nb = w / QK;
        q8_1 = quantize_rows(par, x, w, nb, &mut act[..n * nb], simd::quantize_q8_1);
    }
    let mut q8_k: &[BlockQ8_K] = &[];
    if needs(Partner::Q8_K) {
        // K-quant rows are whole 256-blocks (checked when the model loads).
        debug_assert!(w.is_multiple_of(QK_K));
        let nb = w / QK_K;
        q8_k = quantize_rows(par, x, w, nb, &mut act_k[..n * nb], simd::quantize_q8_k);
    }
    Acts { x, q8_1, q8_k }
}

/// The rows of `x` (`w` wide) quantized by `quantize` into `out` (as many rows of `nb` blocks),
/// split over the team.
fn quantize_rows<'a, B: Send>(
    par: Par<'_>,
    x: &[f32],
    w: usize,
    nb: usize,
    out: &'a mut [B],
    quantize: fn(Isa, &[f32], &mut [B]),
) -> &'a [B] {
    par.split(out, nb, x.len(), &|t0, run| {
        for (xr, br) in x[t0 * w..].chunks_exact(w).zip(run.chunks_exact_mut(nb)) {
            quantize(par.isa, xr, br);
        }
    });
    out
}

/// Shapes for attention.
#[derive(Clone, Copy)]
struct AttnShape {
    isa: Isa,
    n_head: usize,
    group: usize,
    head_dim: usize,
    kv_dim: usize,
    scale: f32,
    /// A query sees the keys of at most this many positions, its own last.
    window: usize,
}

/// Most query heads of one key head whose scores and value sums run together
/// ([`simd::dots_f16_heads`], [`simd::weighted_sum_f16_heads`]).
const HEADS_AT_ONCE: usize = 4;

/// Attention of layer `l` for items `first..first+out.len()/head_dim`, item = `t * n_head +
/// h` over the pass's rows: each row's query meets the keys and values of its own session's
/// cache up to its own position. Consecutive items of one row and key head (grouped-query
/// attention), up to [`HEADS_AT_ONCE`], compute their scores and sum their values together;
/// each head's result is bit for bit its result alone.
#[allow(clippy::too_many_arguments)]
fn attend(
    sh: AttnShape,
    segs: &[Seg<'_>],
    l: usize,
    first: usize,
    q: &[f32],
    scores: &mut [f32],
    out: &mut [f32],
) {
    let hd = sh.head_dim;
    let nq = sh.n_head * hd;
    let items = out.len() / hd;
    let mut i = 0;
    while i < items {
        let item = first + i;
        let (t, h) = (item / sh.n_head, item % sh.n_head);
        // This head and the next ones of the same key head in this share.
        let k = (sh.group - h % sh.group).min(items - i).min(HEADS_AT_ONCE);
        let seg = segs
            .iter()
            .rfind(|seg| seg.row <= t)
            .expect("the first segment starts at row 0");
        let g = h / sh.group;
        let n_pos = seg.p0 + (t - seg.row) + 1;
        let (keys, vals) = (seg.cache.keys(l, n_pos), seg.cache.values(l, n_pos));
        let start = n_pos.saturating_sub(sh.window);
        let m = n_pos - start;
        let first_key = start * sh.kv_dim + g * hd;
        let sc = &mut scores[..k * m];
        let qs = &q[t * nq + h * hd..][..k * hd];
        simd::dots_f16_heads(sh.isa, qs, hd, &keys[first_key..], sh.kv_dim, sc);
        for run in sc.chunks_exact_mut(m) {
            for s in run.iter_mut() {
                *s *= sh.scale;
            }
            ops::softmax(sh.isa, run);
            simd::round_f16(sh.isa, run);
        }
        let o = &mut out[i * hd..(i + k) * hd];
        simd::weighted_sum_f16_heads(sh.isa, sc, m, &vals[first_key..], sh.kv_dim, o);
        i += k;
    }
}

/// `n` rows of width `w.w.len()` of `x` normalized into `out` by the model's norm kind.
fn norm_rows(isa: Isa, c: &Config, w: &Norm, x: &[f32], out: &mut [f32], n: usize) {
    let e = w.w.len();
    for (xr, or) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)).take(n) {
        match (c.norm, &w.b) {
            (NormKind::Layer, Some(b)) => ops::layernorm(xr, &w.w, b, c.norm_eps, or),
            _ => ops::rmsnorm(isa, xr, &w.w, c.norm_eps, or),
        }
    }
}

/// `out[r * n + t] += bias[r]`: a bias added to a matmul output of `n` tokens per row.
fn add_bias(out: &mut [f32], bias: Option<&Vec<f32>>, n: usize) {
    if let Some(bias) = bias {
        for (row, &b) in out.chunks_exact_mut(n).zip(bias) {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// The state of one forward call.
struct Forward<'a, 'c> {
    model: &'a Model,
    par: Par<'a>,
    /// The sessions' rows, one after another.
    segs: &'a mut [Seg<'c>],
    s: &'a mut Scratch,
    /// Rows (tokens) of the pass, and of its logits.
    n: usize,
    n_out: usize,
}

impl Forward<'_, '_> {
    /// Checks the segments' cancel callbacks; true once every one was cancelled.
    fn all_cancelled(&mut self) -> bool {
        for seg in self.segs.iter_mut().filter(|seg| !seg.cancelled) {
            seg.cancelled = (seg.cancel)();
        }
        self.segs.iter().all(|seg| seg.cancelled)
    }

    fn attn_shape(&self, l: usize) -> AttnShape {
        let c = self.model.config();
        let window = match &c.swa {
            Some(swa) if c.is_swa(l) => swa.window,
            _ => usize::MAX,
        };
        AttnShape {
            isa: self.par.isa,
            n_head: c.n_head,
            group: c.n_head / c.n_head_kv,
            head_dim: c.head_dim,
            kv_dim: c.kv_dim(),
            scale: c.attn_scale,
            window,
        }
    }

    /// Embeds the tokens, computes the RoPE angles at each token's position.
    fn prologue(&mut self) {
        let (c, s) = (self.model.config(), &mut *self.s);
        let w = self.model.weights();
        let file = self.model.bytes();
        let e = c.n_embd;
        for seg in self.segs.iter() {
            for (i, &id) in seg.tokens.iter().enumerate() {
                let t = seg.row + i;
                let x = &mut s.x[t * e..(t + 1) * e];
                w.token_embd.dequantize_row(file, id as usize, x);
                if let Some(k) = c.embd_scale {
                    x.iter_mut().for_each(|v| *v *= k);
                }
                if let Some(pos) = &w.pos_embd {
                    let p = &mut s.tmp[..e];
                    pos.dequantize_row(file, seg.p0 + i, p);
                    x.iter_mut().zip(p.iter()).for_each(|(v, &p)| *v += p);
                }
            }
        }
        let Some(rope) = &c.rope else { return };
        let h2 = rope.dim / 2;
        let theta_scale = |base: f32| libm::powf(base, -2.0 / rope.dim as f32);
        for seg in self.segs.iter() {
            let global = ops::RopeFreqs {
                theta_scale: theta_scale(rope.base),
                freq_scale: rope.freq_scale,
                factors: w.rope_factors.for_context(seg.n_ctx, rope.n_ctx_orig),
                mscale: rope.attn_factor,
            };
            for i in 0..seg.tokens.len() {
                let r = (seg.row + i) * h2..(seg.row + i + 1) * h2;
                ops::rope_angles(seg.p0 + i, global, &mut s.cos[r.clone()], &mut s.sin[r]);
            }
            // Sliding layers: their own base, never scaled (llama.cpp's `freq_scale_swa` is 1).
            if let Some(swa) = &c.swa {
                let local = ops::RopeFreqs {
                    theta_scale: theta_scale(swa.rope_base),
                    freq_scale: 1.0,
                    ..global
                };
                for i in 0..seg.tokens.len() {
                    let r = (seg.row + i) * h2..(seg.row + i + 1) * h2;
                    let (cos, sin) = (&mut s.cos_swa[r.clone()], &mut s.sin_swa[r]);
                    ops::rope_angles(seg.p0 + i, local, cos, sin);
                }
            }
        }
    }

    /// Transformer block `l`.
    fn layer(&mut self, l: usize) {
        self.attention(l);
        self.feed_forward(l);
    }

    /// Attention block of layer `l`: `x += post_norm(attention(norm(x)))`.
    fn attention(&mut self, l: usize) {
        let sh = self.attn_shape(l);
        let (c, s, par) = (self.model.config(), &mut *self.s, self.par);
        let lw = &self.model.weights().layers[l];
        let file = self.model.bytes();
        let n = self.n;
        let (e, kv, nq, hd) = (c.n_embd, c.kv_dim(), c.q_dim(), c.head_dim);
        let n_ctx = self.segs.iter().map(|seg| seg.n_ctx).max().unwrap_or(1);

        par.norm_rows(c, &lw.attn_norm, &s.x, &mut s.xn, n);
        let ms = [&lw.wq, &lw.wk, &lw.wv];
        let acts = activations(par, &s.xn, e, n, &ms, &mut s.act, &mut s.act_k);
        par.matmuls(
            file,
            acts,
            n,
            [
                (&lw.wq, &mut s.mm[..]),
                (&lw.wk, &mut s.mmk[..]),
                (&lw.wv, &mut s.mmv[..]),
            ],
        );
        if let Some([bq, bk, bv]) = &lw.qkv_bias {
            add_bias(&mut s.mm[..nq * n], Some(bq), n);
            add_bias(&mut s.mmk[..kv * n], Some(bk), n);
            add_bias(&mut s.mmv[..kv * n], Some(bv), n);
        }
        par.transpose_into(&s.mm, nq, n, &mut s.q);
        par.transpose_into(&s.mmk, kv, n, &mut s.k);
        par.transpose_into(&s.mmv, kv, n, &mut s.v);
        // Per-head RMSNorm of queries and keys (Qwen3, Gemma 3), before the rotation.
        if let Some([qn, kn]) = &lw.qk_norm {
            for (rows, w) in [(&mut s.q[..n * nq], qn), (&mut s.k[..n * kv], kn)] {
                for head in rows.chunks_exact_mut(hd) {
                    s.tmp[..hd].copy_from_slice(head);
                    ops::rmsnorm(par.isa, &s.tmp[..hd], w, c.norm_eps, head);
                }
            }
        }
        if let Some(rope) = &c.rope {
            let h2 = rope.dim / 2;
            let (cos, sin) = match c.is_swa(l) {
                true => (&s.cos_swa, &s.sin_swa),
                false => (&s.cos, &s.sin),
            };
            for t in 0..n {
                let (cs, sn) = (&cos[t * h2..(t + 1) * h2], &sin[t * h2..(t + 1) * h2]);
                let (q, k) = (
                    &mut s.q[t * nq..(t + 1) * nq],
                    &mut s.k[t * kv..(t + 1) * kv],
                );
                match rope.style {
                    RopeStyle::Pairs => {
                        ops::rope(q, hd, cs, sn);
                        ops::rope(k, hd, cs, sn);
                    }
                    RopeStyle::Halves => {
                        ops::rope_halves(q, hd, cs, sn);
                        ops::rope_halves(k, hd, cs, sn);
                    }
                }
            }
        }
        // Queries meet the f16 cache in f16, as in llama.cpp's attention matmul.
        simd::round_f16(par.isa, &mut s.q[..n * nq]);
        for seg in self.segs.iter_mut() {
            let rows = seg.row * kv..(seg.row + seg.tokens.len()) * kv;
            seg.cache.append(par.isa, l, &s.k[rows.clone()], &s.v[rows]);
        }
        let segs = &*self.segs;
        let longest = segs.iter().map(|seg| seg.p0 + seg.tokens.len()).max();
        let items = n * c.n_head;
        let att = &mut s.att[..items * hd];
        // Split over the threads from a few positions on: in 2-thread decode, a threshold of
        // 2^10 (from the 2nd position with the default model) decoded 64 tokens faster than
        // 2^12, and 2^12 faster than 2^15 (parallel only past 57 positions): the other thread
        // is idle between the matmuls anyway.
        let threads = par.team.threads();
        if threads > 1 && items >= 2 && items * longest.unwrap_or(0) * hd >= MIN_PAR_ATTENTION {
            let per = items.div_ceil(threads);
            let mut shares: [Option<(&mut [f32], &mut [f32])>; MAX_THREADS] = [const { None }; _];
            let scores = s.scores.chunks_mut(HEADS_AT_ONCE * n_ctx);
            let pairs = att.chunks_mut(per * hd).zip(scores);
            for (share, pair) in shares.iter_mut().zip(pairs) {
                *share = Some(pair);
            }
            let q = &s.q;
            par.run_each(&mut shares[..threads], &|i, share| {
                if let Some((o, sc)) = share {
                    attend(sh, segs, l, i * per, q, sc, o);
                }
            });
        } else {
            attend(sh, segs, l, 0, &s.q, &mut s.scores, att);
        }
        let acts = activations(par, &s.att, nq, n, &[&lw.wo], &mut s.act, &mut s.act_k);
        par.matmul(&lw.wo, file, acts, n, &mut s.mm);
        add_bias(&mut s.mm[..e * n], lw.wo_bias.as_ref(), n);
        residual(
            par,
            c,
            &s.mm,
            lw.attn_post_norm.as_deref(),
            n,
            &mut s.tmp,
            &mut s.xn,
            &mut s.x,
        );
    }

    /// Feed-forward block of layer `l`: `x += post_norm(down(act(norm(x))))`.
    fn feed_forward(&mut self, l: usize) {
        let (c, s, par) = (self.model.config(), &mut *self.s, self.par);
        let lw = &self.model.weights().layers[l];
        let file = self.model.bytes();
        let n = self.n;
        let (e, f) = (c.n_embd, c.n_ff);

        par.norm_rows(c, &lw.ffn_norm, &s.x, &mut s.xn, n);
        match &lw.w_gate {
            Some(w_gate) => {
                let ms = [w_gate, &lw.w_up];
                let acts = activations(par, &s.xn, e, n, &ms, &mut s.act, &mut s.act_k);
                par.matmuls(
                    file,
                    acts,
                    n,
                    [(w_gate, &mut s.mm[..]), (&lw.w_up, &mut s.mm2[..])],
                );
                match c.ffn {
                    FfnAct::GeluGated => activation::geglu(&mut s.mm[..f * n], &s.mm2[..f * n]),
                    _ => {
                        let up = &s.mm2[..f * n];
                        par.split(&mut s.mm[..f * n], 1, f * n, &|i0, gate| {
                            simd::swiglu(par.isa, gate, &up[i0..]);
                        });
                    }
                }
            }
            None => {
                let acts = activations(par, &s.xn, e, n, &[&lw.w_up], &mut s.act, &mut s.act_k);
                par.matmul(&lw.w_up, file, acts, n, &mut s.mm);
                add_bias(&mut s.mm[..f * n], lw.up_bias.as_ref(), n);
                s.mm[..f * n]
                    .iter_mut()
                    .for_each(|v| *v = activation::gelu(*v));
            }
        }
        par.transpose_into(&s.mm, f, n, &mut s.hid);
        let ms = [&lw.w_down];
        let acts = activations(par, &s.hid, f, n, &ms, &mut s.act, &mut s.act_k);
        par.matmul(&lw.w_down, file, acts, n, &mut s.mm);
        add_bias(&mut s.mm[..e * n], lw.down_bias.as_ref(), n);
        residual(
            par,
            c,
            &s.mm,
            lw.ffn_post_norm.as_deref(),
            n,
            &mut s.tmp,
            &mut s.xn,
            &mut s.x,
        );
    }

    /// Commits the caches, final norm and output projection of the wanted tokens.
    fn epilogue(&mut self) {
        let (c, s, par) = (self.model.config(), &mut *self.s, self.par);
        let w = self.model.weights();
        let file = self.model.bytes();
        let e = c.n_embd;
        let n_out = self.n_out;
        for seg in self.segs.iter_mut() {
            seg.cache.commit(seg.tokens.len());
            let (first, wanted) = (seg.row + seg.from, seg.tokens.len() - seg.from);
            let x = &s.x[first * e..(first + wanted) * e];
            norm_rows(
                par.isa,
                c,
                &w.output_norm,
                x,
                &mut s.xn[seg.out * e..],
                wanted,
            );
        }
        if n_out == 0 {
            return;
        }
        let ms = [&w.output];
        let acts = activations(par, &s.xn, e, n_out, &ms, &mut s.act, &mut s.act_k);
        if n_out == 1 {
            par.matmul(&w.output, file, acts, 1, &mut s.logits);
        } else {
            par.matmul(&w.output, file, acts, n_out, &mut s.logits_t);
            par.transpose_into(&s.logits_t, c.n_vocab, n_out, &mut s.logits);
        }
        let logits = &mut s.logits[..n_out * c.n_vocab];
        if let Some(b) = &w.output_bias {
            for row in logits.chunks_exact_mut(c.n_vocab) {
                row.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
            }
        }
        if let Some(cap) = c.logit_softcap {
            logits
                .iter_mut()
                .for_each(|v| *v = libm::tanhf(*v * (1.0 / cap)) * cap);
        }
    }
}

/// `x[t] += out[t]` for a block's output `out` (`[n_embd][n]`, as matmuls leave it), after an
/// RMSNorm of each token's row by `post_norm` when the family has one (Gemma 3), through the
/// free buffers `tmp` and `normed` (`[n][n_embd]` each).
#[allow(clippy::too_many_arguments)]
fn residual(
    par: Par<'_>,
    c: &Config,
    out: &[f32],
    post_norm: Option<&[f32]>,
    n: usize,
    tmp: &mut [f32],
    normed: &mut [f32],
    x: &mut [f32],
) {
    let e = c.n_embd;
    let Some(w) = post_norm else {
        par.transpose_add(out, e, n, x);
        return;
    };
    par.transpose_into(out, e, n, tmp);
    let rows = tmp[..n * e].chunks_exact(e).zip(normed.chunks_exact_mut(e));
    for ((t, o), xr) in rows.zip(x.chunks_exact_mut(e)) {
        ops::rmsnorm(par.isa, t, w, c.norm_eps, o);
        xr.iter_mut().zip(o.iter()).for_each(|(v, &r)| *v += r);
    }
}
