//! A fixed team of helper threads for the forward pass's parallel regions.
//!
//! A decoded token runs ~120 short regions (a matmul split by rows, tens of µs each) with
//! single-threaded work in between. A general pool's workers fall asleep in those gaps, and on
//! a virtual machine waking a halted vCPU costs about as much as a region: under rayon about
//! one region in eight started with a futex wake (13.2 k context switches in a 3 s bench). The team's helpers instead spin (with
//! `pause` and a `yield` now and then, so a busy machine still runs its other threads) for
//! [`SPIN`] after each region before parking, and the calling thread works itself: it runs
//! share 0 of every region, so a forward pass needs no hand-off to the pool and back.
//!
//! This module holds the crate's only `unsafe` outside `simd`: handing a borrowed closure and
//! borrowed items to the helpers, which [`Team::run_each`] makes sound by not returning
//! before every helper is done with them.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper keeps spinning for the next region before it parks: longer than the
/// gaps inside a forward pass and than the guest's work between two decoded tokens (0.3-0.5
/// ms), short enough that an idle session stops costing CPU at once. (200 µs parked between
/// tokens: `edge-llm serve` p50 129 ms against 109. 2 ms left the machine so busy under the
/// test suite's parallel servers that an 8-token request missed a 2 s deadline.)
const SPIN: Duration = Duration::from_millis(1);

/// `pause` instructions between two looks at the clock or a `yield`.
const SPINS_PER_CHECK: u32 = 64;

/// Most threads a team has: more would not speed up models this size, and the forward pass
/// keeps per-thread shares in arrays of this length (it allocates nothing while decoding).
pub(crate) const MAX_THREADS: usize = 32;

/// One region's work: called with the share's index (1.. on the helpers).
type Job = dyn Fn(usize) + Sync;

/// A caller thread and `threads - 1` helpers that run parallel regions together.
///
/// A team runs one region at a time. The forward pass starts them through `&mut Session`, so
/// two never overlap; [`Team::run_each`] still refuses (panics on) an overlapping call rather
/// than let two regions share the job slot.
pub(crate) struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

struct Shared {
    /// Bumped once per region (and once to stop); a helper runs a region when it changes.
    epoch: AtomicU64,
    /// The current region's job, written by the caller before it bumps `epoch`.
    job: UnsafeCell<Option<*const Job>>,
    /// Helpers that have not finished the current region.
    pending: AtomicUsize,
    /// Helpers parked on `wake` (or about to).
    parked: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// A region is running (its caller is inside `run_each`).
    busy: AtomicBool,
    stop: AtomicBool,
    panicked: AtomicBool,
}

// SAFETY: `job` is written only by the caller while no helper reads it (between regions, when
// `pending` is 0), and read by helpers only after they observe the `epoch` bump that follows
// the write (release/acquire). The closure behind it is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under those rules.
unsafe impl Send for Shared {}

impl Team {
    /// A team of `threads` (the caller and `threads - 1` new helper threads), at most
    /// [`MAX_THREADS`].
    pub(crate) fn new(threads: usize) -> std::io::Result<Team> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            busy: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
        });
        let mut team = Team {
            shared,
            helpers: Vec::new(),
        };
        for i in 1..threads.clamp(1, MAX_THREADS) {
            let shared = team.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("edge-llm-team-{i}"))
                .spawn(move || helper(&shared, i))?;
            team.helpers.push(handle);
        }
        Ok(team)
    }

    /// Threads of the team, the caller included.
    pub(crate) fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `f(i, &mut items[i])` for every item, item `i` on thread `i` of the team (0 is the
    /// calling thread), and returns when all are done. At most [`Team::threads`] items; more
    /// are run by the caller after its own. A panic in any of them is raised here afterwards.
    pub(crate) fn run_each<T: Send>(&self, items: &mut [T], f: &(dyn Fn(usize, &mut T) + Sync)) {
        let n = items.len();
        let shared_items = Items(items.as_mut_ptr());
        let job = move |i: usize| {
            if i < n {
                let items = &shared_items;
                // SAFETY: `i < n` indexes `items`, and each index is run exactly once: the
                // helpers take 1..threads, the caller 0 and threads.. (below).
                f(i, unsafe { &mut *items.0.add(i) });
            }
        };
        let others = self.helpers.len();
        if others == 0 || n <= 1 {
            (0..n).for_each(job);
            return;
        }
        let local: &(dyn Fn(usize) + Sync + '_) = &job;
        // SAFETY: only the lifetime is erased. The helpers use the pointer during this region
        // only, and this function does not return (or unwind) before `pending` is 0.
        let erased: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(local) };
        let s = &*self.shared;
        assert!(
            !s.busy.swap(true, Ordering::Acquire),
            "two regions started at once on one team"
        );
        // SAFETY: no helper reads `job` now: the previous region ended with `pending` at 0,
        // and no other region is running (`busy`).
        unsafe { *s.job.get() = Some(erased) };
        s.pending.store(others, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.parked.load(Ordering::SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| {
            local(0);
            (others + 1..n).for_each(local);
        }));
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(SPINS_PER_CHECK) {
                std::thread::yield_now();
            }
        }
        s.busy.store(false, Ordering::Release);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a thread of the forward pass's team panicked");
        }
    }
}

