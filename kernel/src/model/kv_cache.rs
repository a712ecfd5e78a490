//! The key/value cache: per layer, keys and values for each position as half floats (as
//! llama.cpp's default f16 cache holds them: 2 bytes a value), grown in chunks as positions
//! are appended (never beyond `n_ctx`).
//!
//! Values are rounded to the nearest half float on entry; attention widens them exactly as it
//! reads them (`simd::dots_f16`, `simd::weighted_sum_f16`).

use crate::simd::{self, Isa};

/// Positions added to the capacity at a time.
const CHUNK: usize = 256;

/// Keys and values of every layer for positions `0..len`.
#[derive(Debug)]
pub struct KvCache {
    /// Per layer, `[len][kv_dim]` keys (half-float bits).
    k: Vec<Vec<u16>>,
    /// Per layer, `[len][kv_dim]` values (half-float bits).
    v: Vec<Vec<u16>>,
    kv_dim: usize,
    n_ctx: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new(n_layer: usize, kv_dim: usize, n_ctx: usize) -> KvCache {
        KvCache {
            k: (0..n_layer).map(|_| Vec::new()).collect(),
            v: (0..n_layer).map(|_| Vec::new()).collect(),
            kv_dim,
            n_ctx,
            len: 0,
        }
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no position is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values per buffer [`KvCache::reserve`] makes room for, for `n` positions: `n` rounded
    /// up to a chunk, capped at `n_ctx` (but never below `n`).
    fn room_for(&self, n: usize) -> usize {
        n.div_ceil(CHUNK)
            .saturating_mul(CHUNK)
            .min(self.n_ctx)
            .max(n)
            .saturating_mul(self.kv_dim)
    }

    /// Bytes the keys and values of every layer take once the cache has made room for `n`
    /// positions ([`KvCache::reserve`]): what a session holding `n` positions needs.
    pub fn bytes_for(&self, n: usize) -> usize {
        let buffers = self.k.len() + self.v.len();
        self.room_for(n)
            .saturating_mul(buffers)
            .saturating_mul(size_of::<u16>())
    }

    /// Makes room for `n` positions in total (rounded up to a chunk, capped at `n_ctx`), or
    /// says that the allocator has none (an instance at its memory limit, under WebAssembly),
    /// leaving the positions stored as they were.
    pub fn reserve(&mut self, n: usize) -> Result<(), std::collections::TryReserveError> {
        let want = self.room_for(n);
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            if buf.capacity() < want {
                buf.try_reserve_exact(want - buf.len())?;
            }
        }
        Ok(())
    }

    /// Appends keys and values (`[n][kv_dim]` each) of layer `l` at positions `len..len+n`;
    /// call [`KvCache::commit`] once all layers are appended.
    pub fn append(&mut self, isa: Isa, l: usize, k: &[f32], v: &[f32]) {
        let base = self.len * self.kv_dim;
        for (buf, new) in [(&mut self.k[l], k), (&mut self.v[l], v)] {
            buf.resize(base + new.len(), 0);
            simd::narrow_f16(isa, new, &mut buf[base..]);
        }
    }

    /// Declares `n` appended positions.
    pub fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Keys of layer `l` for positions `0..n` (`[n][kv_dim]` half-float bits).
    pub fn keys(&self, l: usize, n: usize) -> &[u16] {
        &self.k[l][..n * self.kv_dim]
    }

    /// Values of layer `l` for positions `0..n` (`[n][kv_dim]` half-float bits).
    pub fn values(&self, l: usize, n: usize) -> &[u16] {
        &self.v[l][..n * self.kv_dim]
    }

    /// Keeps the first `n` positions, and gives back the memory of all but one chunk beyond
    /// them: a session that once held a long request holds, once truncated (a new request
    /// keeping only a shared prefix), about what the new one needs.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
        let keep = self.len * self.kv_dim;
        let spare = self.room_for(self.len + CHUNK);
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            buf.truncate(keep);
            if buf.capacity() > spare {
                buf.shrink_to(spare);
            }
        }
    }

    /// Drops every position and gives back all the memory.
    pub fn release(&mut self) {
        self.len = 0;
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            *buf = Vec::new();
        }
    }

    /// Bytes allocated for keys and values.
    pub fn capacity_bytes(&self) -> usize {
        let values: usize = self.k.iter().chain(&self.v).map(Vec::capacity).sum();
        values * size_of::<u16>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncating_gives_back_all_but_one_spare_chunk() {
        let (n_layer, kv_dim) = (2, 8);
        let mut c = KvCache::new(n_layer, kv_dim, 4096);
        let chunk_bytes = n_layer * 2 * CHUNK * kv_dim * 2;
        let x = vec![1.0f32; 3000 * kv_dim];
        c.reserve(3000).unwrap();
        for l in 0..n_layer {
            c.append(Isa::Scalar, l, &x, &x);
        }
        c.commit(3000);
        assert!(c.capacity_bytes() >= 3000 * kv_dim * 2 * 2 * n_layer);
        c.truncate(10);
        assert_eq!(c.len(), 10);
        assert!(
            c.capacity_bytes() <= 2 * chunk_bytes,
            "{}",
            c.capacity_bytes()
        );
        assert_eq!(
            c.keys(1, 10),
            &vec![0x3c00u16; 10 * kv_dim][..],
            "1.0 as a half"
        );
        // Truncating to where it is keeps what is there.
        c.truncate(10);
        assert!(c.capacity_bytes() <= 2 * chunk_bytes);
        assert_eq!(c.values(0, 10).len(), 10 * kv_dim);
        c.release();
        assert_eq!((c.len(), c.capacity_bytes()), (0, 0));
    }

    #[test]
    fn bytes_for_is_what_reserving_allocates() {
        let (n_layer, kv_dim) = (3, 8);
        let mut c = KvCache::new(n_layer, kv_dim, 600);
        assert_eq!(c.bytes_for(0), 0);
        for n in [1, 255, 256, 257, 599, 600] {
            c.reserve(n).unwrap();
            assert_eq!(c.capacity_bytes(), c.bytes_for(n), "{n} positions");
        }
        assert_eq!(
            c.bytes_for(1),
            n_layer * 2 * CHUNK * kv_dim * 2,
            "a whole chunk"
        );
        assert_eq!(
            c.bytes_for(520),
            n_layer * 2 * 600 * kv_dim * 2,
            "capped at n_ctx"
        );
    }

    #[test]
    fn a_cache_too_large_to_allocate_is_an_error_that_keeps_what_is_stored() {
        let mut c = KvCache::new(1, 4, usize::MAX);
        let x = [0.5f32; 4];
        c.reserve(1).unwrap();
        c.append(Isa::Scalar, 0, &x, &x);
        c.commit(1);
        // More values than an address space holds: refused, not aborted, on any machine.
        assert!(c.reserve(usize::MAX / 2).is_err());
        assert_eq!(c.len(), 1);
        assert_eq!(c.keys(0, 1), &[0x3800u16; 4][..], "0.5 as a half");
    }
}
