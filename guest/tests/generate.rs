//! The generation loop over a scripted fake backend and the tiny model's tokenizer.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use edge_llm_guest::generate::{
    Backend, BackendError, Clock, FinishReason, GenerateError, GenerateParams, Generation,
};
use edge_llm_guest::sampling::{SamplingError, SamplingParams};
use edge_llm_guest::stop::StopError;
use edge_llm_guest::tokenizer::Tokenizer;

const EOS: u32 = 2;

/// A shared fake clock in milliseconds.
#[derive(Clone, Default)]
struct FakeClock(Rc<Cell<f64>>);

impl FakeClock {
    fn advance(&self, ms: f64) {
        self.0.set(self.0.get() + ms);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> f64 {
        self.0.get()
    }
}

/// Emits `script[i]` as the argmax after the i-th call since the last reset.
struct FakeBackend {
    n_ctx: usize,
    n_vocab: usize,
    script: Vec<u32>,
    calls: usize,
    cache: Vec<u32>,
    batches: Vec<Vec<u32>>,
    logits: Vec<f32>,
    can_truncate: bool,
    fail_at_call: Option<usize>,
    clock: FakeClock,
}

impl FakeBackend {
    fn new(n_ctx: usize, tok: &Tokenizer, script: Vec<u32>) -> Self {
        Self {
            n_ctx,
            n_vocab: tok.vocab_size(),
            script,
            calls: 0,
            cache: Vec::new(),
            batches: Vec::new(),
            logits: Vec::new(),
            can_truncate: true,
            fail_at_call: None,
            clock: FakeClock::default(),
        }
    }
}

impl Backend for FakeBackend {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn cached_tokens(&self) -> &[u32] {
        &self.cache
    }

    fn truncate(&mut self, n: usize) -> Result<(), BackendError> {
        if !self.can_truncate {
            return Err(BackendError::TruncateUnsupported);
        }
        self.cache.truncate(n);
        Ok(())
    }

    fn reset(&mut self) {
        self.cache.clear();
        self.calls = 0;
    }

    fn prefill_and_logits(&mut self, tokens: &[u32]) -> Result<&[f32], BackendError> {
        assert!(!tokens.is_empty(), "empty batch");
        if self.fail_at_call == Some(self.batches.len()) {
            return Err(BackendError::Failed("injected failure".into()));
        }
        if self.cache.len() + tokens.len() > self.n_ctx {
            return Err(BackendError::ContextFull {
                needed: self.cache.len() + tokens.len(),
                n_ctx: self.n_ctx,
            });
        }
        self.clock
            .advance(if self.batches.is_empty() { 50.0 } else { 10.0 });
        self.cache.extend_from_slice(tokens);
        self.batches.push(tokens.to_vec());
        let target = self.script[self.calls.min(self.script.len() - 1)];
        self.calls += 1;
        self.logits.clear();
        self.logits.resize(self.n_vocab, 0.0);
        self.logits[target as usize] = 10.0;
        Ok(&self.logits)
    }

    fn prefill_hidden(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BackendError> {
        self.cache.extend_from_slice(tokens);
        Ok(tokens.iter().flat_map(|&t| [t as f32, 1.0]).collect())
    }
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        ignore_eos: false,
        logprobs: None,
        constraint: None,
    }
}

/// Token ids spelling `text`, one byte token each (tiny vocab: byte b is id 3 + b).
fn byte_ids(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let ids: Vec<u32> = text.bytes().map(|b| 3 + u32::from(b)).collect();
    assert_eq!(tok.decode(&ids, false).expect("decodes"), text);
    ids
}

fn collect(gen: &mut Generation<&mut FakeBackend>) -> (Vec<String>, Vec<u32>) {
    let mut texts = Vec::new();
    let mut tokens = Vec::new();
    while let Some(chunk) = gen.next_chunk().expect("step") {
        texts.push(chunk.text);
        tokens.extend(chunk.tokens);
    }
    (texts, tokens)
}

#[test]
fn generates_until_end_of_turn() {
    let tok = Rc::new(common::tiny_tokenizer());
    let mut script = tok.encode("Hello world", false).expect("encodes");
    script.push(EOS);
    let mut be = FakeBackend::new(64, &tok, script.clone());
    let prompt = tok
        .encode("<|im_start|>user\nHi<|im_end|>\n", true)
        .expect("encodes");
    let mut gen = Generation::new(&mut be, tok.clone(), prompt.clone(), greedy(32)).expect("valid");
    let (texts, tokens) = collect(&mut gen);
    assert_eq!(texts.concat(), "Hello world");
    assert_eq!(tokens, script);
    assert_eq!(gen.finish_reason(), Some(FinishReason::Stop));
    let usage = gen.usage();
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens),
        (prompt.len(), script.len())
    );
    assert!(gen.next_chunk().expect("done").is_none());
    drop(gen);
    // The prompt went in as one batch, then one token per step; the final EOS was not fed.
    assert_eq!(be.batches[0], prompt);
    assert_eq!(be.batches.len(), script.len());
    assert!(be.batches[1..].iter().all(|b| b.len() == 1));
}

