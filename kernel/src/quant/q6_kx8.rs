//! Q6_K rows repacked eight at a time (`Q6_Kx8`, records as in [`super::rows8`]).
//!
//! The same bytes as eight GGUF Q6_K rows, reordered in place: for each 256-block column a
//! 1680-byte record of
//! - 8 scales `d` (row `i`'s half float at `2i`),
//! - the 16 sub-block scales of the 8 rows, in pairs: sub-block `2p + h`'s scale of row `i`
//!   at `16 + 16p + 2i + h` (so 16 bytes widened to `i16` put each row's pair in its lane),
//! - 32 nibble chunks `k` of 32 bytes at `144 + 32k` and 16 top chunks `k` at `1168 + 32k`:
//!   row `i`'s bytes `4k..4k+4` of each at `4i`, where (with `u = q + 32`, the stored 6-bit
//!   value of element `e`) nibble byte `b < 128` holds the low 4 bits of `u[b]` (low nibble)
//!   and `u[128 + b]` (high nibble), and bits `2s..2s+2` of top byte `b < 64` are the top 2
//!   bits of `u[64s + b]`.
//!
//! So the values of elements `4m..4m+4` of all 8 rows (`m = 0..64`) are nibble chunk `m % 32`
//! (low nibbles for `m < 32`) with top chunk `m % 16` shifted by `2·(m / 16)`: a register of 4
//! values of every row, dotted with a broadcast of 4 activation bytes, with no horizontal
//! reduction. The arithmetic is the GGUF layout's ([`q6_k::vec_dot_ref`]): per block the exact
//! integer `Σ_i sc_i·Σ (u − 32)·a`, then `acc + (d·da)·isum` in block order.

use super::f16::f16_le_to_f32;
use super::q6_k::{self, BlockQ6K};
use super::q8_k::BlockQ8_K;
use super::{rows8, QK_K};

pub use super::rows8::ROWS;

/// Bytes of one block column of a group.
pub const RECORD_BYTES: usize = ROWS * q6_k::BLOCK_BYTES;
const _: () = assert!(RECORD_BYTES == 8 * 2 + 8 * 16 + 32 * 32 + 16 * 32);

/// Offset of the sub-block scales in a record.
const SCALES: usize = 16;
/// Offset of the nibble chunks in a record.
const NIBBLES: usize = 144;
/// Offset of the top-bit chunks in a record.
const TOPS: usize = 1168;

/// Repacks the full groups of `rows` (`n_rows × nb` GGUF Q6_K blocks) in place; a tail of
/// fewer than 8 rows is left as it is. `scratch` holds one group while it is rewritten.
pub fn repack(rows: &mut [u8], nb: usize, scratch: &mut Vec<u8>) {
    rows8::repack_with(rows, nb, q6_k::BLOCK_BYTES, scratch, |blocks, rec| {
        for (i, blk) in blocks.iter().enumerate() {
            let b = BlockQ6K::read(blk);
            rec[2 * i..2 * i + 2].copy_from_slice(&b.d);
            for (s, &sc) in b.scales.iter().enumerate() {
                rec[SCALES + 16 * (s / 2) + 2 * i + s % 2] = sc as u8;
            }
            let u = b.values().map(|q| (q + 32) as u8);
            for k in 0..QK_K / 2 {
                let byte = (u[k] & 15) | ((u[128 + k] & 15) << 4);
                rec[NIBBLES + 32 * (k / 4) + 4 * i + k % 4] = byte;
            }
            for k in 0..QK_K / 4 {
                let byte = (0..4).fold(0u8, |t, s| t | ((u[64 * s + k] >> 4) << (2 * s)));
                rec[TOPS + 32 * (k / 4) + 4 * i + k % 4] = byte;
            }
        }
    });
}

/// Row `i`'s 256 values `u = q + 32` (0..=63) of the record `rec`, in element order.
fn values(rec: &[u8], i: usize) -> [u8; QK_K] {
    core::array::from_fn(|e| {
        let nib = rows8::value_byte(rec, NIBBLES, i, e % 128);
        let low = if e < 128 { nib & 15 } else { nib >> 4 };
        let top = (rows8::value_byte(rec, TOPS, i, e % 64) >> (2 * (e / 64))) & 3;
        low | (top << 4)
    })
}

/// Row `i`'s sub-block scales of the record `rec`.
fn scales(rec: &[u8], i: usize) -> [i8; 16] {
    core::array::from_fn(|s| rec[SCALES + 16 * (s / 2) + 2 * i + s % 2] as i8)
}

/// Row `r`'s GGUF bytes of `w` (rows of `nb` blocks, repacked by [`repack`]) into `out`
/// (one row long): the inverse of the repacking for that row.
pub fn gguf_row(w: &[u8], nb: usize, r: usize, out: &mut [u8]) {
    rows8::gguf_row(w, nb, q6_k::BLOCK_BYTES, r, out, |rec, i, blk| {
        let u = values(rec, i);
        for h in 0..2 {
            for l in 0..32 {
                let e = 128 * h + l;
                blk[64 * h + l] = (u[e] & 15) | ((u[e + 64] & 15) << 4);
                blk[64 * h + 32 + l] = (u[e + 32] & 15) | ((u[e + 96] & 15) << 4);
                blk[128 + 32 * h + l] = (u[e] >> 4)
                    | ((u[e + 32] >> 4) << 2)
                    | ((u[e + 64] >> 4) << 4)
                    | ((u[e + 96] >> 4) << 6);
            }
        }
        for (b, s) in blk[192..208].iter_mut().zip(scales(rec, i)) {
            *b = s as u8;
        }
        blk[208..210].copy_from_slice(&rec[2 * i..2 * i + 2]);
    });
}

/// Row `i`'s block of the record `rec` against `a`: the GGUF layout's block step.
fn block(acc: f32, rec: &[u8], i: usize, a: &BlockQ8_K) -> f32 {
    let (u, sc) = (values(rec, i), scales(rec, i));
    let mut isum = 0i32;
    for (s, (uc, ac)) in u.chunks_exact(16).zip(a.qs.chunks_exact(16)).enumerate() {
        let dot: i32 = uc
            .iter()
            .zip(ac)
            .map(|(&w, &x)| (i32::from(w) - 32) * i32::from(x))
            .sum();
        isum += i32::from(sc[s]) * dot;
    }
    acc + (f16_le_to_f32([rec[2 * i], rec[2 * i + 1]]) * a.d) * isum as f32
}

/// Scalar reference: `out[r * n_tok + t] = row r · acts[t]` for repacked `w` (see
/// `simd::matmul_q8_k` for the layout of `acts` and `out`).
pub fn matmul_ref(w: &[u8], nb: usize, acts: &[BlockQ8_K], n_tok: usize, out: &mut [f32]) {
    rows8::matmul_ref_blocks(
        w,
        nb,
        q6_k::BLOCK_BYTES,
        acts,
        n_tok,
        out,
        block,
        q6_k::vec_dot_ref,
    );
}
