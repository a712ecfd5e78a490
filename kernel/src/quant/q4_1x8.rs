//! Q4_1 rows repacked eight at a time (`Q4_1x8`), the layout the SIMD matmuls read fastest.
//!
//! The same bytes as eight GGUF Q4_1 rows, reordered in place: for each block column `b`, a
//! 160-byte record of
//! - 8 header words: row `i`'s `d` and `m` (its block's first 4 bytes, verbatim), then
//! - 4 chunks `k = 0..4` of 32 bytes: row `i`'s nibble bytes `4k..4k+4` at `4i..4i+4`.
//!
//! A SIMD register then holds four consecutive nibble bytes of every row, so one broadcast of
//! the matching activation bytes gives all eight rows' partial dot products lane by lane: no
//! horizontal reduction, one header load per block. The arithmetic is the GGUF layout's
//! ([`q4_1::vec_dot_ref`]): an exact integer dot product per block, then
//! `acc = acc + (d · da) · isum + m · sa` in block order.
//!
//! Rows past the last full group of eight keep the GGUF layout (see [`super::rows8`]).

use super::f16::f16_le_to_f32;
use super::q8_1::BlockQ8_1;
use super::{q4_1, rows8};

pub use super::rows8::ROWS;

/// Bytes of one block column of a group.
pub const RECORD_BYTES: usize = ROWS * q4_1::BLOCK_BYTES;
const _: () = assert!(RECORD_BYTES == 8 * 4 + 4 * 32);

/// Repacks the full groups of `rows` (`n_rows × nb` GGUF Q4_1 blocks) in place; a tail of
/// fewer than 8 rows is left as it is. `scratch` holds one group while it is rewritten.
pub fn repack(rows: &mut [u8], nb: usize, scratch: &mut Vec<u8>) {
    rows8::repack(rows, nb, q4_1::BLOCK_BYTES, 4, scratch);
}

/// Scalar reference: `out[r * n_tok + t] = row r · acts[t]` for repacked `w` (see
/// `simd::matmul` for the layout of `acts` and `out`).
pub fn matmul_ref(w: &[u8], nb: usize, acts: &[BlockQ8_1], n_tok: usize, out: &mut [f32]) {
    let rb = nb * q4_1::BLOCK_BYTES;
    if rb == 0 {
        return;
    }
    let n_rows = w.len() / rb;
    let full = n_rows / ROWS * ROWS;
    for (g, group) in w[..full * rb].chunks_exact(ROWS * rb).enumerate() {
        for i in 0..ROWS {
            for t in 0..n_tok {
                let mut acc = 0f32;
                for (b, ab) in acts[t * nb..(t + 1) * nb].iter().enumerate() {
                    let rec = &group[b * RECORD_BYTES..(b + 1) * RECORD_BYTES];
                    let mut isum = 0i32;
                    for k in 0..4 {
                        for j in 0..4 {
                            let q = rec[32 + 32 * k + 4 * i + j];
                            isum += i32::from(q & 15) * i32::from(ab.qs[4 * k + j]);
                            isum += i32::from(q >> 4) * i32::from(ab.qs[16 + 4 * k + j]);
                        }
                    }
                    let d = f16_le_to_f32([rec[4 * i], rec[4 * i + 1]]);
                    let m = f16_le_to_f32([rec[4 * i + 2], rec[4 * i + 3]]);
                    acc = acc + (d * ab.d) * isum as f32 + m * ab.s;
                }
                out[(g * ROWS + i) * n_tok + t] = acc;
            }
        }
    }
    // The rows past the last full group are still in the GGUF layout.
    for r in full..n_rows {
        for t in 0..n_tok {
            out[r * n_tok + t] =
                q4_1::vec_dot_ref(&w[r * rb..(r + 1) * rb], &acts[t * nb..(t + 1) * nb]);
        }
    }
}
