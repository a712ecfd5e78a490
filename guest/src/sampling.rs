//! Token sampling: repeat penalty → top-k → top-p → min-p → temperature → draw, and the log
//! probabilities of the distribution a token was drawn from.
//!
//! Everything is deterministic across targets: the random generator is the kernel's
//! SplitMix64, exponentials come from `libm` (pure Rust, identical natively and in wasm) and
//! sums run in a fixed order. Temperature 0 means greedy argmax (the lowest id wins ties).
//! Buffers are reused, so sampling does not allocate per token once warmed up.

use std::collections::VecDeque;

/// The sampler's random generator: the kernel's SplitMix64, identical on every target.
pub use edge_llm_kernel::rng::SplitMix64;

/// Errors from invalid sampling parameters or logits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A parameter is out of range or not a number.
    #[error("invalid sampling parameter `{name}` = {value}: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// The rejected value, printed.
        value: String,
        /// What the valid range is.
        reason: &'static str,
    },
    /// The logits slice was empty.
    #[error("no logits to sample from")]
    EmptyLogits,
    /// Every logit was NaN or −∞.
    #[error("all {n} logits are NaN or -inf")]
    NoFiniteLogits {
        /// Number of logits.
        n: usize,
    },
}

/// Sampling parameters (llama.cpp semantics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 = greedy argmax. Must be finite and ≥ 0.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 = off.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set whose probability reaches `top_p`; in (0, 1],
    /// 1 = off.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` × the best one's; in [0, 1], 0 = off.
    pub min_p: f32,
    /// Repeat penalty: positive logits of recent tokens are divided by it, negative ones
    /// multiplied; must be finite and > 0, 1 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at; 0 = off.
    pub repeat_last_n: usize,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no repeat
    /// penalty (window 64), seed 0.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: argmax, every filter off.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            seed: 0,
        }
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let bad = |name, value: f32, reason| SamplingError::InvalidParam {
            name,
            value: value.to_string(),
            reason,
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(bad(
                "temperature",
                self.temperature,
                "must be finite and >= 0",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(bad("top_p", self.top_p, "must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(bad("min_p", self.min_p, "must be in [0, 1]"));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(bad(
                "repeat_penalty",
                self.repeat_penalty,
                "must be finite and > 0",
            ));
        }
        Ok(())
    }

    /// Whether sampling is greedy argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// A uniform number in [0, 1) with 53 bits of precision, from the next 64 bits of `rng`.
pub fn next_f64(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The lowest log probability reported: OpenAI's floor, and a finite stand-in for a
/// probability that rounds to 0.
pub const MIN_LOGPROB: f32 = -9999.0;

/// A sampled token's log probability and the most likely tokens at its position.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The sampled token and its log probability.
    pub chosen: (u32, f32),
    /// The most likely tokens, most likely first (lower id first on ties).
    pub top: Vec<(u32, f32)>,
}

/// A candidate token: id and (adjusted) logit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// Picks tokens from logits according to [`SamplingParams`]; keeps the recent-token window for
/// the repeat penalty and reuses its buffers between calls.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
    recent: VecDeque<u32>,
    candidates: Vec<Candidate>,
    scratch: Vec<u32>,
    probs: Vec<f64>,
}

