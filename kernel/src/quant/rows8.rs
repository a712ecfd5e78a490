//! What the layouts that repack rows eight at a time share ([`super::q4_1x8`],
//! [`super::q4_0x8`], [`super::q5_0x8`], [`super::q5_1x8`], [`super::q8_0x8`]; the K-quants'
//! [`super::q4_kx8`] and [`super::q6_kx8`] keep the records, with their own order inside).
//!
//! A group of eight GGUF rows of one 32-block type is rewritten in place, block column by
//! block column, into records of the same total size: the eight rows' block headers, then
//! chunks of 32 bytes that hold four value bytes of every row (row `i`'s bytes `4k..4k+4` of
//! the block's values at `4i..4i+4` of chunk `k`). One register then holds four value bytes
//! of all eight rows, so a broadcast of the matching activation bytes gives the eight rows'
//! partial dot products lane by lane, with no horizontal reduction.
//!
//! Rows past the last full group of eight keep the GGUF layout.

use super::f16::f16_le_to_f32;
use super::q8_1::BlockQ8_1;

/// Rows per group.
pub const ROWS: usize = 8;

/// The version of the repacked layouts and of which matrices
/// [`crate::model::Weights::repack`] repacks: caches of repacked files key on it, so bump it
/// when either changes.
pub const LAYOUT_VERSION: u32 = 8;

/// Repacks the full groups of `rows` (`n_rows × nb` GGUF blocks of `block_bytes`, each a
/// header of `head_bytes` then the values) in place into records of `8 · block_bytes`: the
/// 8 headers (row `i`'s at `head_bytes · i`), then the values in 32-byte chunks as above. A
/// tail of fewer than 8 rows is left as it is. `scratch` holds one group while it is
/// rewritten.
pub(crate) fn repack(
    rows: &mut [u8],
    nb: usize,
    block_bytes: usize,
    head_bytes: usize,
    scratch: &mut Vec<u8>,
) {
    let rb = nb * block_bytes;
    let record = ROWS * block_bytes;
    let chunks = (block_bytes - head_bytes) / 4;
    if rb == 0 {
        return;
    }
    for group in rows.chunks_exact_mut(ROWS * rb) {
        scratch.clear();
        scratch.extend_from_slice(group);
        for b in 0..nb {
            let rec = &mut group[b * record..(b + 1) * record];
            for i in 0..ROWS {
                let blk = &scratch[i * rb + b * block_bytes..][..block_bytes];
                rec[head_bytes * i..head_bytes * (i + 1)].copy_from_slice(&blk[..head_bytes]);
                for k in 0..chunks {
                    let at = ROWS * head_bytes + 32 * k + 4 * i;
                    rec[at..at + 4].copy_from_slice(&blk[head_bytes + 4 * k..][..4]);
                }
            }
        }
    }
}

/// Row `r`'s GGUF bytes (`nb` blocks of `block_bytes`) of `w`, whose full groups [`repack`]
/// rewrote, into `out`: a tail row as it is, a repacked one block by block through `block`,
/// which writes row `i`'s GGUF block of a record (the inverse of the repacking for that row).
pub(crate) fn gguf_row(
    w: &[u8],
    nb: usize,
    block_bytes: usize,
    r: usize,
    out: &mut [u8],
    block: impl Fn(&[u8], usize, &mut [u8]),
) {
    let rb = nb * block_bytes;
    let full = w.len().checked_div(rb).unwrap_or(0) / ROWS * ROWS;
    if r >= full {
        out.copy_from_slice(&w[r * rb..(r + 1) * rb]);
        return;
    }
    let record = ROWS * block_bytes;
    let group = &w[r / ROWS * ROWS * rb..][..ROWS * rb];
    for (rec, blk) in group
        .chunks_exact(record)
        .zip(out.chunks_exact_mut(block_bytes))
    {
        block(rec, r % ROWS, blk);
    }
}

/// Row `i`'s GGUF block of a record whose headers ([`repack`]'s `head_bytes` each) lie side
/// by side: its header, then its value bytes.
pub(crate) fn gguf_block(rec: &[u8], head_bytes: usize, i: usize, out: &mut [u8]) {
    out[..head_bytes].copy_from_slice(&rec[head_bytes * i..head_bytes * (i + 1)]);
    let heads = ROWS * head_bytes;
    for (j, byte) in out[head_bytes..].iter_mut().enumerate() {
        *byte = value_byte(rec, heads, i, j);
    }
}

/// Row `i`'s value byte `j` (of the block's values, GGUF order) in a record whose headers
/// take `heads` bytes.
#[inline]
pub(crate) fn value_byte(rec: &[u8], heads: usize, i: usize, j: usize) -> u8 {
    rec[heads + 32 * (j / 4) + 4 * i + j % 4]
}

