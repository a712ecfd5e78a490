//! Batched forward passes across stores: the native backend's execution contexts of one model
//! hand their `compute` calls to that model's [`Batcher`], which runs the steps that are ready
//! at the same time as one kernel [`Batch`] pass, so the weights are streamed once per step for
//! all of them instead of once per session.
//!
//! There is no scheduler thread: a caller queues its job and, if no step is running, becomes
//! the leader. The leader gives the sessions of the previous step up to [`GATHER`] to queue
//! their next one (a lone session never waits: it was the whole previous step), takes every
//! queued job, runs one pass on the calling thread (with the kernel's team of helpers), files
//! the results and steps down; every waiter then looks for its result, and one of those still
//! queued leads the next step. So a step's results reach their callers as soon as it ends, and
//! a new request joins the next step.
//!
//! A prompt is fed in chunks: one step takes every queued session's single decode token plus
//! at most [`STEP_PROMPT_TOKENS`] prompt tokens in all, and a session whose prompt is not done
//! queues again behind the others, so a long prompt never stalls their decoding for more than
//! one chunk. New prompts go first: a leader that finds prompts none of whose tokens ran yet
//! runs them at once, in arrival order, in a step of their own (at most [`FIRST_STEP_TOKENS`]
//! together, or one), without gathering the decoding sessions; those wait for at most
//! [`STEP_PROMPT_TOKENS`] tokens of such steps from the start of one of their steps to the
//! start of the next. A new prompt that arrives while a step with decoding sessions runs does
//! not wait for the end of it: the leader runs it between two layers of that step, in a
//! prompt-only step of its own (an interlude, with a second scratch). A request arriving at a
//! busy server so waits for one layer of the step running and its own prefill, not for the
//! whole step. Each session's cancellation and deadline ([`CallState`]) are checked before
//! every layer of every step; a cancelled session fails alone and its cache is rolled back to
//! where its call began.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use edge_llm_kernel::model::PREFILL_CHUNK;
use edge_llm_kernel::{Batch, ForwardError, Model, Session, Step};
use edge_llm_nn_contract as contract;

use crate::call::CallState;

/// How long a leader waits for the sessions of the previous step to queue their next one: a
/// decoding session spends ~0.3-0.5 ms in its guest between two steps (sampling, streaming the
/// token), longer when many guests share the cores.
const GATHER: Duration = Duration::from_millis(2);

/// Most prompt tokens of one step, besides one token per session.
pub const STEP_PROMPT_TOKENS: usize = PREFILL_CHUNK;

/// Most tokens of new prompts a prompt-only step takes together (it takes one however long):
/// prefill is compute-bound, so a step of two prompts takes about twice as long as one
/// (8.8 and 16.1 ms for ~20-token chat turns with 7 sessions decoding, 2 vCPU), and the
/// first of several prompts that arrive at once is answered sooner alone.
const FIRST_STEP_TOKENS: usize = 32;

/// Why a batched forward call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The kernel refused or stopped the step.
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// The pass that ran this call panicked (a bug); the session is in an unknown state.
    #[error("the forward pass panicked")]
    Panicked,
}

/// A session shared by its execution context and, while a call of it runs, the leader.
pub type SharedSession = Arc<Mutex<Session>>;

/// One model's queue of forward calls.
pub struct Batcher {
    model: Arc<Model>,
    queue: Mutex<Queue>,
    /// A call was queued or a context forgotten: wakes the leader gathering a step.
    arrived: Condvar,
    /// A step's results were filed, or its leader stepped down: wakes the queued callers.
    filed: Condvar,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Queue {
    /// Calls waiting for their next step, in arrival order.
    waiting: VecDeque<Job>,
    /// Results of finished calls, by call id.
    done: HashMap<u64, Result<Vec<u8>, BatchError>>,
    /// A step is being gathered or run.
    leading: bool,
    next_id: u64,
    /// The sessions (by context id) the next step's leader waits for: those of every step
    /// since the last step with decoding sessions began, that one included.
    last: Vec<u64>,
    /// Prompt tokens run in prompt-only steps since the last step with decoding sessions
    /// began.
    prompts_run: usize,
    /// The pass's scratch, lent to each leader.
    batch: Batch,
    /// The scratch of the prompt-only steps run between two layers of another step.
    interlude: Batch,
    stats: BatchStats,
}

/// What a [`Batcher`] has run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Passes run.
    pub steps: u64,
    /// Session steps in them (`session_steps / steps` sessions a pass on average).
    pub session_steps: u64,
    /// Most sessions in one pass.
    pub widest: usize,
    /// Passes run between two layers of another pass (included in `steps`).
    pub interludes: u64,
}

