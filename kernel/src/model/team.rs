//! A fixed team of helper threads for the forward pass's parallel regions.
//!
//! A decoded token runs ~120 short regions (a matmul split by rows, tens of µs each) with
//! single-threaded work in between. A general pool's workers fall asleep in those gaps, and on
//! a virtual machine waking a halted vCPU costs about as much as a region: under rayon about
//! one region in eight started with a futex wake (13.2 k context switches in a 3 s bench). The
//! team's helpers instead spin (with `pause` and a `yield` now and then, so a busy machine
//! still runs its other threads) for [`SPIN`] after each region before parking.
//!
//! A region's items are claimed, not assigned: the caller and the helpers take the next
//! unclaimed item from one atomic word until none is left, and the caller works too. A helper
//! that the operating system has not scheduled therefore never holds a region up; the caller
//! runs its items itself (on a machine with more runnable threads than cores, waiting for
//! such a helper once cost a time slice per region: an 8-token request under three
//! concurrent ones missed a 2 s deadline).
//!
//! A process's sessions share one team per thread count ([`Team::shared`]): a region that
//! finds the team busy with another session's region runs on its own caller alone, so serving
//! many sessions never starts more threads than cores, nor leaves one session waiting for
//! another's helpers.
//!
//! This module holds the crate's only `unsafe` outside `simd`: handing a borrowed closure and
//! borrowed items to the helpers, which [`Team::run_each`] makes sound by not returning
//! before every claimed item is done.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
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

/// One region's work: called with an item's index.
type Job = dyn Fn(usize) + Sync;

/// The region word's fields: `epoch << 32 | len << 16 | next`, where `epoch` counts the
/// regions started, `len` is the current region's item count and `next` its next unclaimed
/// item. One word, so a claim sees a consistent region.
const LEN_SHIFT: u32 = 16;
const FIELD: u64 = 0xFFFF;
const EPOCH_SHIFT: u32 = 32;

/// A caller thread and `threads - 1` helpers that run parallel regions together.
///
/// A team runs one region at a time; a caller that finds it running another (a second
/// session sharing it) runs its own region alone.
pub(crate) struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

struct Shared {
    /// The current region (see [`LEN_SHIFT`]): published by its caller, claimed from by all.
    region: AtomicU64,
    /// The current region's job, written by its caller before it publishes `region`.
    job: UnsafeCell<Option<*const Job>>,
    /// Items of the current region that are finished.
    done: AtomicUsize,
    /// Helpers parked on `wake` (or about to).
    parked: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// How long a helper spins for the next region ([`SPIN`]).
    spin: Duration,
    /// A region is running (its caller is inside `run_each`).
    busy: AtomicBool,
    /// Helpers park now instead of spinning: set by [`Team::rest`], cleared by a new region.
    rest: AtomicBool,
    stop: AtomicBool,
    panicked: AtomicBool,
}

// SAFETY: `job` is written only by a caller that holds `busy` after the previous region's
// items are all done, so no helper reads it then; a helper reads it only after claiming an
// item of the region (an acquire on `region`, whose publication follows the write), and the
// caller keeps the closure alive until that item is done. The closure behind it is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under those rules.
unsafe impl Send for Shared {}

impl Shared {
    /// Claims the current region's next item, or returns the region word that has none left.
    fn claim(&self) -> Result<usize, u64> {
        let mut word = self.region.load(Ordering::Acquire);
        loop {
            let (len, next) = ((word >> LEN_SHIFT) & FIELD, word & FIELD);
            if next >= len {
                return Err(word);
            }
            match self.region.compare_exchange_weak(
                word,
                word + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(next as usize),
                Err(now) => word = now,
            }
        }
    }

    /// Runs unclaimed items until none is left (a helper may go on into a region published
    /// meanwhile); returns the region word without items, the first panic of an item run here
    /// (every panic also sets `panicked`), and how many items ran here.
    fn work(&self) -> (u64, Option<Box<dyn Any + Send>>, usize) {
        let mut first_panic = None;
        let mut ran = 0;
        loop {
            match self.claim() {
                Ok(i) => {
                    // SAFETY: the claim (acquire) follows the region's publication, which
                    // follows its caller's write of `job`; that caller keeps the closure alive
                    // until this item is done (the `done` increment below).
                    if let Some(job) = unsafe { (*self.job.get()).map(|p| &*p) } {
                        if let Err(p) = catch_unwind(AssertUnwindSafe(|| job(i))) {
                            // Before `done`, so the region's caller sees it.
                            self.panicked.store(true, Ordering::Relaxed);
                            first_panic.get_or_insert(p);
                        }
                    }
                    self.done.fetch_add(1, Ordering::Release);
                    ran += 1;
                }
                Err(word) => return (word, first_panic, ran),
            }
        }
    }
}

impl Team {
    /// A team of `threads` (the caller and `threads - 1` new helper threads), at most
    /// [`MAX_THREADS`].
    pub(crate) fn new(threads: usize) -> std::io::Result<Team> {
        Team::spinning(threads, SPIN)
    }

