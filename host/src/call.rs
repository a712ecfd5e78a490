//! Per-store call state: what may stop the call a store is running (its deadline, a
//! cancellation) and why the native backend failed, if it did.
//!
//! Host code cannot be interrupted by wasmtime's epochs, so the native backend checks this state
//! between layers. The deadline is counted in the same epoch ticks as the store's epoch
//! deadline, and [`Epochs`] lags the engine's epoch, never leads it: when the native backend
//! stops at the deadline, the engine's deadline has passed too, and the guest traps at its
//! next epoch check, exactly as if the deadline had struck inside the guest.
//!
//! wasi-nn's host glue shows the guest only "Failed while accessing backend" for a backend
//! error; the backend records the typed reason here and the host reads it back after the call,
//! so nothing travels through thread-locals or is matched by its message.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::kv_budget::KvMemoryError;

/// Why the native backend failed a `compute`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NnFailure {
    /// The call's deadline passed.
    #[error("deadline exceeded")]
    Deadline,
    /// The call was cancelled ([`CallState::cancel`]).
    #[error("cancelled")]
    Cancelled,
    /// The call needs more KV cache memory than the budget has free.
    #[error(transparent)]
    KvMemory(#[from] KvMemoryError),
    /// Anything else, in one line (a bad input tensor, a model that cannot run, ...).
    #[error("{0}")]
    Backend(String),
}

/// The epoch ticks the host has counted: advanced by the epoch ticker right after it advances
/// the engine's epoch, so it is never ahead of it.
#[derive(Debug, Default)]
pub(crate) struct Epochs(AtomicU64);

impl Epochs {
    /// The current count.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// One more tick (after `Engine::increment_epoch`).
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// The state of the call one store is running; shared (`Arc`) by the store and the native
/// backend's graphs and execution contexts created in it.
#[derive(Debug)]
pub struct CallState {
    epochs: Arc<Epochs>,
    /// The epoch count at which the call must stop; `u64::MAX`: never.
    deadline: AtomicU64,
    cancelled: AtomicBool,
    /// Between [`CallState::begin`] and [`CallState::end`].
    in_call: AtomicBool,
    failure: Mutex<Option<NnFailure>>,
}

impl CallState {
    pub(crate) fn new(epochs: Arc<Epochs>) -> Self {
        Self {
            epochs,
            deadline: AtomicU64::new(u64::MAX),
            cancelled: AtomicBool::new(false),
            in_call: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Starts a call that must stop `ticks` epoch ticks from now (`None`: no deadline),
    /// forgetting the last call's cancellation and failure. The deadline is one tick later,
    /// since this count may lag the engine's by one.
    pub(crate) fn begin(&self, ticks: Option<u64>) {
        let deadline = ticks.map_or(u64::MAX, |t| {
            self.epochs.now().saturating_add(t).saturating_add(1)
        });
        self.deadline.store(deadline, Ordering::Relaxed);
        self.cancelled.store(false, Ordering::Relaxed);
        self.take_failure();
        self.in_call.store(true, Ordering::Release);
    }

    /// Declares the call over: until the next [`CallState::begin`] the store runs nothing, so
    /// the KV caches of its native contexts may be reclaimed for other calls
    /// ([`crate::kv_budget`]).
    pub(crate) fn end(&self) {
        self.in_call.store(false, Ordering::Release);
    }

    /// Whether the store is running a call.
    pub fn in_call(&self) -> bool {
        self.in_call.load(Ordering::Acquire)
    }

    /// Asks the running call to stop: the native backend fails its next layer with
    /// [`NnFailure::Cancelled`] (any thread may call this).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Why the call must stop now, if it must.
    pub fn stop_reason(&self) -> Option<NnFailure> {
        if self.is_cancelled() {
            Some(NnFailure::Cancelled)
        } else if self.epochs.now() >= self.deadline.load(Ordering::Relaxed) {
            Some(NnFailure::Deadline)
        } else {
            None
        }
    }

    /// Records why the native backend failed (the first reason of a call wins).
    pub(crate) fn fail(&self, failure: NnFailure) {
        let mut slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(failure);
    }

    /// Why the native backend failed during this call, if it did (kept for
    /// [`CallState::take_failure`]).
    pub fn failure(&self) -> Option<NnFailure> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why the native backend failed during this call, if it did; clears it.
    pub fn take_failure(&self) -> Option<NnFailure> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_stops_one_tick_after_the_stores_deadline_or_when_cancelled() {
        let epochs = Arc::new(Epochs::default());
        let state = CallState::new(epochs.clone());
        state.begin(None);
        epochs.tick();
        assert_eq!(state.stop_reason(), None, "no deadline");
        state.begin(Some(2));
        epochs.tick();
        epochs.tick();
        assert_eq!(
            state.stop_reason(),
            None,
            "the count may lag the engine's by one"
        );
        epochs.tick();
        assert_eq!(state.stop_reason(), Some(NnFailure::Deadline));
        state.cancel();
        assert_eq!(state.stop_reason(), Some(NnFailure::Cancelled));
        state.fail(NnFailure::Cancelled);
        state.begin(None);
        assert_eq!(state.take_failure(), None, "begin forgets the last failure");
        assert_eq!(state.stop_reason(), None, "and the cancellation");
    }

    #[test]
    fn the_first_failure_of_a_call_is_kept() {
        let state = CallState::new(Arc::default());
        state.fail(NnFailure::Deadline);
        state.fail(NnFailure::Backend("bad tensor".into()));
        assert_eq!(state.take_failure(), Some(NnFailure::Deadline));
        assert_eq!(state.take_failure(), None);
    }
}
