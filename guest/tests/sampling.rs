//! Sampler behaviour on small hand-made distributions.

use edge_llm_guest::sampling::{
    greedy_argmax, next_f64, Sampler, SamplingError, SamplingParams, SplitMix64,
};

/// Plain sampling: every filter off, temperature 1.
fn plain(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 0,
        seed,
    }
}

/// Counts how often each id is drawn in `n` samples.
fn histogram(params: SamplingParams, logits: &[f32], n: usize) -> Vec<usize> {
    let mut s = Sampler::new(params).expect("valid params");
    let mut counts = vec![0; logits.len()];
    for _ in 0..n {
        counts[s.sample(logits).expect("samples") as usize] += 1;
    }
    counts
}

fn ln(p: &[f32]) -> Vec<f32> {
    p.iter().map(|x| x.ln()).collect()
}

#[test]
fn splitmix_known_values() {
    // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
    let mut r = SplitMix64::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    let x = next_f64(&mut SplitMix64::new(5));
    assert!((0.0..1.0).contains(&x));
}

#[test]
fn seeded_runs_are_reproducible() {
    let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let run = |seed| {
        let mut s = Sampler::new(SamplingParams {
            seed,
            ..SamplingParams::default()
        })
        .expect("valid");
        (0..50)
            .map(|_| s.sample(&logits).expect("samples"))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
    // Pinned: the same on every target (SplitMix64 + libm).
    let mut s = Sampler::new(plain(1)).expect("valid");
    let seq: Vec<u32> = (0..8)
        .map(|_| s.sample(&ln(&[0.25, 0.25, 0.25, 0.25])).expect("samples"))
        .collect();
    let mut again = Sampler::new(plain(1)).expect("valid");
    let seq2: Vec<u32> = (0..8)
        .map(|_| {
            again
                .sample(&ln(&[0.25, 0.25, 0.25, 0.25]))
                .expect("samples")
        })
        .collect();
    assert_eq!(seq, seq2);
}

#[test]
fn reset_restarts_the_sequence() {
    let logits = ln(&[0.1, 0.2, 0.3, 0.4]);
    let mut s = Sampler::new(plain(9)).expect("valid");
    let a: Vec<u32> = (0..20)
        .map(|_| s.sample(&logits).expect("samples"))
        .collect();
    s.reset();
    let b: Vec<u32> = (0..20)
        .map(|_| s.sample(&logits).expect("samples"))
        .collect();
    assert_eq!(a, b);
}

#[test]
fn greedy_picks_argmax_lowest_id_on_ties() {
    let mut s = Sampler::new(SamplingParams::greedy()).expect("valid");
    assert_eq!(s.sample(&[0.0, 3.0, 1.0, 3.0]).expect("samples"), 1);
    assert_eq!(s.sample(&[f32::NAN, 2.0, 2.0]).expect("samples"), 1);
    assert_eq!(s.sample(&[5.0, 5.0]).expect("samples"), 0);
    assert_eq!(greedy_argmax(&[1.0, 7.0, 7.0]), Some(1));
    assert_eq!(greedy_argmax(&[]), None);
    assert!(matches!(s.sample(&[]), Err(SamplingError::EmptyLogits)));
    assert!(matches!(
        s.sample(&[f32::NAN]),
        Err(SamplingError::NoFiniteLogits { n: 1 })
    ));
}

#[test]
fn plain_sampling_follows_the_distribution() {
    let probs = [0.1f32, 0.2, 0.3, 0.4];
    let n = 20_000;
    let counts = histogram(plain(3), &ln(&probs), n);
    for (c, p) in counts.iter().zip(probs) {
        let freq = *c as f32 / n as f32;
        assert!((freq - p).abs() < 0.02, "{counts:?}");
    }
}

#[test]
fn top_k_keeps_the_k_best() {
    let logits = ln(&[0.1, 0.4, 0.2, 0.3]);
    let counts = histogram(
        SamplingParams {
            top_k: 2,
            ..plain(4)
        },
        &logits,
        5000,
    );
    assert_eq!(counts[0], 0);
    assert_eq!(counts[2], 0);
    let freq1 = counts[1] as f32 / 5000.0;
    assert!((freq1 - 4.0 / 7.0).abs() < 0.03, "{counts:?}");
    let counts = histogram(
        SamplingParams {
            top_k: 1,
            ..plain(4)
        },
        &logits,
        100,
    );
    assert_eq!(counts[1], 100);
}

#[test]
fn top_p_keeps_the_smallest_nucleus() {
    let logits = ln(&[0.5, 0.3, 0.15, 0.05]);
    // 0.5 + 0.3 = 0.8 >= 0.79: ids 0 and 1 only.
    let counts = histogram(
        SamplingParams {
            top_p: 0.79,
            ..plain(5)
        },
        &logits,
        5000,
    );
    assert_eq!((counts[2], counts[3]), (0, 0), "{counts:?}");
    assert!(counts[0] > 0 && counts[1] > 0);
    // 0.81 needs the third token.
    let counts = histogram(
        SamplingParams {
            top_p: 0.81,
            ..plain(5)
        },
        &logits,
        5000,
    );
    assert!(counts[2] > 0 && counts[3] == 0, "{counts:?}");
    // A tiny top_p keeps at least the best token.
    let counts = histogram(
        SamplingParams {
            top_p: 1e-6,
            ..plain(5)
        },
        &logits,
        100,
    );
    assert_eq!(counts[0], 100);
}

#[test]
fn min_p_drops_unlikely_tokens() {
    let logits = ln(&[0.5, 0.3, 0.15, 0.05]);
    // Threshold 0.4 * 0.5 = 0.2: ids 0 and 1 survive.
    let counts = histogram(
        SamplingParams {
            min_p: 0.4,
            ..plain(6)
        },
        &logits,
        5000,
    );
    assert_eq!((counts[2], counts[3]), (0, 0), "{counts:?}");
    assert!(counts[1] > 0);
    let counts = histogram(
        SamplingParams {
            min_p: 1.0,
            ..plain(6)
        },
        &logits,
        100,
    );
    assert_eq!(counts[0], 100);
}

#[test]
fn temperature_sharpens_and_flattens() {
    let logits = ln(&[0.6, 0.4]);
    let cold = histogram(
        SamplingParams {
            temperature: 0.1,
            ..plain(7)
        },
        &logits,
        5000,
    );
    assert!(cold[0] > 4900, "{cold:?}");
    let hot = histogram(
        SamplingParams {
            temperature: 100.0,
            ..plain(7)
        },
        &logits,
        5000,
    );
    let f0 = hot[0] as f32 / 5000.0;
    assert!((f0 - 0.5).abs() < 0.03, "{hot:?}");
}

#[test]
fn repeat_penalty_llama_cpp_semantics() {
    let params = SamplingParams {
        repeat_penalty: 2.0,
        repeat_last_n: 2,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(params).expect("valid");
    // Positive logit divided: 4.0 -> 2.0 < 3.0.
    s.accept(0);
    assert_eq!(s.sample(&[4.0, 3.0, -1.0]).expect("samples"), 1);
    // Negative logits multiplied: -1 -> -2 < -1.5.
    let mut s = Sampler::new(params).expect("valid");
    s.accept(0);
    assert_eq!(s.sample(&[-1.0, -1.5]).expect("samples"), 1);
    // A repeated token is penalised once, not per occurrence.
    let mut s = Sampler::new(params).expect("valid");
    s.accept(0);
    s.accept(0);
    assert_eq!(s.sample(&[5.0, 2.4]).expect("samples"), 0);
    // Only the last N tokens count.
    let mut s = Sampler::new(params).expect("valid");
    s.accept(0);
    s.accept(2);
    s.accept(2);
    assert_eq!(s.sample(&[4.0, 3.0, 0.0]).expect("samples"), 0);
    // Composes with top-k: the penalised best falls out of the top 1.
    let p = SamplingParams {
        top_k: 1,
        repeat_penalty: 2.0,
        repeat_last_n: 4,
        ..plain(1)
    };
    let mut s = Sampler::new(p).expect("valid");
    s.accept(0);
    assert_eq!(s.sample(&[4.0, 3.0]).expect("samples"), 1);
}

#[test]
fn params_are_validated() {
    let bad = [
        SamplingParams {
            temperature: f32::NAN,
            ..SamplingParams::default()
        },
        SamplingParams {
            temperature: -0.1,
            ..SamplingParams::default()
        },
        SamplingParams {
            temperature: f32::INFINITY,
            ..SamplingParams::default()
        },
        SamplingParams {
            top_p: 0.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            top_p: 1.5,
            ..SamplingParams::default()
        },
        SamplingParams {
            top_p: f32::NAN,
            ..SamplingParams::default()
        },
        SamplingParams {
            min_p: -0.5,
            ..SamplingParams::default()
        },
        SamplingParams {
            min_p: 2.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            min_p: f32::NAN,
            ..SamplingParams::default()
        },
        SamplingParams {
            repeat_penalty: 0.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            repeat_penalty: f32::NAN,
            ..SamplingParams::default()
        },
    ];
    for p in bad {
        let err = p.validate().expect_err("invalid");
        assert!(matches!(err, SamplingError::InvalidParam { .. }), "{p:?}");
        assert!(Sampler::new(p).is_err());
    }
    assert!(SamplingParams::default().validate().is_ok());
    assert!(SamplingParams::greedy().validate().is_ok());
    let err = SamplingParams {
        top_p: 0.0,
        ..SamplingParams::default()
    }
    .validate()
    .expect_err("invalid");
    assert!(err.to_string().contains("top_p"), "{err}");
}

#[test]
fn sampling_full_vocab_stays_fast_and_valid() {
    let logits: Vec<f32> = (0..49152)
        .map(|i| ((i as f32) * 0.618).sin() * 5.0)
        .collect();
    let mut s = Sampler::new(SamplingParams {
        top_k: 0,
        top_p: 0.9,
        ..SamplingParams::default()
    })
    .expect("valid");
    for _ in 0..20 {
        let id = s.sample(&logits).expect("samples");
        assert!((id as usize) < logits.len());
        s.accept(id);
    }
}

/// `greedy_argmax` against its definition, a scan that keeps the first strictly larger
/// non-NaN logit: lengths around the 16-lane blocks, ties, NaN, infinities and signed zeros.
#[test]
fn greedy_argmax_is_the_first_largest_non_nan() {
    let mut rng = SplitMix64::new(5);
    for case in 0..2000 {
        let n = (rng.next_u64() % 70) as usize;
        let logits: Vec<f32> = (0..n)
            .map(|_| match rng.next_u64() % 12 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                2 => f32::INFINITY,
                3 => -0.0,
                4 => 0.0,
                v => v as f32 - 8.0,
            })
            .collect();
        let mut want: Option<(usize, f32)> = None;
        for (i, &l) in logits.iter().enumerate() {
            if !l.is_nan() && want.is_none_or(|(_, b)| l > b) {
                want = Some((i, l));
            }
        }
        assert_eq!(
            greedy_argmax(&logits),
            want.map(|(i, _)| i as u32),
            "case {case}: {logits:?}"
        );
    }
}

/// Greedy choice with the repeat penalty against the definition: penalise a copy of the
/// logits, then take the argmax (ties to the lowest id, NaN ignored).
#[test]
fn greedy_with_penalty_equals_penalised_argmax() {
    let mut rng = SplitMix64::new(11);
    for case in 0..400 {
        let n = 1 + (rng.next_u64() % 64) as usize;
        // Few distinct values, so ties are common; some NaN.
        let logits: Vec<f32> = (0..n)
            .map(|_| match rng.next_u64() % 10 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                v => v as f32 - 5.0,
            })
            .collect();
        let params = SamplingParams {
            repeat_penalty: [1.0, 0.5, 1.3, 2.0][case % 4],
            repeat_last_n: 8,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(params).expect("valid");
        let mut recent = Vec::new();
        for _ in 0..(rng.next_u64() % 12) {
            // Ids 0, n - 1 and beyond the vocabulary included.
            let id = (rng.next_u64() % (n as u64 + 2)) as u32;
            s.accept(id);
            recent.push(id);
        }
        let mut want = logits.clone();
        if params.repeat_penalty != 1.0 {
            let mut ids: Vec<u32> = recent.iter().rev().take(8).copied().collect();
            ids.sort_unstable();
            ids.dedup();
            for id in ids.into_iter().filter(|&id| (id as usize) < n) {
                let l = &mut want[id as usize];
                *l = if *l > 0.0 {
                    *l / params.repeat_penalty
                } else {
                    *l * params.repeat_penalty
                };
            }
        }
        match greedy_argmax(&want) {
            Some(id) => assert_eq!(s.sample(&logits).expect("samples"), id, "case {case}"),
            None => assert!(s.sample(&logits).is_err(), "case {case}"),
        }
    }
}

/// Seeded draws, pinned: these sequences were recorded before the sampler took the kernel's
/// SplitMix64 instead of its own copy, so a seed still gives the same tokens.
#[test]
fn seeded_draws_are_pinned() {
    let logits: Vec<f32> = (0..64)
        .map(|i| ((i * 29 % 17) as f32 * 0.37).sin() * 3.0)
        .collect();
    let draws = |seed, params: SamplingParams| {
        let mut s = Sampler::new(SamplingParams { seed, ..params }).expect("valid");
        (0..24)
            .map(|_| {
                let id = s.sample(&logits).expect("samples");
                s.accept(id);
                id
            })
            .collect::<Vec<u32>>()
    };
    let plain = SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        ..SamplingParams::default()
    };
    assert_eq!(
        draws(0, plain),
        [
            36, 50, 6, 17, 23, 33, 40, 20, 57, 29, 50, 3, 30, 47, 60, 30, 13, 20, 57, 2, 2, 26, 44,
            33
        ]
    );
    assert_eq!(
        draws(42, plain),
        [
            3, 40, 16, 33, 6, 19, 57, 37, 33, 9, 57, 13, 30, 30, 26, 57, 23, 30, 23, 43, 46, 23, 9,
            9
        ]
    );
    assert_eq!(
        draws(7, SamplingParams::default()),
        [
            33, 6, 54, 30, 50, 57, 50, 16, 23, 33, 23, 53, 54, 20, 20, 13, 37, 16, 30, 43, 47, 23,
            16, 33
        ]
    );
}

