//! The process allocator's settings for a long-running server.
//!
//! glibc's malloc raises its mmap threshold to the size of each mapped block it frees (up to
//! 32 MiB); larger blocks then come from the heap, where a freed or shrunk one keeps its pages.
//! A KV cache that a truncation shrinks (a long request, then short ones) would give nothing
//! back. Measured with `edge-llm serve --concurrency 1` (AMD EPYC 2 vCPU): after a 2,971-token
//! request and five short chats the server's RSS stayed at 217 MiB with glibc's default, and
//! fell back to 151 MiB from 209 with the threshold fixed at 256 KiB. Fixed there, the
//! per-token buffers (the logits: 192 KiB for a 49,152-token vocabulary) stay on the heap and
//! every KV buffer of three chunks or more is mapped on its own.
//!
//! A fixed mmap threshold also stops glibc from raising its trim threshold, which stays at 128
//! KiB: every freed logits buffer then shrank a thread's heap (`madvise`) and the next one
//! faulted its pages back in, about 40,000 page faults a second with 8 clients streaming. With
//! the trim threshold at 4 MiB the same load takes under 100 a second and streams 520-572
//! tokens/s against 422-559 (3 alternating 10 s runs each, `edge-llm serve --concurrency 8`,
//! 64-token greedy chats, a machine busy with builds); the RSS after the long request and the
//! short chats is the same (171 MiB).

/// Fixes glibc's mmap threshold at 256 KiB and its trim threshold at 4 MiB (a no-op
/// elsewhere). Call once, at start-up.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn map_large_blocks() {
    const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
    const TRIM_THRESHOLD: libc::c_int = 4 * 1024 * 1024;
    for (param, value, name) in [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "mmap"),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD, "trim"),
    ] {
        // SAFETY: `mallopt` only sets one of malloc's tuning parameters; it is called at
        // start-up, before the server starts its threads.
        if unsafe { libc::mallopt(param, value) } != 1 {
            tracing::warn!("could not fix malloc's {name} threshold");
        }
    }
}

/// Fixes glibc's mmap and trim thresholds (a no-op elsewhere). Call once, at start-up.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn map_large_blocks() {}
