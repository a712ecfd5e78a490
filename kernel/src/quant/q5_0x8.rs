//! Q5_0 rows repacked eight at a time (`Q5_0x8`, see [`super::rows8`]).
//!
//! The same bytes as eight GGUF Q5_0 rows, reordered in place: for each block column a
//! 176-byte record of
//! - 8 scales: row `i`'s half-float `d` at `2i`,
//! - a high-bit plane of 32 bytes at 16: bit `j` of byte `4i + n` is bit 4 of row `i`'s
//!   element `4j + n` (the eight rows' `qh` words, their bits regrouped), then
//! - 4 chunks `k = 0..4` of 32 bytes at `48 + 32k`: row `i`'s nibble bytes `4k..4k+4` at
//!   `4i..4i+4` (low nibbles: elements `4k..4k+4`, high nibbles: elements `16+4k..20+4k`).
//!
//! So value vector `j` (chunk `j % 4`'s low nibbles for `j < 4`, high for the others) holds
//! elements `4j..4j+4` of every row, lane for lane with the plane, whose bit `j` is their bit
//! 4: a 16-bit shift of the plane by `4 − j` and a mask put it in place (no bit spreading).
//! The arithmetic is the GGUF layout's ([`q5_0::vec_dot_ref`]): per block the exact integer
//! `Σ (q − 16) · a`, then `acc = acc + (d · da) · isum` in block order.

use super::q8_1::BlockQ8_1;
use super::{q5_0, rows8};

pub use super::rows8::ROWS;

/// Bytes of one block column of a group.
pub const RECORD_BYTES: usize = ROWS * q5_0::BLOCK_BYTES;
const _: () = assert!(RECORD_BYTES == 8 * 2 + 8 * 4 + 4 * 32);

/// Repacks the full groups of `rows` (`n_rows × nb` GGUF Q5_0 blocks) in place; a tail of
/// fewer than 8 rows is left as it is. `scratch` holds one group while it is rewritten.
pub fn repack(rows: &mut [u8], nb: usize, scratch: &mut Vec<u8>) {
    // Headers `d, qh` (6 bytes) side by side, then the nibble chunks; then the headers split.
    rows8::repack(rows, nb, q5_0::BLOCK_BYTES, 6, scratch);
    if nb == 0 {
        return;
    }
    let full = rows.len() / (nb * q5_0::BLOCK_BYTES) / ROWS * ROWS;
    for rec in rows[..full * nb * q5_0::BLOCK_BYTES].chunks_exact_mut(RECORD_BYTES) {
        regroup_high_bits(rec, 2);
    }
}

/// Row `r`'s GGUF bytes of `w` (rows of `nb` blocks, repacked by [`repack`]) into `out`.
pub fn gguf_row(w: &[u8], nb: usize, r: usize, out: &mut [u8]) {
    rows8::gguf_row(w, nb, q5_0::BLOCK_BYTES, r, out, |rec, i, blk| {
        five_bit_block(rec, 2, i, blk)
    });
}

/// Row `i`'s GGUF block (`scale_bytes` of scales, the `qh` word, the nibbles) of a record
/// whose headers [`regroup_high_bits`] rewrote: its inverse for one row. Shared with
/// [`super::q5_1x8`].
pub(super) fn five_bit_block(rec: &[u8], scale_bytes: usize, i: usize, blk: &mut [u8]) {
    blk[..scale_bytes].copy_from_slice(&rec[scale_bytes * i..scale_bytes * (i + 1)]);
    let high = ROWS * scale_bytes;
    let mut qh = 0u32;
    for e in 0..32 {
        qh |= u32::from((rec[high + 4 * i + e % 4] >> (e / 4)) & 1) << e;
    }
    blk[scale_bytes..scale_bytes + 4].copy_from_slice(&qh.to_le_bytes());
    for (k, byte) in blk[scale_bytes + 4..].iter_mut().enumerate() {
        *byte = rows8::value_byte(rec, high + 32, i, k);
    }
}

/// Rewrites the headers of a record that [`rows8::repack`] left as 8 × (`scale_bytes` of
/// scales, then the little-endian `qh` word): the 8 rows' scales side by side, then the
/// 32-byte high-bit plane at `8 · scale_bytes`, bit `j` of byte `4i + n` bit 4 of row `i`'s
/// element `4j + n`. Shared with [`super::q5_1x8`].
pub(super) fn regroup_high_bits(rec: &mut [u8], scale_bytes: usize) {
    let head_bytes = scale_bytes + 4;
    let mut head = [0u8; ROWS * 8];
    let mut plane = [0u8; 32];
    for i in 0..ROWS {
        let h = &rec[head_bytes * i..head_bytes * (i + 1)];
        head[scale_bytes * i..scale_bytes * (i + 1)].copy_from_slice(&h[..scale_bytes]);
        let qh = u32::from_le_bytes([
            h[scale_bytes],
            h[scale_bytes + 1],
            h[scale_bytes + 2],
            h[scale_bytes + 3],
        ]);
        for e in 0..32 {
            plane[4 * i + e % 4] |= (((qh >> e) & 1) as u8) << (e / 4);
        }
    }
    let at = ROWS * scale_bytes;
    head[at..at + 32].copy_from_slice(&plane);
    rec[..ROWS * head_bytes].copy_from_slice(&head[..ROWS * head_bytes]);
}

/// Row `i`'s element `e` (0..32) of a record whose high-bit plane starts at `high` and nibble
/// chunks at `high + 32`: the 5-bit `q`.
#[inline]
pub(super) fn five_bit_value(rec: &[u8], high: usize, i: usize, e: usize) -> i32 {
    let byte = rows8::value_byte(rec, high + 32, i, e % 16);
    let low = if e < 16 { byte & 15 } else { byte >> 4 };
    let bit = (rec[high + 4 * i + e % 4] >> (e / 4)) & 1;
    i32::from(low) + 16 * i32::from(bit)
}

/// Row `i`'s element `e` of a record, `q − 16`.
#[inline]
fn value(rec: &[u8], i: usize, e: usize) -> i32 {
    five_bit_value(rec, 16, i, e) - 16
}

/// Scalar reference: `out[r * n_tok + t] = row r · acts[t]` for repacked `w` (see
/// `simd::matmul` for the layout of `acts` and `out`).
pub fn matmul_ref(w: &[u8], nb: usize, acts: &[BlockQ8_1], n_tok: usize, out: &mut [f32]) {
    rows8::matmul_ref(
        w,
        nb,
        q5_0::BLOCK_BYTES,
        acts,
        n_tok,
        out,
        value,
        rows8::scaled,
        q5_0::vec_dot_ref,
    );
}
