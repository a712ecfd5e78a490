//! Q5_K rows repacked eight at a time (`Q5_Kx8`): [`super::q4_kx8`]'s layout with the high
//! bits.
//!
//! The same bytes as eight GGUF Q5_K rows, reordered in place: for each 256-block column a
//! 1408-byte record of `Q4_Kx8`'s header (8 `d`, 8 `dmin`, 8 groups of 12 bytes of the rows'
//! sub-block scales and mins), then 8 high-bit planes `g` of 32 bytes at `128 + 32g`: bit `j`
//! of byte `4i + n` is bit 4 of row `i`'s element `32j + 4g + n` (the planes are the rows'
//! `qh` bytes in chunks, as the nibbles: byte `4g + n` of row `i` at `4i + n` of plane `g`),
//! then `Q4_Kx8`'s 32 nibble chunks at `384`. The value register of sub-block `j` and 4-group
//! `g` lies lane for lane with plane `g`, whose bit `j` is its bit 4: a 16-bit shift by `4 − j`
//! and a mask. The arithmetic is the GGUF layout's ([`q5_k::vec_dot_ref`], Q4_K's with 5-bit
//! values).

use super::q8_k::BlockQ8_K;
use super::{q4_kx8, q5_k, rows8};

pub use super::rows8::ROWS;

/// Bytes of one block column of a group.
pub const RECORD_BYTES: usize = ROWS * q5_k::BLOCK_BYTES;
const _: () = assert!(RECORD_BYTES == 8 * 4 + 8 * 12 + 64 * 4 + 32 * 32);

/// Repacks the full groups of `rows` (`n_rows × nb` GGUF Q5_K blocks) in place; a tail of
/// fewer than 8 rows is left as it is. `scratch` holds one group while it is rewritten.
pub fn repack(rows: &mut [u8], nb: usize, scratch: &mut Vec<u8>) {
    q4_kx8::repack_k(rows, nb, scratch, true);
}

/// Row `r`'s GGUF bytes of `w` (rows of `nb` blocks, repacked by [`repack`]) into `out`
/// (one row long): the inverse of the repacking for that row.
pub fn gguf_row(w: &[u8], nb: usize, r: usize, out: &mut [u8]) {
    q4_kx8::gguf_row_k(w, nb, r, out, true);
}

/// Scalar reference: `out[r * n_tok + t] = row r · acts[t]` for repacked `w` (see
/// `simd::matmul_q8_k` for the layout of `acts` and `out`).
pub fn matmul_ref(w: &[u8], nb: usize, acts: &[BlockQ8_K], n_tok: usize, out: &mut [f32]) {
    rows8::matmul_ref_blocks(
        w,
        nb,
        q5_k::BLOCK_BYTES,
        acts,
        n_tok,
        out,
        |acc, rec, i, a| q4_kx8::block_k(acc, rec, i, a, true),
        q5_k::vec_dot_ref,
    );
}
