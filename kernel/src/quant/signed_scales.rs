//! The super-block arithmetic Q3_K and Q6_K share: 256 signed values in 16 groups of 16, each
//! group scaled by a signed integer scale times the block's half-float `d`.

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::QK_K;

/// `out[16 i + l] = d · scales[i] · q[16 i + l]`.
pub(super) fn dequantize(d: f32, scales: &[i8; 16], q: &[i8; QK_K], out: &mut [f32]) {
    for (i, (oc, qc)) in out.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
        let dl = d * f32::from(scales[i]);
        for (v, &qv) in oc.iter_mut().zip(qc) {
            *v = dl * f32::from(qv);
        }
    }
}

/// One super-block `c` (256 values) quantized to values in `-half..half` with a signed scale
/// per group of 16 in `scale_min..=scale_max` (a simple quantizer, not llama.cpp's search).
/// Returns `d` as half-float bits, the scales, and the values offset by `half` (`0..2 half`).
pub(super) fn quantize(
    c: &[f32],
    half: f32,
    scale_min: f32,
    scale_max: f32,
) -> (u16, [i8; 16], [u8; QK_K]) {
    let mut step = [0f32; 16];
    for (s, cc) in step.iter_mut().zip(c.chunks_exact(16)) {
        let max = cc
            .iter()
            .copied()
            .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        *s = max / -half;
    }
    let dh = f32_to_f16_bits(step.iter().fold(0f32, |m, s| m.max(s.abs())) / scale_max);
    let d = f16_le_to_f32(dh.to_le_bytes());
    let mut sc = [0i8; 16];
    let mut u = [0u8; QK_K];
    for (i, cc) in c.chunks_exact(16).enumerate() {
        sc[i] = if d > 0.0 {
            (step[i] / d).round_ties_even().clamp(scale_min, scale_max) as i8
        } else {
            0
        };
        let dl = d * f32::from(sc[i]);
        let id = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        for (l, &v) in cc.iter().enumerate() {
            u[16 * i + l] = ((v * id).round_ties_even().clamp(-half, half - 1.0) + half) as u8;
        }
    }
    (dh, sc, u)
}
