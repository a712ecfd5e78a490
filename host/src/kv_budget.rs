//! A bound on the KV cache memory of every native session of a sandbox (`edge-llm serve
//! --kv-memory`): each execution context holds a share of the budget covering its cache, and a
//! call that needs more than is free fails with [`KvMemoryError`] before any compute, its
//! session untouched, instead of allocating past the bound.
//!
//! - **What a context holds**: the bytes its cache takes for the larger of the positions it
//!   holds now and the positions its current request announced (`n-reserve`: prompt plus
//!   `max_tokens`), so a request admitted at its first call never runs out midway. The share
//!   shrinks when the cache does (a new request keeping a shorter prefix, a failed call rolled
//!   back) and is returned when the context is dropped.
//! - **Idle caches are reclaimed**: a context whose store runs no call (an instance waiting in
//!   the server's idle pool keeps its last request's cache, to reuse its prefix) gives its
//!   memory up when another call needs it: its cache is released and the context replays its
//!   tokens on its next call ([`crate::nn`]), so the guest never notices but for the time.
//!
//! Lock order: a caller may hold its own session's lock while it asks the budget; the budget,
//! holding its ledger, only ever `try_lock`s other sessions, so nothing waits in a cycle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use edge_llm_kernel::Session;

use crate::call::CallState;

const MIB: f64 = (1 << 20) as f64;

/// A call needs more KV cache memory than the budget has free.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "KV cache memory exhausted: this request needs {:.1} MiB more and {:.1} MiB of the {:.1} MiB budget (--kv-memory) is free; retry later",
    *.more as f64 / MIB, *.free as f64 / MIB, *.limit as f64 / MIB
)]
pub struct KvMemoryError {
    /// Bytes the call needed beyond what its context held.
    pub more: usize,
    /// Bytes free once every idle cache was reclaimed.
    pub free: usize,
    /// The budget, in bytes.
    pub limit: usize,
}

/// One context's share.
struct Holder {
    held: usize,
    session: Weak<Mutex<Session>>,
    call: Weak<CallState>,
}

#[derive(Default)]
struct Ledger {
    used: usize,
    holders: HashMap<u64, Holder>,
}

/// The KV cache memory budget of a sandbox's native sessions.
pub struct KvBudget {
    limit: usize,
    ledger: Mutex<Ledger>,
}

impl std::fmt::Debug for KvBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvBudget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl KvBudget {
    /// A budget of `limit` bytes (`usize::MAX`: unbounded).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held by all contexts.
    pub fn used(&self) -> usize {
        self.ledger().used
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters context `id` (holding nothing yet), whose cache is `session`'s and whose store's
    /// calls are `call`.
    pub fn join(&self, id: u64, session: &Arc<Mutex<Session>>, call: &Arc<CallState>) {
        self.ledger().holders.insert(
            id,
            Holder {
                held: 0,
                session: Arc::downgrade(session),
                call: Arc::downgrade(call),
            },
        );
    }

    /// Returns what context `id` holds and forgets it.
    pub fn leave(&self, id: u64) {
        let mut ledger = self.ledger();
        if let Some(h) = ledger.holders.remove(&id) {
            ledger.used -= h.held;
        }
    }

    /// Makes context `id` hold exactly `bytes`: gives back the difference, or takes it from
    /// what is free, reclaiming idle contexts' caches if need be. On an error nothing changed
    /// for `id`.
    pub fn hold(&self, id: u64, bytes: usize) -> Result<(), KvMemoryError> {
        let mut ledger = self.ledger();
        let held = ledger.holders.get(&id).map_or(0, |h| h.held);
        if bytes > held {
            let more = bytes - held;
            if self.limit - ledger.used < more {
                let short = more - (self.limit - ledger.used);
                reclaim_idle(&mut ledger, id, short);
            }
            let free = self.limit - ledger.used;
            if free < more {
                let limit = self.limit;
                return Err(KvMemoryError { more, free, limit });
            }
        }
        ledger.used = ledger.used - held + bytes;
        if let Some(h) = ledger.holders.get_mut(&id) {
            h.held = bytes;
        }
        Ok(())
    }
}

/// Releases the caches of contexts other than `except` whose stores run no call, until
/// `wanted` bytes are freed or none is left; the largest first.
fn reclaim_idle(ledger: &mut Ledger, except: u64, wanted: usize) {
    let mut idle: Vec<(u64, usize)> = ledger
        .holders
        .iter()
        .filter(|(&id, h)| id != except && h.held > 0)
        .filter(|(_, h)| h.call.upgrade().is_none_or(|c| !c.in_call()))
        .map(|(&id, h)| (id, h.held))
        .collect();
    idle.sort_by_key(|&(_, held)| std::cmp::Reverse(held));
    let mut freed = 0;
    for (id, held) in idle {
        if freed >= wanted {
            break;
        }
        let Some(holder) = ledger.holders.get_mut(&id) else {
            continue;
        };
        // A session locked is in a pass (or being set up for one): not idle after all.
        if let Some(session) = holder.session.upgrade() {
            let Ok(mut session) = session.try_lock() else {
                continue;
            };
            session.release_cache();
        }
        tracing::debug!(context = id, bytes = held, "idle KV cache reclaimed");
        holder.held = 0;
        ledger.used -= held;
        freed += held;
    }
}

#[cfg(test)]
mod tests {
    use edge_llm_kernel::tiny::tiny_model_gguf;
    use edge_llm_kernel::{Model, SessionOptions};