    /// A team whose helpers spin for `spin` after each region.
    fn spinning(threads: usize, spin: Duration) -> std::io::Result<Team> {
        let shared = Arc::new(Shared {
            region: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            spin,
            busy: AtomicBool::new(false),
            rest: AtomicBool::new(false),
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
                .spawn(move || helper(&shared))?;
            team.helpers.push(handle);
        }
        Ok(team)
    }

    /// The team of `threads` that this process's sessions share: started by the first session
    /// that asks, stopped when the last one holding it is dropped.
    pub(crate) fn shared(threads: usize) -> std::io::Result<Arc<Team>> {
        static TEAMS: Mutex<Vec<Weak<Team>>> = Mutex::new(Vec::new());
        let threads = threads.clamp(1, MAX_THREADS);
        let mut teams = TEAMS.lock().unwrap_or_else(|e| e.into_inner());
        teams.retain(|t| t.strong_count() > 0);
        if let Some(team) = teams
            .iter()
            .filter_map(Weak::upgrade)
            .find(|t| t.threads() == threads)
        {
            return Ok(team);
        }
        let team = Arc::new(Team::new(threads)?);
        teams.push(Arc::downgrade(&team));
        Ok(team)
    }

    /// Lets the helpers park at once instead of spinning for the next region (until a region
    /// starts again). A helper that parks costs the next region a wake-up; one that spins holds
    /// a core that other threads of the process may need.
    pub(crate) fn rest(&self) {
        self.shared.rest.store(true, Ordering::Relaxed);
    }

    /// Threads of the team, the caller included.
    pub(crate) fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `f(i, &mut items[i])` for every item, each on whichever thread of the team claims
    /// it first (the calling thread among them), and returns when all are done, with how many
    /// the helpers ran. A panic in any of them is raised here afterwards, once every item has
    /// run.
    pub(crate) fn run_each<T: Send>(
        &self,
        items: &mut [T],
        f: &(dyn Fn(usize, &mut T) + Sync),
    ) -> usize {
        let n = items.len();
        let shared_items = Items(items.as_mut_ptr());
        let job = move |i: usize| {
            let items = &shared_items;
            // SAFETY: `i < n` indexes `items` (claims stop at `n`), and each index is claimed
            // exactly once.
            f(i, unsafe { &mut *items.0.add(i) });
        };
        assert!(n as u64 <= FIELD, "{n} items in one region");
        let s = &*self.shared;
        if self.helpers.is_empty() || n <= 1 || s.busy.swap(true, Ordering::Acquire) {
            (0..n).for_each(job);
            return 0;
        }
        let local: &(dyn Fn(usize) + Sync + '_) = &job;
        // SAFETY: only the lifetime is erased. Helpers use the pointer only for items of this
        // region, and this function does not return (or unwind) before all of them are done.
        let erased: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(local) };
        // SAFETY: no helper reads `job` now: every item of the previous region is done, and
        // this caller holds `busy`.
        unsafe { *s.job.get() = Some(erased) };
        s.done.store(0, Ordering::Relaxed);
        s.rest.store(false, Ordering::Relaxed);
        let epoch = (s.region.load(Ordering::Relaxed) >> EPOCH_SHIFT).wrapping_add(1);
        s.region.store(
            epoch << EPOCH_SHIFT | (n as u64) << LEN_SHIFT,
            Ordering::SeqCst,
        );
        if s.parked.load(Ordering::SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        // Every item runs even after one panics: a helper may hold the next ones.
        let (_, first_panic, ran_here) = s.work();
        spin_until(None, || s.done.load(Ordering::Acquire) == n);
        let any_panicked = s.panicked.swap(false, Ordering::Relaxed);
        s.busy.store(false, Ordering::Release);
        if let Some(p) = first_panic {
            resume_unwind(p);
        }
        if any_panicked {
            panic!("a thread of the forward pass's team panicked");
        }
        n - ran_here
    }
}

/// The items of [`Team::run_each`], shared with the helpers as a pointer.
struct Items<T>(*mut T);
// SAFETY: each item is handed to exactly one thread (the one that claims it), and `T: Send`
// lets it move there.
unsafe impl<T: Send> Sync for Items<T> {}

impl Drop for Team {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        // A new epoch with no items wakes every helper to see `stop`.
        s.region.fetch_add(1 << EPOCH_SHIFT, Ordering::SeqCst);
        {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

/// A helper's loop: claim and run items while a region has some, then wait for the next.
fn helper(s: &Shared) {
    loop {
        // A panic is reported through `panicked`; its payload is dropped here.
        let (seen, _, _) = s.work();
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        wait_for_region(s, seen);
    }
}

/// Waits until the region word differs from `seen`: spinning for up to the team's spin time
/// (or until [`Team::rest`]), then parked on the condition variable.
fn wait_for_region(s: &Shared, seen: u64) {
    let new_region = || s.region.load(Ordering::Relaxed) != seen;
    spin_until(Some(s.spin), || {
        new_region() || s.rest.load(Ordering::Relaxed)
    });
    if !new_region() {
        park(s, seen);
    }
}

/// Spins (`pause`, and a `yield` every [`SPINS_PER_CHECK`]) until `ready` or, with a limit,
/// until that much time has passed; returns whether `ready` was seen.
fn spin_until(limit: Option<Duration>, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    while !ready() {
        std::hint::spin_loop();
        spins += 1;
        if spins.is_multiple_of(SPINS_PER_CHECK) {
            if limit.is_some_and(|l| start.elapsed() > l) {
                return false;
            }
            std::thread::yield_now();
        }
    }
    true
}

fn park(s: &Shared, seen: u64) {
    let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
    s.parked.fetch_add(1, Ordering::SeqCst);
    // A caller publishes a region before it reads `parked` (both SeqCst): either it sees this
    // helper parked and notifies under the lock, or this load sees its region.
    while s.region.load(Ordering::SeqCst) == seen {
        guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
    s.parked.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_and_regions_follow_each_other() {
        let team = Team::new(3).unwrap();
        assert_eq!(team.threads(), 3);
        for round in 0..2000usize {
            // Up to two items more than threads, and sometimes fewer.
            let n = round % 6;
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
    fn a_region_that_finds_the_team_busy_runs_on_its_caller_alone() {
        // One caller's region holds the team until the second caller's region is over, which
        // therefore must not wait for (or use) the helpers.
        let team = Team::new(2).unwrap();
        let started = std::sync::Barrier::new(2);
        let finished = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut items = [0u8; 2];
                team.run_each(&mut items, &|i, v| {
                    if i == 0 {
                        started.wait();
                        while !finished.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    *v = 1;
                });
                assert_eq!(items, [1, 1]);
            });
            started.wait();
            let me = std::thread::current().id();
            let mut items = [0u8; 4];
            let alone = catch_unwind(AssertUnwindSafe(|| {
                team.run_each(&mut items, &|_, v| {
                    assert_eq!(std::thread::current().id(), me);
                    *v = 2;
                })
            }));
            finished.store(true, Ordering::Release);
            alone.unwrap();
            assert_eq!(items, [2; 4]);
        });
    }

    #[test]
    fn rested_helpers_park_and_the_next_region_wakes_them() {
        // Helpers that would spin for an hour: only `rest` parks them.
        let team = Team::spinning(3, Duration::from_secs(3600)).unwrap();
        let parked = || team.shared.parked.load(Ordering::SeqCst);
        let wait_until = |what: &str, done: &dyn Fn() -> bool| {
            let until = Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(Instant::now() < until, "{what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        for _ in 0..3 {
            let mut items = [0u8; 8];
            team.run_each(&mut items, &|_, v| *v = 1);
            assert_eq!(items, [1; 8]);
            // The region woke any parked helper, which now spins.
            wait_until("the region left a helper parked", &|| parked() == 0);
            team.rest();
            wait_until("rested helpers did not park", &|| parked() == 2);
        }
        // Woken by the next regions: the helpers run items again.
        let helped = (0..200).any(|_| {
            let mut items = [0u8; 16];
            let ran = team.run_each(&mut items, &|_, v| {
                std::thread::sleep(Duration::from_micros(200));
                *v = 1;
            });
            assert_eq!(items, [1; 16]);
            ran > 0
        });
        assert!(helped, "no helper ran an item after resting");
    }

    #[test]
    fn sessions_share_one_team_per_thread_count() {
        let a = Team::shared(2).unwrap();
        let b = Team::shared(2).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &Team::shared(3).unwrap()));
    }

    #[test]
    fn a_helpers_panic_is_raised_in_the_caller() {
        // Both items wait for each other, so the caller runs one and the helper the other;
        // the one on the helper panics.
        let team = Team::new(2).unwrap();
        let caller = std::thread::current().id();
        let both = std::sync::Barrier::new(2);
        let mut items = [0u8; 2];
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run_each(&mut items, &|_, v| {
                both.wait();
                assert_eq!(std::thread::current().id(), caller, "helper item");
                *v = 1;
            })
        }));
        assert!(r.is_err());
        assert_eq!(items.iter().filter(|&&v| v == 1).count(), 1);
    }

    #[test]
    fn a_panic_is_raised_in_the_caller_after_every_item_ran_and_the_team_goes_on() {
        let team = Team::new(2).unwrap();
        for bad in 0..2 {
            let ran = AtomicUsize::new(0);
            let mut items = [0u8; 4];
            let r = catch_unwind(AssertUnwindSafe(|| {
                team.run_each(&mut items, &|i, _| {
                    ran.fetch_add(1, Ordering::Relaxed);
                    assert_ne!(i, bad, "item {bad}");
                })
            }));
            assert!(r.is_err());
            assert_eq!(ran.load(Ordering::Relaxed), 4);
        }
        let mut items = [0u8; 2];
        team.run_each(&mut items, &|_, v| *v = 1);
        assert_eq!(items, [1, 1]);
    }
}
