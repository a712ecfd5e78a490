//! The scalar elementwise math of the forward pass: `exp`, SiLU and SwiGLU, GELU, computed from plain
//! `f32` operations so that every target gives the same bits. These are also the references the
//! SIMD variants in [`crate::simd`] reproduce; this module depends on nothing else in the crate.

/// `silu(x) = x / (1 + e^−x)`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// SwiGLU in place: `gate[i] = silu(gate[i]) · up[i]`. A plain elementwise loop, so the compiler
/// vectorizes it (with the same result in every lane as the scalar code); the reference of
/// [`crate::simd::swiglu`], which compiles this loop for AVX2.
#[inline(always)]
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// `x[i] = e^(x[i] − shift)` in place (softmax's exponentials). A plain elementwise loop, so
/// the compiler vectorizes it; the reference of [`crate::simd::exp_shifted`].
#[inline(always)]
pub fn exp_shifted(x: &mut [f32], shift: f32) {
    for v in x {
        *v = exp(*v - shift);
    }
}

/// GELU, tanh form, as llama.cpp's CPU backend computes it: through a table of half-precision
/// inputs and outputs (`x` rounded to f16, the result rounded to f16), identity from 10 up and
/// 0 from −10 down. `tanh` is `libm`'s, so every target gives the same bits.
#[inline]
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let x = half::f16::from_f32(x).to_f32();
    let y = 0.5 * x * (1.0 + libm::tanhf(SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)));
    half::f16::from_f32(y).to_f32()
}

/// GELU-gated in place: `gate[i] = gelu(gate[i]) · up[i]`.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu(*g) * u;
    }
}

/// `e^x` in `f32` from plain IEEE operations (no fused multiply-add, no library call), so every
/// target computes the same bits and loops over it vectorize. Within 2 ulp of the exact value
/// (tested against `f64`); the input is clamped to `[-87, 88]`, so the result is always a
/// normal float (about `1.6e-38 ..= 1.65e38`); NaN gives NaN.
///
/// `x = n·ln 2 + r` with `n` rounded to nearest by the 1.5·2²³ shift trick, `ln 2` split in two
/// parts so that `n·LN2_HI` is exact (Cody–Waite), `e^r` by Cephes' degree-6 minimax polynomial
/// on `|r| ≤ ln 2 / 2`, and `2^n` built directly from its exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23
    const LN2_HI: f32 = 355.0 / 512.0; // n · LN2_HI is exact for |n| < 2^15
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let x = x.clamp(-87.0, 88.0); // NaN stays NaN
    let t = x * core::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT; // round(x · log2 e), in -126 ..= 127
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = P[0];
    for &c in &P[1..] {
        p = p * r + c;
    }
    let e_r = (p * (r * r) + r) + 1.0;
    // The low bits of `t` hold n (t = 1.5 · 2^23 + n exactly); 2^n = (n + 127) << 23.
    let pow2n = (t.to_bits().wrapping_sub(0x4b40_0000).wrapping_add(127)) << 23;
    e_r * f32::from_bits(pow2n)
}

#[cfg(test)]
mod tests {
    use super::exp;

    /// Distance in units in the last place between two finite floats of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_is_within_2_ulp_over_its_range() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = f64::from(x).exp() as f32;
            worst = worst.max(ulps(exp(x), want));
            x += 0.000_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
    }

    #[test]
    fn gelu_is_ggmls_half_precision_table() {
        use half::f16;
        for &x in &[
            -12.0f32, -10.0, -3.3, -0.71, 0.0, 0.123_45, 1.0, 2.5, 9.99, 10.0, 42.0,
        ] {
            let want = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x
            } else {
                let h = f16::from_f32(x).to_f32();
                let t = libm::tanhf(0.797_884_6 * h * (1.0 + 0.044_715 * h * h));
                f16::from_f32(0.5 * h * (1.0 + t)).to_f32()
            };
            assert_eq!(super::gelu(x).to_bits(), want.to_bits(), "gelu({x})");
        }
        assert!((super::gelu(1.0) - 0.841_192).abs() < 1e-3);
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::INFINITY), exp(88.0));
        assert!(exp(f32::INFINITY).is_finite());
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0).is_normal());
        assert!(super::silu(-1000.0).abs() < 1e-30);
    }
}
