//! A [`Batch`] step over several sessions gives each session the logits it computes alone, bit
//! for bit: sessions at different positions, prefill and decode rows in one pass, at one and two
//! threads, on the tiny random-weight model of every architecture (`just arch-models`) and on
//! the default model, with another session's prompt run between two layers of the step; a
//! session cancelled in the middle of a pass is left as it was, and the others' logits are
//! unchanged.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use edge_llm_kernel::{Batch, ForwardError, Model, Session, SessionOptions, Step};
use edge_llm_refs::arch::{reference, MODELS};

fn session(model: &Arc<Model>, threads: usize) -> Session {
    Session::new(model.clone(), SessionOptions { n_ctx: 96, threads }).unwrap()
}

/// One session's history and its next step: `history` is cached before, `step` runs in the
/// batch, logits wanted for `step[from..]`.
struct Case {
    history: Vec<u32>,
    step: Vec<u32>,
    from: usize,
}

/// The logits of `case.step[from..]` computed by a session alone.
fn alone(model: &Arc<Model>, case: &Case) -> Vec<f32> {
    let mut s = session(model, 1);
    if !case.history.is_empty() {
        s.forward(&case.history, &|| false).unwrap();
    }
    let n_vocab = model.config().n_vocab;
    let all = s.forward_all(&case.step, &|| false).unwrap();
    all[case.from * n_vocab..].to_vec()
}

/// Mixed cases from `tokens`: decodes at several positions, a prompt with every logit, a prompt
/// with only its last, a chunk of a prompt with none, a first token.
fn cases(tokens: &[u32]) -> Vec<Case> {
    let t = |a: usize, b: usize| tokens[a..b].to_vec();
    vec![
        Case {
            history: t(0, 17),
            step: t(17, 18),
            from: 0,
        },
        Case {
            history: vec![],
            step: t(3, 12),
            from: 0,
        },
        Case {
            history: t(5, 8),
            step: t(8, 9),
            from: 0,
        },
        Case {
            history: t(2, 30),
            step: t(30, 36),
            from: 5,
        },
        Case {
            history: t(1, 4),
            step: t(4, 10),
            from: 6,
        },
        Case {
            history: vec![],
            step: t(9, 10),
            from: 0,
        },
    ]
}

/// Every case in one batch step (after caching each history alone), and between its second
/// and third layers a prompt of another session in a pass of its own (another `Batch`): each
/// case's logits, and the prompt's, are their `alone` logits bit for bit.
fn check_model(name: &str, model: &Arc<Model>, tokens: &[u32], threads: usize) {
    let cases = cases(tokens);
    let want: Vec<Vec<f32>> = cases.iter().map(|c| alone(model, c)).collect();
    let prompt = Case {
        history: vec![],
        step: tokens[11..20].to_vec(),
        from: 6,
    };
    let want_prompt = alone(model, &prompt);
    let (mut other, mut other_batch) = (session(model, threads), Batch::new());
    let (mut layers, mut got_prompt) = (0, None);
    let mut between = || {
        layers += 1;
        if layers == 2 {
            let never = || false;
            let mut steps = [Step {
                session: &mut other,
                tokens: &prompt.step,
                from: prompt.from,
                cancel: &never,
            }];
            let out = other_batch.forward(&mut steps);
            got_prompt = Some(out[0].clone().map(<[f32]>::to_vec));
        }
    };
    let mut sessions: Vec<Session> = cases
        .iter()
        .map(|c| {
            let mut s = session(model, threads);
            if !c.history.is_empty() {
                s.forward(&c.history, &|| false).unwrap();
            }
            s
        })
        .collect();
    let never = || false;
    let mut steps: Vec<Step<'_>> = sessions
        .iter_mut()
        .zip(&cases)
        .map(|(session, c)| Step {
            session,
            tokens: &c.step,
            from: c.from,
            cancel: &never,
        })
        .collect();
    let mut batch = Batch::new();
    let got = batch.forward_between(&mut steps, &mut between);
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        let got = got.as_ref().unwrap();
        assert!(
            *got == want.as_slice(),
            "{name}, {threads} thread(s): case {i}'s logits in the batch differ from alone"
        );
    }
    drop(steps);
    assert!(
        got_prompt.unwrap().unwrap() == want_prompt,
        "{name}, {threads} thread(s): the prompt run between two layers differs from alone"
    );
    for (s, c) in sessions.iter().zip(&cases) {
        assert_eq!(
            s.len(),
            c.history.len() + c.step.len(),
            "{name}: cache length"
        );
    }
}