impl Sampler {
    /// A sampler with validated parameters.
    pub fn new(params: SamplingParams) -> Result<Self, SamplingError> {
        params.validate()?;
        Ok(Self {
            params,
            rng: SplitMix64::new(params.seed),
            recent: VecDeque::with_capacity(params.repeat_last_n),
            candidates: Vec::new(),
            scratch: Vec::with_capacity(params.repeat_last_n),
            probs: Vec::new(),
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Records a token (prompt or generated) in the repeat-penalty window.
    pub fn accept(&mut self, token: u32) {
        let n = self.params.repeat_last_n;
        if n == 0 {
            return;
        }
        if self.recent.len() == n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Clears the repeat-penalty window and reseeds the generator.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.rng = SplitMix64::new(self.params.seed);
    }

    /// Chooses the next token from `logits` (one per vocabulary id).
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplingError> {
        if logits.is_empty() {
            return Err(SamplingError::EmptyLogits);
        }
        if self.params.is_greedy() {
            return self
                .greedy(logits)
                .ok_or(SamplingError::NoFiniteLogits { n: logits.len() });
        }
        self.load_candidates(logits);
        self.apply_repeat_penalty();
        self.drop_non_finite(logits.len())?;
        self.apply_top_k();
        self.sort_candidates();
        self.apply_top_p();
        self.apply_min_p();
        Ok(self.draw())
    }

    /// The log probabilities of `chosen`, which the last [`Sampler::sample`] of `logits` drew,
    /// and of the `top` most likely tokens of the distribution it was drawn from: after the
    /// filters, at the temperature, over the tokens the filters kept. A greedy sampler draws
    /// from no distribution; for it this is the softmax of the penalised logits at temperature
    /// 1 over the whole vocabulary. Call it right after `sample`, with the same logits.
    pub fn logprobs(&mut self, logits: &[f32], chosen: u32, top: usize) -> TokenLogprob {
        let ln = |p: f64| (libm::log(p) as f32).max(MIN_LOGPROB);
        if !self.params.is_greedy() {
            // `draw` left the kept candidates sorted, most likely first, with their
            // probabilities in `probs`.
            let p = self
                .candidates
                .iter()
                .zip(&self.probs)
                .find(|(c, _)| c.id == chosen)
                .map_or(0.0, |(_, &p)| p);
            let top = self
                .candidates
                .iter()
                .zip(&self.probs)
                .take(top)
                .map(|(c, &p)| (c.id, ln(p)))
                .collect();
            return TokenLogprob {
                chosen: (chosen, ln(p)),
                top,
            };
        }
        self.load_candidates(logits);
        self.apply_repeat_penalty();
        let chosen_logit = self
            .candidates
            .get(chosen as usize)
            .map_or(f32::NEG_INFINITY, |c| c.logit);
        self.candidates
            .retain(|c| !c.logit.is_nan() && c.logit != f32::NEG_INFINITY);
        let Some(max) = self
            .candidates
            .iter()
            .map(|c| c.logit)
            .max_by(f32::total_cmp)
        else {
            return TokenLogprob {
                chosen: (chosen, MIN_LOGPROB),
                top: Vec::new(),
            };
        };
        let sum: f64 = self
            .candidates
            .iter()
            .map(|c| libm::exp(f64::from(c.logit - max)))
            .sum();
        let log_sum = f64::from(max) + libm::log(sum);
        let logprob = |logit: f32| ((f64::from(logit) - log_sum) as f32).max(MIN_LOGPROB);
        let top = top.min(self.candidates.len());
        if top > 0 && top < self.candidates.len() {
            self.candidates
                .select_nth_unstable_by(top - 1, by_logit_desc);
        }
        self.candidates.truncate(top);
        self.candidates.sort_unstable_by(by_logit_desc);
        TokenLogprob {
            chosen: (chosen, logprob(chosen_logit)),
            top: self
                .candidates
                .iter()
                .map(|c| (c.id, logprob(c.logit)))
                .collect(),
        }
    }

    /// The greedy choice, straight from `logits` (no candidate list: this runs once per token
    /// over the whole vocabulary): the raw logits between the penalised ids, each penalised id's
    /// adjusted logit in its place, lowest id on ties, NaN ignored.
    fn greedy(&mut self, logits: &[f32]) -> Option<u32> {
        self.penalised_ids();
        let mut best: Option<(u32, f32)> = None;
        let mut from = 0;
        for &id in &self.scratch {
            let id = id as usize;
            if id >= logits.len() {
                break;
            }
            best = better(best, best_in(logits, from, id));
            let penalised = penalise(logits[id], self.params.repeat_penalty);
            best = better(best, Some((id as u32, penalised)));
            from = id + 1;
        }
        better(best, best_in(logits, from, logits.len())).map(|(id, _)| id)
    }

    /// `scratch` = the distinct recent ids, ascending, when the penalty applies; else empty.
    fn penalised_ids(&mut self) {
        self.scratch.clear();
        if self.params.repeat_penalty != 1.0 {
            self.scratch.extend(self.recent.iter().copied());
            self.scratch.sort_unstable();
            self.scratch.dedup();
        }
    }

    fn load_candidates(&mut self, logits: &[f32]) {
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &logit)| Candidate {
                id: i as u32,
                logit,
            }));
    }

    /// llama.cpp's repeat penalty: once per distinct recent token, positive logits are divided
    /// by the penalty and negative ones multiplied. Candidates are still indexed by id here.
    fn apply_repeat_penalty(&mut self) {
        self.penalised_ids();
        for &id in &self.scratch {
            if let Some(c) = self.candidates.get_mut(id as usize) {
                c.logit = penalise(c.logit, self.params.repeat_penalty);
            }
        }
    }

    fn drop_non_finite(&mut self, n: usize) -> Result<(), SamplingError> {
        self.candidates
            .retain(|c| !c.logit.is_nan() && c.logit != f32::NEG_INFINITY);
        if self.candidates.is_empty() {
            return Err(SamplingError::NoFiniteLogits { n });
        }
        Ok(())
    }

