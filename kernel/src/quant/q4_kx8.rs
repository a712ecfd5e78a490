//! Q4_K rows repacked eight at a time (`Q4_Kx8`, records as in [`super::rows8`]).
//!
//! The same bytes as eight GGUF Q4_K rows, reordered in place: for each 256-block column a
//! 1152-byte record of
//! - 8 scales `d` (row `i`'s half float at `2i`), then 8 `dmin` (at `16 + 2i`),
//! - 8 groups `j = 0..8` of 12 bytes at `32 + 12j`: sub-block `j`'s 6-bit scales and mins of
//!   the 8 rows, packed as one GGUF block packs its 8 sub-blocks' (row `i` where
//!   [`q4_k::scale_min`] reads sub-block `i`), so one decode gives a scale and a min per row,
//! - 32 chunks `k` of 32 bytes at `128 + 32k`: row `i`'s nibble bytes `4k..4k+4` at `4i`.
//!
//! Nibble byte `32c + l` holds element `64c + l` (low) and `64c + 32 + l` (high), so chunk
//! `8c + g`'s low nibbles are elements `32·2c + 4g..+4` of every row (sub-block `2c`) and its
//! high nibbles those of sub-block `2c + 1`: a register of 4 values of all 8 rows, dotted with
//! a broadcast of 4 activation bytes, with no horizontal reduction. The arithmetic is the GGUF
//! layout's ([`q4_k::vec_dot_ref`]): per block the exact integers `Σ_j sc_j·Σ q·a` and
//! `Σ_j m_j·(bsum_2j + bsum_2j+1)`, then `acc + (d·da)·isum − (dmin·da)·imin` in block order.

use super::f16::f16_le_to_f32;
use super::q4_k::{self, pack_scale_min, scale_min};
use super::q5_k;
use super::q8_k::BlockQ8_K;
use super::rows8;

pub use super::rows8::ROWS;

/// Bytes of one block column of a group.
pub const RECORD_BYTES: usize = ROWS * q4_k::BLOCK_BYTES;
const _: () = assert!(RECORD_BYTES == 8 * 4 + 8 * 12 + 32 * 32);

/// Offset of the scale groups in a record.
const SCALES: usize = 32;
/// Offset of the nibble chunks in a Q4_K record, and of the high-bit planes in a Q5_K one.
const HIGH: usize = 128;

/// Repacks the full groups of `rows` (`n_rows × nb` GGUF Q4_K blocks) in place; a tail of
/// fewer than 8 rows is left as it is. `scratch` holds one group while it is rewritten.
pub fn repack(rows: &mut [u8], nb: usize, scratch: &mut Vec<u8>) {
    repack_k(rows, nb, scratch, false);
}

/// [`repack`] for Q4_K (`five` false) or Q5_K blocks ([`super::q5_kx8`]: the high bits at
/// `128..384` of the record, the chunks after them).
pub(super) fn repack_k(rows: &mut [u8], nb: usize, scratch: &mut Vec<u8>, five: bool) {
    let (block_bytes, qs, chunks) = geometry(five);
    rows8::repack_with(rows, nb, block_bytes, scratch, |blocks, rec| {
        for (i, blk) in blocks.iter().enumerate() {
            rec[2 * i..2 * i + 2].copy_from_slice(&blk[..2]);
            rec[16 + 2 * i..18 + 2 * i].copy_from_slice(&blk[2..4]);
            for k in 0..32 {
                let at = chunks + 32 * k + 4 * i;
                rec[at..at + 4].copy_from_slice(&blk[qs + 4 * k..qs + 4 * k + 4]);
            }
        }
        for j in 0..8 {
            let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
            for (i, blk) in blocks.iter().enumerate() {
                (sc[i], m[i]) = scale_min(&blk[4..16], j);
            }
            rec[SCALES + 12 * j..SCALES + 12 * (j + 1)].copy_from_slice(&pack_scale_min(&sc, &m));
        }
        if five {
            // Plane g, byte 4i + n: row i's qh byte 4g + n, whose bit j is the high bit of its
            // element 32j + 4g + n (the qh bytes in 32-byte chunks, as the nibbles).
            for (i, blk) in blocks.iter().enumerate() {
                for g in 0..8 {
                    let at = HIGH + 32 * g + 4 * i;
                    rec[at..at + 4].copy_from_slice(&blk[16 + 4 * g..20 + 4 * g]);
                }
            }
        }
    });
}