#[test]
fn every_architecture_gives_each_session_its_own_logits_in_a_batch() {
    for name in MODELS {
        let r = reference(name);
        let model = Arc::new(Model::load(Arc::new(r.model.clone())).unwrap());
        for threads in [1, 2] {
            check_model(name, &model, &r.tokens, threads);
        }
    }
}

#[test]
fn the_default_model_gives_each_session_its_own_logits_in_a_batch() {
    let model = common::load_model();
    let tokens: Vec<u32> = (0..40u32).map(|i| (i * 7919 + 13) % 49_000).collect();
    check_model("default model", &model, &tokens, 2);
}

#[test]
fn a_session_cancelled_during_a_batch_is_left_as_it_was() {
    let r = reference("qwen3");
    let model = Arc::new(Model::load(Arc::new(r.model.clone())).unwrap());
    let toks = &r.tokens;
    let (mut a, mut b) = (session(&model, 1), session(&model, 1));
    a.forward(&toks[..5], &|| false).unwrap();
    b.forward(&toks[..9], &|| false).unwrap();
    // `a` is cancelled at its third layer check.
    let checks = AtomicUsize::new(0);
    let cancel_a = || checks.fetch_add(1, Ordering::Relaxed) >= 2;
    let never = || false;
    let want_b = alone(
        &model,
        &Case {
            history: toks[..9].to_vec(),
            step: toks[9..10].to_vec(),
            from: 0,
        },
    );
    let mut batch = Batch::new();
    let (ra, rb) = {
        let mut steps = [
            Step {
                session: &mut a,
                tokens: &toks[5..8],
                from: 2,
                cancel: &cancel_a,
            },
            Step {
                session: &mut b,
                tokens: &toks[9..10],
                from: 0,
                cancel: &never,
            },
        ];
        let out = batch.forward(&mut steps);
        (
            out[0].clone().map(<[f32]>::to_vec),
            out[1].clone().map(<[f32]>::to_vec),
        )
    };
    assert_eq!(ra, Err(ForwardError::Cancelled));
    assert!(rb.unwrap() == want_b, "the other session's logits changed");
    assert_eq!((a.len(), b.len()), (5, 10));
    // The cancelled session goes on from where it was, as if the step had never run.
    let next = a.forward(&toks[5..8], &|| false).unwrap().to_vec();
    let want = alone(
        &model,
        &Case {
            history: toks[..5].to_vec(),
            step: toks[5..8].to_vec(),
            from: 2,
        },
    );
    assert!(next == want);
}

#[test]
fn bad_steps_fail_alone() {
    let r = reference("llama3");
    let model = Arc::new(Model::load(Arc::new(r.model.clone())).unwrap());
    let other = Arc::new(Model::load(Arc::new(r.model.clone())).unwrap());
    let n_vocab = model.config().n_vocab as u32;
    let (mut a, mut b, mut c) = (session(&model, 1), session(&model, 1), session(&other, 1));
    let never = || false;
    let good = [r.tokens[0]];
    let bad = [n_vocab];
    let mut steps = [
        Step {
            session: &mut a,
            tokens: &bad,
            from: 0,
            cancel: &never,
        },
        Step {
            session: &mut b,
            tokens: &good,
            from: 0,
            cancel: &never,
        },
        Step {
            session: &mut c,
            tokens: &good,
            from: 0,
            cancel: &never,
        },
    ];
    let mut batch = Batch::new();
    let out = batch.forward(&mut steps);
    assert!(matches!(out[0], Err(ForwardError::InvalidToken { .. })));
    assert_eq!(out[1].as_ref().map(|l| l.len()), Ok(n_vocab as usize));
    assert_eq!(out[2], Err(ForwardError::OtherModel));
}
