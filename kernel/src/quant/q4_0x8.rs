//! Q4_0 rows repacked eight at a time (`Q4_0x8`, see [`super::rows8`]).
//!
//! The same bytes as eight GGUF Q4_0 rows, reordered in place: for each block column a
//! 144-byte record of
//! - 8 scales: row `i`'s half-float `d` at `2i`, then
//! - 4 chunks `k = 0..4` of 32 bytes at `16 + 32k`: row `i`'s nibble bytes `4k..4k+4` at
//!   `4i..4i+4` (low nibbles: elements `4k..4k+4`, high nibbles: elements `16+4k..20+4k`).
//!
//! The arithmetic is the GGUF layout's ([`q4_0::vec_dot_ref`]): per block the exact integer
//! `Σ (q − 8) · a`, then `acc = acc + (d · da) · isum` in block order. SIMD kernels dot the
//! unsigned nibbles and subtract `8 · Σ a`, the same integer.

use super::q8_1::BlockQ8_1;
use super::{q4_0, rows8};

pub use super::rows8::ROWS;

/// Bytes of one block column of a group.
pub const RECORD_BYTES: usize = ROWS * q4_0::BLOCK_BYTES;
const _: () = assert!(RECORD_BYTES == 8 * 2 + 4 * 32);

/// Repacks the full groups of `rows` (`n_rows × nb` GGUF Q4_0 blocks) in place; a tail of
/// fewer than 8 rows is left as it is. `scratch` holds one group while it is rewritten.
pub fn repack(rows: &mut [u8], nb: usize, scratch: &mut Vec<u8>) {
    rows8::repack(rows, nb, q4_0::BLOCK_BYTES, 2, scratch);
}

/// Row `r`'s GGUF bytes of `w` (rows of `nb` blocks, repacked by [`repack`]) into `out`.
pub fn gguf_row(w: &[u8], nb: usize, r: usize, out: &mut [u8]) {
    rows8::gguf_row(w, nb, q4_0::BLOCK_BYTES, r, out, |rec, i, blk| {
        rows8::gguf_block(rec, 2, i, blk)
    });
}

/// Row `i`'s element `e` of a record, `q − 8`.
#[inline]
fn value(rec: &[u8], i: usize, e: usize) -> i32 {
    let byte = rows8::value_byte(rec, 16, i, e % 16);
    let q = if e < 16 { byte & 15 } else { byte >> 4 };
    i32::from(q) - 8
}

/// Scalar reference: `out[r * n_tok + t] = row r · acts[t]` for repacked `w` (see
/// `simd::matmul` for the layout of `acts` and `out`).
pub fn matmul_ref(w: &[u8], nb: usize, acts: &[BlockQ8_1], n_tok: usize, out: &mut [f32]) {
    rows8::matmul_ref(
        w,
        nb,
        q4_0::BLOCK_BYTES,
        acts,
        n_tok,
        out,
        value,
        rows8::scaled,
        q4_0::vec_dot_ref,
    );
}