/// `(block bytes, offset of qs in a GGUF block, offset of the chunks in a record)` of Q4_K or
/// (`five`) Q5_K.
fn geometry(five: bool) -> (usize, usize, usize) {
    if five {
        (q5_k::BLOCK_BYTES, 48, HIGH + 256)
    } else {
        (q4_k::BLOCK_BYTES, 16, HIGH)
    }
}

/// Row `r`'s GGUF bytes of `w` (rows of `nb` blocks, repacked by [`repack`]) into `out`
/// (one row long): the inverse of the repacking for that row.
pub fn gguf_row(w: &[u8], nb: usize, r: usize, out: &mut [u8]) {
    gguf_row_k(w, nb, r, out, false);
}

/// [`gguf_row`] for Q4_K or (`five`) Q5_K.
pub(super) fn gguf_row_k(w: &[u8], nb: usize, r: usize, out: &mut [u8], five: bool) {
    let (block_bytes, qs, chunks) = geometry(five);
    rows8::gguf_row(w, nb, block_bytes, r, out, |rec, i, blk| {
        blk[..2].copy_from_slice(&rec[2 * i..2 * i + 2]);
        blk[2..4].copy_from_slice(&rec[16 + 2 * i..18 + 2 * i]);
        let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
        for j in 0..8 {
            (sc[j], m[j]) = scale_min(&rec[SCALES + 12 * j..SCALES + 12 * (j + 1)], i);
        }
        blk[4..16].copy_from_slice(&pack_scale_min(&sc, &m));
        for (k, byte) in blk[qs..].iter_mut().enumerate() {
            *byte = rows8::value_byte(rec, chunks, i, k);
        }
        if five {
            for (l, byte) in blk[16..48].iter_mut().enumerate() {
                *byte = rows8::value_byte(rec, HIGH, i, l);
            }
        }
    });
}

/// Bit 4 of row `i`'s element `e` in a Q5_K record.
fn high_bit(rec: &[u8], i: usize, e: usize) -> u8 {
    (rows8::value_byte(rec, HIGH, i, e % 32) >> (e / 32)) & 1
}

/// Row `i`'s block of the record `rec` against `a`: the GGUF layout's block step (Q4_K, or
/// with `five` Q5_K, whose values have their high bits).
pub(super) fn block_k(acc: f32, rec: &[u8], i: usize, a: &BlockQ8_K, five: bool) -> f32 {
    let chunks = geometry(five).2;
    let (mut isum, mut imin) = (0i32, 0i32);
    for j in 0..8 {
        let (sc, m) = scale_min(&rec[SCALES + 12 * j..SCALES + 12 * (j + 1)], i);
        let mut dot = 0i32;
        for l in 0..32 {
            let byte = rows8::value_byte(rec, chunks, i, 32 * (j / 2) + l);
            let mut q = if j % 2 == 0 { byte & 15 } else { byte >> 4 };
            if five {
                q |= high_bit(rec, i, 32 * j + l) << 4;
            }
            dot += i32::from(q) * i32::from(a.qs[32 * j + l]);
        }
        isum += i32::from(sc) * dot;
        imin += i32::from(m) * (i32::from(a.bsums[2 * j]) + i32::from(a.bsums[2 * j + 1]));
    }
    let d = f16_le_to_f32([rec[2 * i], rec[2 * i + 1]]);
    let dmin = f16_le_to_f32([rec[16 + 2 * i], rec[17 + 2 * i]]);
    acc + (d * a.d) * isum as f32 - (dmin * a.d) * imin as f32
}

/// Scalar reference: `out[r * n_tok + t] = row r · acts[t]` for repacked `w` (see
/// `simd::matmul_q8_k` for the layout of `acts` and `out`).
pub fn matmul_ref(w: &[u8], nb: usize, acts: &[BlockQ8_K], n_tok: usize, out: &mut [f32]) {
    rows8::matmul_ref_blocks(
        w,
        nb,
        q4_k::BLOCK_BYTES,
        acts,
        n_tok,
        out,
        |acc, rec, i, a| block_k(acc, rec, i, a, false),
        q4_k::vec_dot_ref,
    );
}
