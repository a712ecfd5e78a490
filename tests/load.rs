//! A bounded load generator for the HTTP servers and the memory figures of a process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::post_json;

/// What a load run saw.
pub struct LoadReport {
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
    /// Requests that did not get a whole 200 response.
    pub errors: usize,
    /// Wall time of the run.
    pub wall: Duration,
}

impl LoadReport {
    /// The `p`-th latency percentile (0..=1), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1e3
    }

    /// Completed requests per second.
    pub fn requests_per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Sends `total` POSTs of `body(i)` to `path`, `concurrency` at a time.
pub fn run(
    addr: SocketAddr,
    path: &str,
    total: usize,
    concurrency: usize,
    body: impl Fn(usize) -> Value + Sync,
) -> LoadReport {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let results: Vec<Option<Duration>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return mine;
                        }
                        let t = Instant::now();
                        let r = post_json(addr, path, &body(i));
                        mine.push((r.status == 200 && r.complete).then(|| t.elapsed()));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("load worker"))
            .collect()
    });
    let wall = started.elapsed();
    let errors = results.iter().filter(|r| r.is_none()).count();
    let mut latencies: Vec<Duration> = results.into_iter().flatten().collect();
    latencies.sort();
    LoadReport {
        latencies,
        errors,
        wall,
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS`: now; `VmHWM`: the peak).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
