//! Steady-state decoding allocates nothing per token: a counting global allocator (this test
//! binary's own) around decode steps of the real model, at 1 and 2 threads, once the session's
//! scratch buffers have grown for one-token batches and while the KV cache stays within its
//! chunk.
#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use edge_llm_kernel::{Session, SessionOptions};

/// Counts every allocation and reallocation, on any thread (the pool's workers too).
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` unchanged; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Decode steps counted, after the warm-up ones; all positions stay below the KV cache's
/// first growth step (256).
const STEPS: usize = 64;

#[test]
fn steady_state_decoding_does_not_allocate() {
    let model = common::load_model();
    for threads in [1, 2] {
        let opts = SessionOptions {
            n_ctx: 512,
            threads,
        };
        let mut s = Session::new(model.clone(), opts).unwrap();
        s.forward(&[1, 2, 3, 4, 5, 6, 7, 8], &|| false).unwrap();
        let mut tok = 9u32;
        for _ in 0..4 {
            s.forward(&[tok], &|| false).unwrap();
            tok += 1;
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..STEPS {
            let logits = s.forward(&[tok], &|| false).unwrap();
            tok = 10 + (logits[0].to_bits() % 1000);
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        println!("{threads} thread(s): {allocations} allocations in {STEPS} decode steps");
        // The team's shares live in arrays: no region allocates, at any thread count.
        assert_eq!(
            allocations, 0,
            "{threads} thread(s): {allocations} allocations in {STEPS} decode steps"
        );
    }
}