/// One `forward` call: `tokens[done..]` still to run.
struct Job {
    id: u64,
    context: u64,
    session: SharedSession,
    tokens: Vec<u32>,
    done: usize,
    /// The session's length when the call began (restored on a failure).
    p0: usize,
    call: Arc<CallState>,
}

impl Job {
    /// A call with a prompt (more than one token) none of which has run yet.
    fn is_new_prompt(&self) -> bool {
        self.done == 0 && self.tokens.len() > 1
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Batcher {
    /// An empty queue for the sessions of `model`.
    pub fn new(model: Arc<Model>) -> Self {
        Self {
            model,
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
            filed: Condvar::new(),
        }
    }

    /// The model whose sessions this batches.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// What this batcher has run so far.
    pub fn stats(&self) -> BatchStats {
        lock(&self.queue).stats
    }

    /// An id for a new execution context.
    pub fn context_id(&self) -> u64 {
        let mut q = lock(&self.queue);
        q.next_id += 1;
        q.next_id
    }

    /// Forgets a dropped context: no leader waits for it any more.
    pub fn forget(&self, context: u64) {
        lock(&self.queue).last.retain(|&c| c != context);
        self.arrived.notify_all();
    }

    /// Appends `tokens` to `session` (of context `context`) in as many steps as its prompt
    /// needs, batched with the other sessions' steps; returns the logits of the last token as
    /// the `wasi:nn` contract's data (`logits_data`), which the step's leader encodes straight
    /// from the pass's scratch. On an error the session is back at its length before the call.
    pub fn forward(
        &self,
        context: u64,
        session: &SharedSession,
        tokens: Vec<u32>,
        call: Arc<CallState>,
    ) -> Result<Vec<u8>, BatchError> {
        let p0 = {
            let session = lock(session);
            let needed = session.len() + tokens.len();
            if tokens.is_empty() {
                return Err(ForwardError::EmptyInput.into());
            }
            if needed > session.n_ctx() {
                let n_ctx = session.n_ctx();
                return Err(ForwardError::ContextOverflow { needed, n_ctx }.into());
            }
            session.len()
        };
        let mut q = lock(&self.queue);
        q.next_id += 1;
        let id = q.next_id;
        q.waiting.push_back(Job {
            id,
            context,
            session: session.clone(),
            tokens,
            done: 0,
            p0,
            call,
        });
        // A leader gathering a step may be waiting for this session. (Only it: waking every
        // queued caller at each arrival woke each of them again for every later one.)
        self.arrived.notify_all();
        loop {
            if let Some(result) = q.done.remove(&id) {
                return result;
            }
            if q.leading {
                q = self.filed.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            q.leading = true;
            // New prompts run first, in arrival order, in steps of their own: a new request's
            // first token waits neither for the decoding sessions to queue again nor for their
            // rows, and when several arrive at once the first ones are answered first instead
            // of all after one pass over every prompt. The decoding sessions wait at most
            // [`STEP_PROMPT_TOKENS`] prompt tokens between two of their steps, as behind one
            // chunk of a long prompt.
            let prompts_only =
                q.prompts_run < STEP_PROMPT_TOKENS && q.waiting.iter().any(Job::is_new_prompt);
            let mut jobs: Vec<Job> = if prompts_only {
                take_new_prompts(&mut q)
            } else {
                q = self.gather(q);
                q.last.clear();
                q.prompts_run = 0;
                q.waiting.drain(..).collect()
            };
            let mut batch = std::mem::take(&mut q.batch);
            drop(q);
            let started = Instant::now();
            let tokens = step_tokens(&jobs);
            let outcomes = if prompts_only {
                run_step(&mut batch, &mut jobs, &mut || {})
            } else {
                run_step(&mut batch, &mut jobs, &mut || self.interlude())
            };
            tracing::trace!(
                sessions = jobs.len(),
                tokens,
                prompts_only,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "batched forward step"
            );
            q = lock(&self.queue);
            q.batch = batch;
            file(&mut q, jobs, outcomes, prompts_only);
            q.leading = false;
            self.filed.notify_all();
        }
    }

    /// Runs between two layers of a step with decoding sessions: the new prompts queued since
    /// it began run in a prompt-only step of their own (within the same prompt budget), so
    /// their first token waits for one layer of the step, not all of its layers.
    fn interlude(&self) {
        let mut q = lock(&self.queue);
        if q.prompts_run >= STEP_PROMPT_TOKENS || !q.waiting.iter().any(Job::is_new_prompt) {
            return;
        }
        let mut jobs = take_new_prompts(&mut q);
        let mut batch = std::mem::take(&mut q.interlude);
        drop(q);
        let started = Instant::now();
        let tokens = step_tokens(&jobs);
        let outcomes = run_step(&mut batch, &mut jobs, &mut || {});
        tracing::trace!(
            sessions = jobs.len(),
            tokens,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "prompt-only step between two layers"
        );
        let mut q = lock(&self.queue);
        q.interlude = batch;
        q.stats.interludes += 1;
        file(&mut q, jobs, outcomes, true);
        self.filed.notify_all();
    }

    /// Waits (at most [`GATHER`]) until every session of the previous step still open has
    /// queued its next call.
    fn gather<'q>(&self, mut q: MutexGuard<'q, Queue>) -> MutexGuard<'q, Queue> {
        let until = Instant::now() + GATHER;
        loop {
            let missing = q
                .last
                .iter()
                .any(|c| !q.waiting.iter().any(|j| j.context == *c));
            let now = Instant::now();
            if !missing || now >= until {
                return q;
            }
            q = self
                .arrived
                .wait_timeout(q, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The tokens a step of `jobs` has left to run (for the trace; a step may run fewer).
fn step_tokens(jobs: &[Job]) -> usize {
    jobs.iter().map(|j| j.tokens.len() - j.done).sum()
}

/// Takes the new prompts of a prompt-only step from the queue: in arrival order, at most
/// [`FIRST_STEP_TOKENS`] of them together, or one.
fn take_new_prompts(q: &mut Queue) -> Vec<Job> {
    let (mut taken, mut tokens) = (Vec::new(), 0);
    let mut rest = VecDeque::with_capacity(q.waiting.len());
    for job in q.waiting.drain(..) {
        let fits = taken.is_empty() || tokens + job.tokens.len() <= FIRST_STEP_TOKENS;
        if job.is_new_prompt() && fits {
            tokens += job.tokens.len();
            taken.push(job);
        } else {
            rest.push_back(job);
        }
    }
    q.waiting = rest;
    taken
}

/// Files a step's outcomes: results for the calls that are done, the others queued again.
fn file(
    q: &mut Queue,
    jobs: Vec<Job>,
    outcomes: Vec<Option<Result<Vec<u8>, BatchError>>>,
    prompts_only: bool,
) {
    if prompts_only {
        q.prompts_run += jobs.iter().map(|j| j.done).sum::<usize>();
    }
    q.last.extend(jobs.iter().map(|j| j.context));
    // Jobs whose turn did not come (prompt budget spent) are `None` with nothing done;
    // counted alike: a pass's width is the calls it was handed.
    let stats = &mut q.stats;
    (stats.steps, stats.session_steps) = (stats.steps + 1, stats.session_steps + jobs.len() as u64);
    stats.widest = stats.widest.max(jobs.len());
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        match outcome {
            None => q.waiting.push_back(job),
            Some(result) => {
                if result.is_err() {
                    lock(&job.session).truncate(job.p0);
                }
                q.done.insert(job.id, result);
            }
        }
    }
}

/// [`step`], with a panic of the pass reported to each of its calls.
fn run_step(
    batch: &mut Batch,
    jobs: &mut [Job],
    between: &mut dyn FnMut(),
) -> Vec<Option<Result<Vec<u8>, BatchError>>> {
    catch_unwind(AssertUnwindSafe(|| step(batch, jobs, between)))
        .unwrap_or_else(|_| vec![Some(Err(BatchError::Panicked)); jobs.len()])
}

/// Runs one step of `jobs`: each decoding session's token and prompt chunks up to
/// [`STEP_PROMPT_TOKENS`] in all (a job whose turn does not come waits for the next step),
/// calling `between` between two layers of its pass. Per job: `None` if it has tokens left,
/// else its result.
fn step(
    batch: &mut Batch,
    jobs: &mut [Job],
    between: &mut dyn FnMut(),
) -> Vec<Option<Result<Vec<u8>, BatchError>>> {
    let mut budget = STEP_PROMPT_TOKENS + 1;
    let takes: Vec<usize> = jobs
        .iter()
        .map(|j| {
            let left = j.tokens.len() - j.done;
            let take = if left <= 1 { left } else { left.min(budget) };
            budget = budget.saturating_sub(take);
            take
        })
        .collect();
    let cancels: Vec<_> = jobs
        .iter()
        .map(|j| {
            let call = j.call.clone();
            move || call.stop_reason().is_some()
        })
        .collect();
    let mut guards: Vec<MutexGuard<'_, Session>> = jobs
        .iter()
        .zip(&takes)
        .filter(|(_, &take)| take > 0)
        .map(|(j, _)| lock(&j.session))
        .collect();
    let ran = jobs.iter().zip(&takes).zip(&cancels);
    let mut steps: Vec<Step<'_>> = guards
        .iter_mut()
        .zip(ran.filter(|((_, &take), _)| take > 0))
        .map(|(session, ((job, &take), cancel))| {
            let tokens = &job.tokens[job.done..job.done + take];
            let last = job.done + take == job.tokens.len();
            Step {
                session,
                tokens,
                // Only a call's last token has logits wanted.
                from: if last { take - 1 } else { take },
                cancel,
            }
        })
        .collect();
    let results = batch.forward_between(&mut steps, between);
    drop(steps);
    // The guests of several sessions now take their turns on the cores the team's helpers
    // would spin on until the next step. (A lone session's guest finds a core free, and
    // parking would cost its next step a wake-up.)
    if guards.len() > 1 {
        guards[0].rest_team();
    }
    drop(guards);
    let mut results = results.into_iter();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (job, &take) in jobs.iter_mut().zip(&takes) {
        if take == 0 {
            outcomes.push(None);
            continue;
        }
        let result = results.next().expect("one result per step");
        job.done += take;
        outcomes.push(match result {
            Err(e) => Some(Err(BatchError::Forward(e))),
            Ok(logits) if job.done == job.tokens.len() => Some(Ok(contract::logits_data(logits))),
            Ok(_) => None,
        });
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use edge_llm_kernel::tiny::tiny_model_gguf;
    use edge_llm_kernel::SessionOptions;

    use super::*;
    use crate::call::Epochs;

    fn model() -> Arc<Model> {
        Arc::new(Model::load(Arc::new(tiny_model_gguf(7))).expect("tiny model"))
    }

    fn session(model: &Arc<Model>) -> SharedSession {
        let options = SessionOptions {
            n_ctx: 256,
            threads: 1,
        };
        Arc::new(Mutex::new(
            Session::new(model.clone(), options).expect("session"),
        ))
    }

    /// A call's prompt of `n` tokens and then `decode` more, one at a time: the logits of each.
    fn script(seed: u32, n: usize, decode: usize) -> Vec<Vec<u32>> {
        let tok = |i: usize| (seed as usize * 31 + i * 17) as u32 % 200 + 3;
        let mut calls = vec![(0..n).map(tok).collect::<Vec<u32>>()];
        calls.extend((n..n + decode).map(|i| vec![tok(i)]));
        calls
    }

    #[test]
    fn concurrent_calls_get_the_logits_of_each_session_alone() {
        let model = model();
        let batcher = Arc::new(Batcher::new(model.clone()));
        // Prompts of more tokens in all than a step takes, and a lone token, then decoding.
        let scripts: Vec<_> = [(1, 200), (2, 180), (3, 190), (4, 1)]
            .iter()
            .map(|&(seed, n)| script(seed, n, 12))
            .collect();
        let alone: Vec<Vec<Vec<u8>>> = scripts
            .iter()
            .map(|calls| {
                let s = session(&model);
                let mut s = s.lock().unwrap();
                let calls = calls.iter();
                calls
                    .map(|c| contract::logits_data(s.forward(c, &|| false).unwrap()))
                    .collect()
            })
            .collect();
        let barrier = Barrier::new(scripts.len());
        let batched: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
            let threads: Vec<_> = scripts
                .iter()
                .map(|calls| {
                    let (batcher, barrier, model) = (&batcher, &barrier, &model);
                    scope.spawn(move || {
                        let s = session(model);
                        let id = batcher.context_id();
                        let call = Arc::new(CallState::new(Arc::new(Epochs::default())));
                        // Every round's calls are made at once, so steps can share them
                        // however the threads are scheduled.
                        let out = calls
                            .iter()
                            .map(|c| {
                                barrier.wait();
                                batcher.forward(id, &s, c.clone(), call.clone()).unwrap()
                            })
                            .collect();
                        batcher.forget(id);
                        out
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for (i, (b, a)) in batched.iter().zip(&alone).enumerate() {
            assert!(b == a, "session {i}: batched logits differ from alone");
        }
        // Steps were shared (the 13 rounds' leaders wait up to 2 ms for the sessions of the
        // step before).
        let stats = batcher.stats();
        assert!(stats.widest >= 2, "no step ran several sessions: {stats:?}");
    }

    #[test]
    fn a_new_prompt_runs_between_two_layers_of_a_decoding_step() {
        let model = model();
        let batcher = Batcher::new(model.clone());
        let call = Arc::new(CallState::new(Arc::new(Epochs::default())));
        let alone = |history: &[u32], tokens: &[u32]| {
            let s = session(&model);
            let mut s = lock(&s);
            if !history.is_empty() {
                s.forward(history, &|| false).unwrap();
            }
            contract::logits_data(s.forward(tokens, &|| false).unwrap())
        };
        let (history, prompt): (Vec<u32>, Vec<u32>) = ((3..9).collect(), (20..40).collect());
        let decoding = session(&model);
        lock(&decoding).forward(&history, &|| false).unwrap();
        // This thread leads a step of one decoding session; the prompt arrives during it.
        lock(&batcher.queue).leading = true;
        let mut jobs = [Job {
            id: 0,
            context: 1,
            session: decoding.clone(),
            tokens: vec![5],
            done: 0,
            p0: history.len(),
            call: call.clone(),
        }];
        std::thread::scope(|scope| {
            let mut arrived = None;
            let mut between = || {
                if arrived.is_some() {
                    return;
                }
                let s = session(&model);
                let (batcher, prompt, call) = (&batcher, prompt.clone(), call.clone());
                arrived = Some(scope.spawn(move || batcher.forward(2, &s, prompt, call)));
                while lock(&batcher.queue).waiting.is_empty() {
                    std::thread::yield_now();
                }
                batcher.interlude();
            };
            let outcomes = run_step(&mut Batch::new(), &mut jobs, &mut between);
            let prompt_logits = arrived.expect("a layer boundary").join().unwrap();
            assert!(prompt_logits.unwrap() == alone(&[], &prompt));
            let [Some(Ok(decoded))] = &outcomes[..] else {
                panic!("the decoding step failed: {outcomes:?}");
            };
            assert!(*decoded == alone(&history, &[5]));
        });
        let stats = batcher.stats();
        assert_eq!((stats.interludes, stats.steps), (1, 1), "{stats:?}");
    }

    #[test]
    fn a_cancelled_call_fails_alone_and_leaves_its_session_as_it_was() {
        let model = model();
        let batcher = Batcher::new(model.clone());
        let (a, b) = (session(&model), session(&model));
        let epochs = Arc::new(Epochs::default());
        let (call_a, call_b) = (
            Arc::new(CallState::new(epochs.clone())),
            Arc::new(CallState::new(epochs)),
        );
        let prompt: Vec<u32> = (3..40).collect();
        batcher
            .forward(1, &a, prompt.clone(), call_a.clone())
            .unwrap();
        call_a.cancel();
        std::thread::scope(|scope| {
            let cancelled = scope.spawn(|| batcher.forward(1, &a, vec![5, 6], call_a.clone()));
            let other = batcher.forward(2, &b, prompt.clone(), call_b.clone());
            assert_eq!(
                cancelled.join().unwrap(),
                Err(BatchError::Forward(ForwardError::Cancelled))
            );
            let alone = session(&model);
            let want =
                contract::logits_data(alone.lock().unwrap().forward(&prompt, &|| false).unwrap());
            assert!(other.unwrap() == want);
        });
        assert_eq!(a.lock().unwrap().len(), prompt.len());
    }

    #[test]
    fn bad_calls_are_refused_before_queueing() {
        let model = model();
        let batcher = Batcher::new(model.clone());
        let s = session(&model);
        let call = Arc::new(CallState::new(Arc::default()));
        let err = batcher.forward(1, &s, vec![], call.clone()).unwrap_err();
        assert_eq!(err, BatchError::Forward(ForwardError::EmptyInput));
        let err = batcher.forward(1, &s, vec![3; 300], call).unwrap_err();
        assert!(matches!(
            err,
            BatchError::Forward(ForwardError::ContextOverflow { needed: 300, .. })
        ));
    }
}