#[test]
fn stops_at_max_tokens() {
    let tok = Rc::new(common::tiny_tokenizer());
    let script = byte_ids(&tok, "abcdefgh");
    let mut be = FakeBackend::new(64, &tok, script);
    let done = Generation::new(&mut be, tok.clone(), vec![10, 11], greedy(3))
        .expect("valid")
        .run_to_end()
        .expect("runs");
    assert_eq!(done.text, "abc");
    assert_eq!(done.finish_reason, FinishReason::Length);
    assert_eq!(done.usage.completion_tokens, 3);
    assert_eq!(
        be.batches.len(),
        3,
        "the last token is not fed to the backend"
    );
}

#[test]
fn stop_sequence_ends_generation_without_leaking() {
    let tok = Rc::new(common::tiny_tokenizer());
    let script = byte_ids(&tok, "Hello world, again");
    let mut be = FakeBackend::new(64, &tok, script);
    let params = GenerateParams {
        stop: vec!["wor".into()],
        ..greedy(30)
    };
    let mut gen = Generation::new(&mut be, tok.clone(), vec![10], params).expect("valid");
    let (texts, tokens) = collect(&mut gen);
    assert_eq!(texts.concat(), "Hello ");
    assert_eq!(tokens.len(), "Hello wor".len());
    assert_eq!(gen.finish_reason(), Some(FinishReason::Stop));
}

#[test]
fn held_back_stop_prefix_is_flushed_at_length() {
    let tok = Rc::new(common::tiny_tokenizer());
    let script = byte_ids(&tok, "ab wo");
    let mut be = FakeBackend::new(64, &tok, script);
    let params = GenerateParams {
        stop: vec!["world".into()],
        ..greedy(5)
    };
    let done = Generation::new(&mut be, tok.clone(), vec![10], params)
        .expect("valid")
        .run_to_end()
        .expect("runs");
    assert_eq!(
        (done.text.as_str(), done.finish_reason),
        ("ab wo", FinishReason::Length)
    );
}

#[test]
fn ignore_eos_keeps_going_and_control_tokens_print_nothing() {
    let tok = Rc::new(common::tiny_tokenizer());
    let script = vec![3 + u32::from(b'a'), EOS, 0, 1, 3 + u32::from(b'b')];
    let mut be = FakeBackend::new(64, &tok, script.clone());
    let params = GenerateParams {
        ignore_eos: true,
        ..greedy(5)
    };
    let done = Generation::new(&mut be, tok.clone(), vec![10], params)
        .expect("valid")
        .run_to_end()
        .expect("runs");
    assert_eq!(done.text, "ab");
    assert_eq!(done.tokens, script);
    assert_eq!(done.finish_reason, FinishReason::Length);
}

#[test]
fn multibyte_character_split_over_tokens() {
    let tok = Rc::new(common::tiny_tokenizer());
    let script = byte_ids(&tok, "🦀!");
    let mut be = FakeBackend::new(64, &tok, script);
    let mut gen = Generation::new(&mut be, tok.clone(), vec![10], greedy(5)).expect("valid");
    let (texts, _) = collect(&mut gen);
    assert_eq!(texts, ["", "", "", "🦀", "!"]);
}

