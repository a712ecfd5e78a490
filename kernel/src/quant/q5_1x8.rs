//! Q5_1 rows repacked eight at a time (`Q5_1x8`, see [`super::rows8`]): [`super::q5_0x8`]'s
//! layout with a min.
//!
//! The same bytes as eight GGUF Q5_1 rows, reordered in place: for each block column a
//! 192-byte record of
//! - 8 header words: row `i`'s `d` and `m` (its block's first 4 bytes, verbatim) at `4i`,
//! - a high-bit plane of 32 bytes at 32: bit `j` of byte `4i + n` is bit 4 of row `i`'s
//!   element `4j + n` (the eight rows' `qh` words, their bits regrouped), then
//! - 4 chunks `k = 0..4` of 32 bytes at `64 + 32k`: row `i`'s nibble bytes `4k..4k+4` at
//!   `4i..4i+4` (low nibbles: elements `4k..4k+4`, high nibbles: elements `16+4k..20+4k`).
//!
//! So value vector `j` (chunk `j % 4`'s low nibbles for `j < 4`, high for the others) holds
//! elements `4j..4j+4` of every row, lane for lane with the plane, whose bit `j` is their bit 4.
//! The arithmetic is the GGUF layout's ([`q5_1::vec_dot_ref`]): per block the exact integer
//! `Σ q · a`, then `acc = acc + (d · da) · isum + m · sa` in block order.

use super::q8_1::BlockQ8_1;
use super::{q5_0x8, q5_1, rows8};

pub use super::rows8::ROWS;

/// Bytes of one block column of a group.
pub const RECORD_BYTES: usize = ROWS * q5_1::BLOCK_BYTES;
const _: () = assert!(RECORD_BYTES == 8 * 4 + 8 * 4 + 4 * 32);

/// Repacks the full groups of `rows` (`n_rows × nb` GGUF Q5_1 blocks) in place; a tail of
/// fewer than 8 rows is left as it is. `scratch` holds one group while it is rewritten.
pub fn repack(rows: &mut [u8], nb: usize, scratch: &mut Vec<u8>) {
    // Headers `d, m, qh` (8 bytes) side by side, then the nibble chunks; then the headers
    // split into the scale words and the high-bit plane.
    rows8::repack(rows, nb, q5_1::BLOCK_BYTES, 8, scratch);
    if nb == 0 {
        return;
    }
    let full = rows.len() / (nb * q5_1::BLOCK_BYTES) / ROWS * ROWS;
    for rec in rows[..full * nb * q5_1::BLOCK_BYTES].chunks_exact_mut(RECORD_BYTES) {
        q5_0x8::regroup_high_bits(rec, 4);
    }
}

/// Row `i`'s element `e` of a record, the unsigned 5-bit `q`.
#[inline]
fn value(rec: &[u8], i: usize, e: usize) -> i32 {
    q5_0x8::five_bit_value(rec, 32, i, e)
}

/// Scalar reference: `out[r * n_tok + t] = row r · acts[t]` for repacked `w` (see
/// `simd::matmul` for the layout of `acts` and `out`).
pub fn matmul_ref(w: &[u8], nb: usize, acts: &[BlockQ8_1], n_tok: usize, out: &mut [f32]) {
    rows8::matmul_ref(
        w,
        nb,
        q5_1::BLOCK_BYTES,
        acts,
        n_tok,
        out,
        value,
        rows8::scaled_with_min,
        q5_1::vec_dot_ref,
    );
}

/// Row `r`'s GGUF bytes of `w` (rows of `nb` blocks, repacked by [`repack`]) into `out`
/// (one row long): the inverse of the repacking for that row.
pub fn gguf_row(w: &[u8], nb: usize, r: usize, out: &mut [u8]) {
    rows8::gguf_row(w, nb, q5_1::BLOCK_BYTES, r, out, |rec, i, blk| {
        q5_0x8::five_bit_block(rec, 4, i, blk)
    });
}
