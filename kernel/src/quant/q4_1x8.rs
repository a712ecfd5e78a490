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

/// Row `r`'s GGUF bytes of `w` (rows of `nb` blocks, repacked by [`repack`]) into `out`.
pub fn gguf_row(w: &[u8], nb: usize, r: usize, out: &mut [u8]) {
    rows8::gguf_row(w, nb, q4_1::BLOCK_BYTES, r, out, |rec, i, blk| {
        rows8::gguf_block(rec, 4, i, blk)
    });
}

/// Row `i`'s element `e` of a record, the unsigned nibble `q`.
#[inline]
fn value(rec: &[u8], i: usize, e: usize) -> i32 {
    let byte = rows8::value_byte(rec, 32, i, e % 16);
    i32::from(if e < 16 { byte & 15 } else { byte >> 4 })
}

/// Scalar reference: `out[r * n_tok + t] = row r · acts[t]` for repacked `w` (see
/// `simd::matmul` for the layout of `acts` and `out`).
pub fn matmul_ref(w: &[u8], nb: usize, acts: &[BlockQ8_1], n_tok: usize, out: &mut [f32]) {
    rows8::matmul_ref(
        w,
        nb,
        q4_1::BLOCK_BYTES,
        acts,
        n_tok,
        out,
        value,
        rows8::scaled_with_min,
        q4_1::vec_dot_ref,
    );
}