/// Scalar reference of the repacked layouts: `out[r * n_tok + t] = row r · acts[t]` for `w` of
/// `nb` blocks of `block_bytes` per row, whose full groups are repacked. Per block, the exact
/// integer `isum = Σ v(rec, i, e) · a[e]` over elements `e`, then `acc = step(acc, rec, i,
/// isum, a)` in block order: the GGUF layout's arithmetic ([`scaled`] for Q4_0, Q5_0 and Q8_0,
/// [`scaled_with_min`] for Q4_1 and Q5_1, as [`super::q4_0::vec_dot_ref`] and its siblings;
/// `gguf_dot` is that reference, for the tail rows).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_ref(
    w: &[u8],
    nb: usize,
    block_bytes: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    value: impl Fn(&[u8], usize, usize) -> i32,
    step: impl Fn(f32, &[u8], usize, i32, &BlockQ8_1) -> f32,
    gguf_dot: fn(&[u8], &[BlockQ8_1]) -> f32,
) {
    let block = |acc: f32, rec: &[u8], i: usize, ab: &BlockQ8_1| {
        let mut isum = 0i32;
        for (e, &x) in ab.qs.iter().enumerate() {
            isum += value(rec, i, e) * i32::from(x);
        }
        step(acc, rec, i, isum, ab)
    };
    matmul_ref_blocks(w, nb, block_bytes, acts, n_tok, out, block, gguf_dot);
}

/// [`matmul_ref`]'s block step for weights `d · v`, `d` the half float at `2i` of the record:
/// `acc + (d · da) · isum`.
#[inline]
pub(crate) fn scaled(acc: f32, rec: &[u8], i: usize, isum: i32, ab: &BlockQ8_1) -> f32 {
    let d = f16_le_to_f32([rec[2 * i], rec[2 * i + 1]]);
    acc + (d * ab.d) * isum as f32
}

/// [`matmul_ref`]'s block step for weights `d · q + m`, `d` and `m` the half floats at `4i`
/// and `4i + 2` of the record: `acc + (d · da) · isum + m · sa`.
#[inline]
pub(crate) fn scaled_with_min(acc: f32, rec: &[u8], i: usize, isum: i32, ab: &BlockQ8_1) -> f32 {
    let d = f16_le_to_f32([rec[4 * i], rec[4 * i + 1]]);
    let m = f16_le_to_f32([rec[4 * i + 2], rec[4 * i + 3]]);
    acc + (d * ab.d) * isum as f32 + m * ab.s
}

/// The scalar reference's walk over the repacked layouts, for any activation block type `A`
/// (Q8_1 for [`matmul_ref`], Q8_K for the K-quant layouts [`super::q4_kx8`], [`super::q5_kx8`],
/// [`super::q6_kx8`]): `out[r * n_tok + t] = row r · acts[t]`, `acc = block(acc, rec, i, a)`
/// per block in block order (the GGUF layout's arithmetic for row `i` of the record `rec`);
/// `gguf_dot`, that layout's reference, for the tail rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_ref_blocks<A>(
    w: &[u8],
    nb: usize,
    block_bytes: usize,
    acts: &[A],
    n_tok: usize,
    out: &mut [f32],
    block: impl Fn(f32, &[u8], usize, &A) -> f32,
    gguf_dot: fn(&[u8], &[A]) -> f32,
) {
    let rb = nb * block_bytes;
    if rb == 0 {
        return;
    }
    let record = ROWS * block_bytes;
    let n_rows = w.len() / rb;
    let full = n_rows / ROWS * ROWS;
    for (g, group) in w[..full * rb].chunks_exact(ROWS * rb).enumerate() {
        for i in 0..ROWS {
            for t in 0..n_tok {
                let mut acc = 0f32;
                for (b, ab) in acts[t * nb..(t + 1) * nb].iter().enumerate() {
                    acc = block(acc, &group[b * record..(b + 1) * record], i, ab);
                }
                out[(g * ROWS + i) * n_tok + t] = acc;
            }
        }
    }
    for r in full..n_rows {
        for t in 0..n_tok {
            out[r * n_tok + t] = gguf_dot(&w[r * rb..(r + 1) * rb], &acts[t * nb..(t + 1) * nb]);
        }
    }
}

/// Rewrites the full groups of eight rows of `rows` (`nb` blocks of `block_bytes` per row)
/// in place, record by record: `record(blocks, rec)` writes the record of one block column
/// from the 8 rows' GGUF blocks. A tail of fewer than 8 rows is left as it is.
pub(crate) fn repack_with(
    rows: &mut [u8],
    nb: usize,
    block_bytes: usize,
    scratch: &mut Vec<u8>,
    record: impl Fn([&[u8]; ROWS], &mut [u8]),
) {
    let rb = nb * block_bytes;
    if rb == 0 {
        return;
    }
    let bytes = ROWS * block_bytes;
    for group in rows.chunks_exact_mut(ROWS * rb) {
        scratch.clear();
        scratch.extend_from_slice(group);
        for (b, rec) in group.chunks_exact_mut(bytes).enumerate() {
            let blocks =
                core::array::from_fn(|i| &scratch[i * rb + b * block_bytes..][..block_bytes]);
            record(blocks, rec);
        }
    }
}
