//! Row operations of the forward pass: RMSNorm, LayerNorm, RoPE (both pairings), softmax (the elementwise math is in
//! [`crate::activation`]).
//!
//! Every reduction has a fixed order, `exp` is our own sequence of plain IEEE operations and the
//! other transcendental functions come from `libm`, so results are identical on every target.

use crate::simd::{self, dot_f32, Isa};

/// `dst[(t - t0) · rows + r] = src[r · n + t]` (with `add`, `+=`) for `rows` rows of the
/// tokens `t0..` that `dst` holds (of `n`): a matmul's outputs, one row per weight row, to one
/// row per token. A straight pass for one token, else tiles of 8 rows (the tile's sources stay
/// in cache while each token's 8 destinations are written side by side). [`simd::transpose`]
/// is this in every variant.
pub fn transpose_ref(src: &[f32], rows: usize, n: usize, t0: usize, dst: &mut [f32], add: bool) {
    let op = |d: &mut f32, s: f32| {
        if add {
            *d += s
        } else {
            *d = s
        }
    };
    let src = &src[..rows * n];
    if n == 1 {
        dst.iter_mut().zip(src).for_each(|(d, &s)| op(d, s));
        return;
    }
    for (i, tile) in src.chunks(8 * n).enumerate() {
        let r0 = 8 * i;
        for (t, row) in (t0..).zip(dst.chunks_exact_mut(rows)) {
            for (j, d) in row[r0..r0 + tile.len() / n].iter_mut().enumerate() {
                op(d, tile[j * n + t]);
            }
        }
    }
}

/// `out = x / sqrt(mean(x²) + eps) * w` (the sum of squares with `isa`'s [`dot_f32`]).
pub fn rmsnorm(isa: Isa, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss = dot_f32(isa, x, x);
    let mean = ss / x.len() as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (xi * scale) * wi;
    }
}

/// `out = (x - mean(x)) / sqrt(var(x) + eps) * w + b`, sums in `f64` as ggml's `norm` does.
pub fn layernorm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f64;
    let mean = (x.iter().map(|&v| f64::from(v)).sum::<f64>() / n) as f32;
    let mut sum2 = 0f64;
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = xi - mean;
        sum2 += f64::from(*o * *o);
    }
    let scale = 1.0 / libm::sqrtf((sum2 / n) as f32 + eps);
    for ((o, &wi), &bi) in out.iter_mut().zip(w).zip(b) {
        *o = (*o * scale) * wi + bi;
    }
}

/// How the angles of one position are made from `pos · base^(−2i/rope_dim)`.
#[derive(Debug, Clone, Copy)]
pub struct RopeFreqs<'a> {
    /// `base^(−2/rope_dim)`.
    pub theta_scale: f32,
    /// Linear scaling: angles times this (1 unscaled).
    pub freq_scale: f32,
    /// Per-dimension divisors of the angles (Llama 3, LongRoPE), `[rope_dim / 2]`.
    pub factors: Option<&'a [f32]>,
    /// Factor of cos and sin (1 unscaled).
    pub mscale: f32,
}

/// Fills `cos`/`sin` (`rope_dim / 2` each) for position `pos`: angle `i` is
/// `freq_scale · pos · base^(−2i/rope_dim) / factor_i`, the powers accumulated by repeated
/// multiplication as llama.cpp does (with no scaling, factors or mscale, each step is exact).
pub fn rope_angles(pos: usize, f: RopeFreqs<'_>, cos: &mut [f32], sin: &mut [f32]) {
    let mut theta = pos as f32;
    for (i, (c, s)) in cos.iter_mut().zip(sin.iter_mut()).enumerate() {
        let factor = f.factors.map_or(1.0, |ff| ff[i]);
        let t = f.freq_scale * (theta / factor);
        *c = libm::cosf(t) * f.mscale;
        *s = libm::sinf(t) * f.mscale;
        theta *= f.theta_scale;
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

/// Rotates dimensions `i` and `i + cos.len()` of each `head_dim`-wide head in `x` by the
/// angles (the NEOX pairing); dimensions past `2 · cos.len()` pass unchanged.
pub fn rope_halves(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let h = cos.len();
    for head in x.chunks_exact_mut(head_dim) {
        let (lo, hi) = head[..2 * h].split_at_mut(h);
        for ((x0, x1), (&c, &s)) in lo.iter_mut().zip(hi.iter_mut()).zip(cos.iter().zip(sin)) {
            let (a, b) = (*x0, *x1);
            *x0 = a * c - b * s;
            *x1 = a * s + b * c;
        }
    }
}

/// In-place softmax with a sequential sum (the exponentials by [`simd::exp_shifted`], the same
/// bits on every target).
pub fn softmax(isa: Isa, x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    simd::exp_shifted(isa, x, max);
    let sum = x.iter().fold(0f32, |s, &v| s + v);
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscaled_angles_are_the_plain_recurrence() {
        // No scale, factors or mscale: bit for bit `cos(pos · theta_scale^i)` accumulated by
        // multiplication (what the llama path always computed).
        let f = RopeFreqs {
            theta_scale: libm::powf(10000.0, -2.0 / 64.0),
            freq_scale: 1.0,
            factors: None,
            mscale: 1.0,
        };
        let (mut c, mut s) = ([0f32; 32], [0f32; 32]);
        rope_angles(37, f, &mut c, &mut s);
        let mut theta = 37f32;
        for i in 0..32 {
            assert_eq!(c[i].to_bits(), libm::cosf(theta).to_bits());
            assert_eq!(s[i].to_bits(), libm::sinf(theta).to_bits());
            theta *= f.theta_scale;
        }
        // Factors divide the angle, the linear scale multiplies it, mscale scales the result.
        let factors = [2.0f32; 32];
        let g = RopeFreqs {
            freq_scale: 0.5,
            factors: Some(&factors),
            mscale: 1.5,
            ..f
        };
        rope_angles(37, g, &mut c, &mut s);
        assert_eq!(c[0], libm::cosf(0.5 * (37.0 / 2.0)) * 1.5);
    }

    #[test]
    fn halves_rotate_i_with_i_plus_half_and_leave_the_rest() {
        // Two heads of 8 with 6 rotated dims: pairs (0,3), (1,4), (2,5); 6 and 7 pass.
        let mut x: Vec<f32> = (0..16).map(|i| i as f32 + 1.0).collect();
        let (cos, sin) = ([0.0f32, 1.0, 0.6], [1.0f32, 0.0, 0.8]);
        rope_halves(&mut x, 8, &cos, &sin);
        for h in 0..2 {
            let b = (h * 8) as f32;
            let head = &x[h * 8..h * 8 + 8];
            for i in 0..3 {
                let (a, c) = (b + i as f32 + 1.0, b + i as f32 + 4.0);
                assert_eq!(head[i], a * cos[i] - c * sin[i]);
                assert_eq!(head[i + 3], a * sin[i] + c * cos[i]);
            }
            assert_eq!(&head[6..], &[b + 7.0, b + 8.0]);
        }
    }

    #[test]
    fn layernorm_centers_scales_and_shifts() {
        let x: Vec<f32> = (0..64)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 2.0)
            .collect();
        let (w, b) = (vec![2.0f32; 64], vec![0.5f32; 64]);
        let mut out = vec![0f32; 64];
        layernorm(&x, &w, &b, 1e-5, &mut out);
        let n = 64.0;
        let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = out
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!((mean - 0.5).abs() < 1e-5, "{mean}");
        assert!((var - 4.0).abs() < 1e-3, "{var}");
    }
}