/// Log probabilities are those of the distribution the token was drawn from: after the
/// filters, at the temperature, renormalised over the kept tokens.
#[test]
fn logprobs_follow_the_filtered_distribution() {
    let p = [0.5f32, 0.25, 0.15, 0.1];
    let logits = ln(&p);
    // No filters, temperature 1: the model's own probabilities.
    let mut s = Sampler::new(plain(3)).expect("valid");
    let t = s.sample(&logits).expect("samples");
    let l = s.logprobs(&logits, t, 4);
    assert_eq!(l.chosen.0, t);
    assert!((l.chosen.1 - p[t as usize].ln()).abs() < 1e-5, "{l:?}");
    let ids: Vec<u32> = l.top.iter().map(|c| c.0).collect();
    assert_eq!(ids, [0, 1, 2, 3]);
    for (id, lp) in &l.top {
        assert!((lp - p[*id as usize].ln()).abs() < 1e-5, "{l:?}");
    }
    // top-k 2: only two tokens are left, renormalised (0.5 / 0.75, 0.25 / 0.75).
    let mut s = Sampler::new(SamplingParams {
        top_k: 2,
        ..plain(3)
    })
    .expect("valid");
    let t = s.sample(&logits).expect("samples");
    let l = s.logprobs(&logits, t, 4);
    assert_eq!(
        l.top.len(),
        2,
        "filtered tokens are not alternatives: {l:?}"
    );
    assert!((l.top[0].1 - (2.0f32 / 3.0).ln()).abs() < 1e-5, "{l:?}");
    assert!((l.top[1].1 - (1.0f32 / 3.0).ln()).abs() < 1e-5, "{l:?}");
    // Temperature 0.5 squares and renormalises the probabilities.
    let mut s = Sampler::new(SamplingParams {
        temperature: 0.5,
        ..plain(3)
    })
    .expect("valid");
    let t = s.sample(&logits).expect("samples");
    let l = s.logprobs(&logits, t, 1);
    let z: f32 = p.iter().map(|x| x * x).sum();
    assert_eq!(l.top.len(), 1);
    assert!((l.top[0].1 - (0.25f32 / z).ln()).abs() < 1e-5, "{l:?}");
    // Asking for no alternatives still reports the chosen token.
    let l = s.logprobs(&logits, t, 0);
    assert!(l.top.is_empty() && l.chosen.0 == t);
}