    use super::*;

    fn session() -> Arc<Mutex<Session>> {
        let model = Arc::new(Model::load(Arc::new(tiny_model_gguf(7))).expect("tiny model"));
        let options = SessionOptions {
            n_ctx: 256,
            threads: 1,
        };
        Arc::new(Mutex::new(Session::new(model, options).expect("session")))
    }

    #[test]
    fn a_share_beyond_the_budget_is_refused_and_nothing_changes() {
        let budget = KvBudget::new(1000);
        let (s, call) = (session(), Arc::new(CallState::new(Arc::default())));
        call.begin(None);
        budget.join(1, &s, &call);
        budget.join(2, &s, &call);
        budget.hold(1, 600).unwrap();
        let err = budget.hold(2, 500).unwrap_err();
        assert_eq!(
            err,
            KvMemoryError {
                more: 500,
                free: 400,
                limit: 1000
            }
        );
        assert_eq!(budget.used(), 600);
        budget.hold(1, 100).unwrap();
        budget.hold(2, 500).unwrap();
        assert_eq!(budget.used(), 600);
        budget.leave(1);
        assert_eq!(budget.used(), 500);
        assert!(err.to_string().starts_with("KV cache memory exhausted"));
    }

    #[test]
    fn idle_caches_are_reclaimed_busy_ones_are_not() {
        let budget = KvBudget::new(1000);
        let (idle, busy, new) = (session(), session(), session());
        let calls: Vec<_> = (0..3)
            .map(|_| Arc::new(CallState::new(Arc::default())))
            .collect();
        idle.lock().unwrap().forward(&[3, 4, 5], &|| false).unwrap();
        budget.join(1, &idle, &calls[0]);
        budget.join(2, &busy, &calls[1]);
        budget.join(3, &new, &calls[2]);
        budget.hold(1, 400).unwrap();
        budget.hold(2, 400).unwrap();
        calls[1].begin(None);
        calls[2].begin(None);
        budget.hold(3, 500).unwrap();
        assert_eq!(idle.lock().unwrap().len(), 0, "the idle cache was released");
        assert_eq!(idle.lock().unwrap().cache_bytes(), 0);
        assert_eq!(budget.used(), 900);
        // Only the busy one is left: no more to be had.
        assert!(budget.hold(3, 700).is_err());
        calls[1].end();
        budget.hold(3, 1000).unwrap();
    }
}
