//! Row operations of the forward pass: RMSNorm, RoPE, softmax (the elementwise math is in
//! [`crate::activation`]).
//!
//! Every reduction has a fixed order, `exp` is our own sequence of plain IEEE operations and the
//! other transcendental functions come from `libm`, so results are identical on every target.

use crate::activation::exp;
use crate::simd::{dot_f32, Isa};

/// `out = x / sqrt(mean(x²) + eps) * w` (the sum of squares with `isa`'s [`dot_f32`]).
pub fn rmsnorm(isa: Isa, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss = dot_f32(isa, x, x);
    let mean = ss / x.len() as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (xi * scale) * wi;
    }
}

/// Fills `cos`/`sin` (`rope_dim / 2` each) for position `pos`: angle `i` is
/// `pos · base^(−2i/rope_dim)`, the powers accumulated by repeated multiplication as llama.cpp does.
pub fn rope_angles(pos: usize, theta_scale: f32, cos: &mut [f32], sin: &mut [f32]) {
    let mut theta = pos as f32;
    for (c, s) in cos.iter_mut().zip(sin.iter_mut()) {
        *c = libm::cosf(theta);
        *s = libm::sinf(theta);
        theta *= theta_scale;
    }
}

/// Rotates adjacent pairs `(2i, 2i+1)` of each `head_dim`-wide head in `x` by the angles.
pub fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, (&c, &s)) in head.chunks_exact_mut(2).zip(cos.iter().zip(sin)) {
            let (x0, x1) = (pair[0], pair[1]);
            pair[0] = x0 * c - x1 * s;
            pair[1] = x0 * s + x1 * c;
        }
    }
}

/// In-place softmax with a sequential sum.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