/// The items of [`Team::run_each`], shared with the helpers as a pointer.
struct Items<T>(*mut T);
// SAFETY: each item is handed to exactly one thread at a time (see `Team::run_each`), and
// `T: Send` lets it move there.
unsafe impl<T: Send> Sync for Items<T> {}

impl Drop for Team {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

/// A helper's loop: wait for each region, run share `index` of it, report done.
fn helper(s: &Shared, index: usize) {
    let mut seen = 0;
    loop {
        seen = wait_for_region(s, seen);
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the caller wrote `job` before the bump of `epoch` this thread observed
        // (acquire), and keeps the closure alive until `pending` reaches 0, after our
        // decrement below.
        if let Some(job) = unsafe { (*s.job.get()).map(|p| &*p) } {
            if catch_unwind(AssertUnwindSafe(|| job(index))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits until `epoch` differs from `seen` and returns it: spinning for up to [`SPIN`], then
/// parked on the condition variable.
fn wait_for_region(s: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = s.epoch.load(Ordering::Acquire);
        if e != seen {
            return e;
        }
        std::hint::spin_loop();
        spins += 1;
        if spins.is_multiple_of(SPINS_PER_CHECK) {
            if start.elapsed() > SPIN {
                break;
            }
            std::thread::yield_now();
        }
    }
    let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
    s.parked.fetch_add(1, Ordering::SeqCst);
    // The caller bumps `epoch` before it reads `parked` (both SeqCst): either it sees this
    // helper parked and notifies under the lock, or this load sees its bump.
    loop {
        let e = s.epoch.load(Ordering::SeqCst);
        if e != seen {
            s.parked.fetch_sub(1, Ordering::SeqCst);
            return e;
        }
        guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_on_its_thread_and_regions_follow_each_other() {
        let team = Team::new(3).unwrap();
        assert_eq!(team.threads(), 3);
        for round in 0..2000usize {
            // Up to one item more than threads (run by the caller), and sometimes fewer.
            let n = round % 5;
            let mut items: Vec<(usize, usize)> = (0..n).map(|i| (i, 0)).collect();
            team.run_each(&mut items, &|i, item| {
                assert_eq!(item.0, i);
                item.1 += round + 1;
            });
            assert!(items.iter().all(|&(_, v)| v == round + 1), "round {round}");
            if round % 500 == 0 {
                // Long enough for the helpers to park.
                std::thread::sleep(SPIN * 2);
            }
        }
    }

    #[test]
    fn a_helper_panic_is_raised_in_the_caller_and_the_team_goes_on() {
        let team = Team::new(2).unwrap();
        let mut items = [0u8; 2];
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run_each(&mut items, &|i, _| assert_ne!(i, 1, "helper share"))
        }));
        assert!(r.is_err());
        let mut items = [0u8; 2];
        team.run_each(&mut items, &|_, v| *v = 1);
        assert_eq!(items, [1, 1]);
    }
}