    fn apply_top_k(&mut self) {
        let k = self.params.top_k;
        if k == 0 || k >= self.candidates.len() {
            return;
        }
        self.candidates.select_nth_unstable_by(k - 1, by_logit_desc);
        self.candidates.truncate(k);
    }

    fn sort_candidates(&mut self) {
        self.candidates.sort_unstable_by(by_logit_desc);
    }

    /// Softmax of the current (sorted) candidates at temperature `t` into `self.probs`.
    fn softmax(&mut self, t: f32) {
        let max = self.candidates[0].logit;
        self.probs.clear();
        let mut sum = 0.0f64;
        for c in &self.candidates {
            let p = f64::from(libm::expf((c.logit - max) / t));
            sum += p;
            self.probs.push(p);
        }
        for p in &mut self.probs {
            *p /= sum;
        }
    }

    /// Keeps the smallest prefix whose probability mass reaches `top_p` (at least one token).
    fn apply_top_p(&mut self) {
        let top_p = f64::from(self.params.top_p);
        if top_p >= 1.0 {
            return;
        }
        self.softmax(1.0);
        let mut cum = 0.0;
        let mut keep = self.probs.len();
        for (i, p) in self.probs.iter().enumerate() {
            cum += p;
            if cum >= top_p {
                keep = i + 1;
                break;
            }
        }
        self.candidates.truncate(keep);
    }

    /// Keeps tokens with probability ≥ `min_p` × the best one's (`logit ≥ max + ln min_p`).
    fn apply_min_p(&mut self) {
        let min_p = self.params.min_p;
        if min_p <= 0.0 {
            return;
        }
        let threshold = self.candidates[0].logit + libm::logf(min_p);
        let keep = self
            .candidates
            .iter()
            .take_while(|c| c.logit >= threshold)
            .count();
        self.candidates.truncate(keep.max(1));
    }

    /// Draws from the softmax of the remaining candidates at the configured temperature.
    fn draw(&mut self) -> u32 {
        self.softmax(self.params.temperature);
        let r = next_f64(&mut self.rng);
        let mut cum = 0.0;
        for (c, p) in self.candidates.iter().zip(&self.probs) {
            cum += p;
            if r < cum {
                return c.id;
            }
        }
        // Rounding left `cum` a hair below 1: take the last candidate.
        self.candidates[self.candidates.len() - 1].id
    }
}

/// Descending logit, ties broken by ascending id (so the order is total and deterministic).
fn by_logit_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// llama.cpp's repeat penalty of one logit: positive ones divided, others multiplied.
fn penalise(logit: f32, penalty: f32) -> f32 {
    if logit > 0.0 {
        logit / penalty
    } else {
        logit * penalty
    }
}

/// The better of two `(id, logit)` choices scanned in id order: the higher logit, the earlier
/// on ties; a NaN logit never wins.
fn better(best: Option<(u32, f32)>, next: Option<(u32, f32)>) -> Option<(u32, f32)> {
    match (best, next) {
        (_, Some((_, l))) if l.is_nan() => best,
        (Some((_, b)), Some((_, l))) if l <= b => best,
        (_, None) => best,
        (_, next) => next,
    }
}

/// Greedy argmax over raw logits (lowest id wins ties, NaN ignored).
pub fn greedy_argmax(logits: &[f32]) -> Option<u32> {
    best_in(logits, 0, logits.len()).map(|(id, _)| id)
}

/// The best `(id, logit)` of `logits[from..to]` by [`better`]: the first logit equal to the
/// largest non-NaN one. Two passes, both of which vectorize, instead of one fold of `better`
/// over every logit (one sampled token reads the whole vocabulary).
fn best_in(logits: &[f32], from: usize, to: usize) -> Option<(u32, f32)> {
    let xs = &logits[from..to];
    let max = max_ignoring_nan(xs);
    // The first whole block of 16 holding it (else the tail), compared a block at a time;
    // then its place there.
    let block = xs
        .chunks_exact(16)
        .position(|c| c.iter().fold(false, |any, &l| any | (l == max)))
        .unwrap_or(xs.len() / 16);
    let i = block * 16 + xs[block * 16..].iter().position(|&l| l == max)?;
    Some(((from + i) as u32, xs[i]))
}

/// The largest non-NaN value of `xs`, −∞ if there is none: sixteen independent lanes (four
/// vectors, so the maxima do not wait on each other), then those lanes and the tail.
fn max_ignoring_nan(xs: &[f32]) -> f32 {
    let larger = |m: f32, x: f32| if x > m { x } else { m };
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = larger(*m, x);
        }
    }
    lanes
        .into_iter()
        .chain(tail.iter().copied())
        .fold(f32::NEG_INFINITY, larger)
}