#[test]
fn context_overflow_is_checked_before_any_work() {
    let tok = Rc::new(common::tiny_tokenizer());
    let mut be = FakeBackend::new(10, &tok, vec![5]);
    let err = Generation::new(&mut be, tok.clone(), vec![5; 8], greedy(3))
        .err()
        .expect("overflow");
    match err {
        GenerateError::ContextOverflow {
            prompt_tokens,
            max_tokens,
            n_ctx,
        } => {
            assert_eq!((prompt_tokens, max_tokens, n_ctx), (8, 3, 10));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(be.batches.is_empty());
    // Exactly full is fine.
    let done = Generation::new(&mut be, tok.clone(), vec![5; 8], greedy(2))
        .expect("fits")
        .run_to_end()
        .expect("runs");
    assert_eq!(done.usage.completion_tokens, 2);
}

#[test]
fn invalid_requests_are_typed() {
    let tok = Rc::new(common::tiny_tokenizer());
    let mut be = FakeBackend::new(64, &tok, vec![5]);
    let err = Generation::new(&mut be, tok.clone(), vec![5], greedy(0))
        .err()
        .expect("max_tokens 0");
    assert!(matches!(err, GenerateError::InvalidInput(_)), "{err:?}");
    let err = Generation::new(&mut be, tok.clone(), vec![], greedy(4))
        .err()
        .expect("empty prompt");
    assert!(matches!(err, GenerateError::InvalidInput(_)), "{err:?}");
    let err = Generation::new(&mut be, tok.clone(), vec![99_999], greedy(4))
        .err()
        .expect("bad id");
    assert!(err.to_string().contains("99999"), "{err}");
    let bad = GenerateParams {
        sampling: SamplingParams {
            top_p: 0.0,
            ..SamplingParams::default()
        },
        ..greedy(4)
    };
    let err = Generation::new(&mut be, tok.clone(), vec![5], bad)
        .err()
        .expect("bad sampling");
    assert!(
        matches!(
            err,
            GenerateError::Sampling(SamplingError::InvalidParam { name: "top_p", .. })
        ),
        "{err:?}"
    );
    let bad = GenerateParams {
        stop: vec![String::new()],
        ..greedy(4)
    };
    let err = Generation::new(&mut be, tok.clone(), vec![5], bad)
        .err()
        .expect("empty stop");
    assert!(
        matches!(err, GenerateError::Stop(StopError::EmptyStop { index: 0 })),
        "{err:?}"
    );
    assert!(be.batches.is_empty());
}

#[test]
fn prompt_prefix_is_reused() {
    let tok = Rc::new(common::tiny_tokenizer());
    let mut be = FakeBackend::new(64, &tok, vec![5, 6, 7]);
    let first = vec![20, 21, 22, 23];
    let done = Generation::new(&mut be, tok.clone(), first, greedy(2))
        .expect("valid")
        .run_to_end()
        .expect("runs");
    assert_eq!(done.usage.cached_prompt_tokens, 0);
    // Cache now holds [20, 21, 22, 23, 5]. A prompt sharing [20, 21] runs only its tail.
    let second = vec![20, 21, 30, 31];
    let done = Generation::new(&mut be, tok.clone(), second, greedy(1))
        .expect("valid")
        .run_to_end()
        .expect("runs");
    assert_eq!(done.usage.cached_prompt_tokens, 2);
    assert_eq!(be.batches.last().expect("batch"), &vec![30, 31]);
    // The same prompt again: only its last token runs (its logits are needed).
    be.cache.truncate(4);
    let done = Generation::new(&mut be, tok.clone(), vec![20, 21, 30, 31], greedy(1))
        .expect("valid")
        .run_to_end()
        .expect("runs");
    assert_eq!(done.usage.cached_prompt_tokens, 3);
    assert_eq!(be.batches.last().expect("batch"), &vec![31]);
    // A backend that cannot truncate is reset and runs the whole prompt.
    be.can_truncate = false;
    let done = Generation::new(&mut be, tok.clone(), vec![20, 40], greedy(1))
        .expect("valid")
        .run_to_end()
        .expect("runs");
    assert_eq!(done.usage.cached_prompt_tokens, 0);
    assert_eq!(be.batches.last().expect("batch"), &vec![20, 40]);
}

#[test]
fn timings_come_from_the_clock() {
    let tok = Rc::new(common::tiny_tokenizer());
    let script = byte_ids(&tok, "abcdef");
    let mut be = FakeBackend::new(64, &tok, script);
    let clock = be.clock.clone();
    let done = Generation::new(&mut be, tok.clone(), vec![10, 11, 12], greedy(6))
        .expect("valid")
        .with_clock(clock)
        .run_to_end()
        .expect("runs");
    // Prefill takes 50 ms, each decode step 10 ms.
    assert_eq!(done.timings.prefill_ms, 50.0);
    assert_eq!(done.timings.ttft_ms, 50.0);
    assert!(
        (done.timings.decode_tokens_per_s - 100.0).abs() < 1e-9,
        "{:?}",
        done.timings
    );
}

#[test]
fn backend_errors_propagate() {
    let tok = Rc::new(common::tiny_tokenizer());
    let mut be = FakeBackend::new(64, &tok, vec![50]);
    be.fail_at_call = Some(2);
    let mut gen = Generation::new(&mut be, tok.clone(), vec![10], greedy(10)).expect("valid");
    assert!(gen.next_chunk().expect("first").is_some());
    assert!(gen.next_chunk().expect("second").is_some());
    let err = gen.next_chunk().expect_err("injected");
    assert!(
        matches!(err, GenerateError::Backend(BackendError::Failed(_))),
        "{err:?}"
    );
}

#[test]
fn seeded_sampling_is_reproducible_through_the_loop() {
    let tok = Rc::new(common::tiny_tokenizer());
    let run = || {
        let mut be = FakeBackend::new(64, &tok, vec![40, 41, 42, 43]);
        let params = GenerateParams {
            sampling: SamplingParams {
                temperature: 5.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed: 11,
                ..SamplingParams::default()
            },
            ..greedy(8)
        };
        Generation::new(&mut be, tok.clone(), vec![10], params)
            .expect("valid")
            .run_to_end()
            .expect("runs")
            .tokens
    };
    assert_eq!(run(), run());
}

#[test]
fn tiny_tokenizer_roundtrip_and_eot() {
    let tok = Rc::new(common::tiny_tokenizer());
    assert_eq!(tok.eot_ids(), &[0, 2]);
    let ids = tok
        .encode("<|im_start|>Hello the world<|im_end|>", true)
        .expect("encodes");
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(tok.decode(&ids, true).expect("decodes"), "Hello the world");
    assert!(tok.token_id("Hello").is_some());
    assert!(ids.contains(&tok.token_id("Hello").expect("merged token")));
}

#[test]
fn logprobs_come_with_every_token_and_change_nothing_else() {
    let tok = Rc::new(common::tiny_tokenizer());
    let mut script = tok.encode("Hi there", false).expect("encodes");
    script.push(EOS);
    let run = |logprobs: Option<usize>| {
        let mut be = FakeBackend::new(64, &tok, script.clone());
        let params = GenerateParams {
            logprobs,
            ..greedy(32)
        };
        let mut gen = Generation::new(&mut be, tok.clone(), vec![10], params).expect("valid");
        let mut per_chunk = Vec::new();
        while let Some(chunk) = gen.next_chunk().expect("step") {
            assert_eq!(
                chunk.logprobs.len(),
                if logprobs.is_some() {
                    chunk.tokens.len()
                } else {
                    0
                }
            );
            per_chunk.extend(chunk.logprobs);
        }
        assert_eq!(
            gen.logprobs().map(<[_]>::to_vec),
            logprobs.map(|_| per_chunk.clone())
        );
        (gen.tokens().to_vec(), per_chunk)
    };
    let (plain, none) = run(None);
    let (tokens, logprobs) = run(Some(2));
    assert_eq!(plain, tokens);
    assert!(none.is_empty());
    assert_eq!(logprobs.len(), tokens.len());
    // The fake backend gives the scripted token a logit of 10 and every other one 0.
    let n = tok.vocab_size() as f32;
    let expected = -(1.0 + (n - 1.0) * (-10.0f32).exp()).ln();
    for (l, &t) in logprobs.iter().zip(&tokens) {
        assert_eq!(l.chosen.0, t);
        assert!((l.chosen.1 - expected).abs() < 1e-4, "{l:?}");
        assert_eq!(l.top.len(), 2);
        assert_eq!(l.top[0].0, t);
        assert!(l.top[1].1 < l.top[0].1);
    }
    let too_many = GenerateParams {
        logprobs: Some(21),
        ..greedy(4)
    };
    let mut be = FakeBackend::new(64, &tok, script.clone());
    assert!(matches!(
        Generation::new(&mut be, tok.clone(), vec![10], too_many),
        Err(GenerateError::InvalidInput(_))
    ));
}