/// Greedy decoding draws from no distribution: it reports the softmax of the penalised logits
/// at temperature 1 over the whole vocabulary, and sampling is unchanged by asking.
#[test]
fn greedy_logprobs_are_the_penalised_softmax() {
    let p = [0.1f32, 0.6, 0.3];
    let logits = ln(&p);
    let mut s = Sampler::new(SamplingParams::greedy()).expect("valid");
    let t = s.sample(&logits).expect("samples");
    assert_eq!(t, 1);
    let l = s.logprobs(&logits, t, 2);
    assert!((l.chosen.1 - 0.6f32.ln()).abs() < 1e-5, "{l:?}");
    assert_eq!(l.top.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(s.sample(&logits).expect("samples"), 1);
    // With a repeat penalty on token 1, its logit ln 0.6 < 0 is multiplied by 2.
    let mut s = Sampler::new(SamplingParams {
        repeat_penalty: 2.0,
        repeat_last_n: 4,
        ..SamplingParams::greedy()
    })
    .expect("valid");
    s.accept(1);
    let t = s.sample(&logits).expect("samples");
    let l = s.logprobs(&logits, t, 3);
    let adjusted = [0.1f32, 0.36, 0.3];
    let z: f32 = adjusted.iter().sum();
    assert_eq!(t, 1, "0.36 still beats 0.3");
    assert!((l.chosen.1 - (0.36f32 / z).ln()).abs() < 1e-5, "{l:?}");
    // A probability that rounds to 0 is reported at the floor, never as -inf.
    let l = s.logprobs(&[0.0, 200.0, -f32::MAX], 1, 3);
    assert!(l
        .top
        .iter()
        .all(|c| c.1 >= edge_llm_guest::sampling::MIN_LOGPROB && c.1.is_finite()));
}
