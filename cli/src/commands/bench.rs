//! `edge-llm bench`: prefill and decode speed, time to first token, instantiation and cold start,
//! per backend and thread count. Medians over repetitions; a table on stdout, or `--json`.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use edge_llm_host::api;
use serde_json::{json, Value};

use super::generate::user;
use super::setup::Session;
use super::{BackendChoice, ModelArgs};

/// `edge-llm bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Backends to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [BackendChoice::Native, BackendChoice::Wasm])]
    backends: Vec<BackendChoice>,
    /// Native thread counts to measure (comma-separated; default: 1 and all cores).
    #[arg(long, value_delimiter = ',')]
    thread_counts: Vec<usize>,
    /// Prompt lengths for prefill, in tokens.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 128])]
    prefill: Vec<usize>,
    /// Tokens to decode.
    #[arg(long, default_value_t = 64)]
    decode: u32,
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Also measure process start → first token with a warm and a cold cache.
    #[arg(long)]
    cold_start: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

const FILLER: &str =
    "WebAssembly is a binary instruction format for a stack-based virtual machine, \
designed as a portable compilation target for programming languages, enabling deployment on the \
web for client and server applications. ";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `{median, min, max, n}` of the runs, for the JSON report.
fn spread(v: &[f64]) -> Value {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    json!({ "median": median(v.to_vec()), "min": min, "max": max, "n": v.len() })
}

fn params(max_tokens: u32) -> api::Params {
    api::Params {
        ignore_eos: true,
        ..edge_llm_host::greedy(max_tokens)
    }
}

/// A different first word for each prompt the bench sends, so that consecutive prompts share
/// no prefix the warm session could reuse (a reused prefix would inflate prefill speed).
fn opening() -> &'static str {
    const WORDS: [&str; 8] = [
        "Apples", "Bridges", "Clouds", "Deserts", "Engines", "Forests", "Gardens", "Harbors",
    ];
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    WORDS[NEXT.fetch_add(1, Ordering::Relaxed) % WORDS.len()]
}

/// A prompt of exactly `n` tokens that shares no prefix with the previous one.
fn prompt_of(s: &mut Session, n: usize, rep: usize) -> Result<String> {
    let text = format!("{} {n}/{rep}. {}", opening(), FILLER.repeat(n / 20 + 2));
    let ids = s.instance.tokenize(&s.model, &text, false)?;
    let mut cut = ids.get(..n).context("filler too short")?.to_vec();
    for _ in 0..4 {
        let prompt = s.instance.detokenize(&s.model, &cut)?;
        let again = s.instance.tokenize(&s.model, &prompt, false)?;
        if again.len() == n {
            return Ok(prompt);
        }
        cut.truncate(cut.len() - (again.len().saturating_sub(n)).max(1));
    }
    bail!("could not build a {n}-token prompt")
}

/// Prompt tokens of the chat-TTFT figure.
const CHAT_TOKENS: usize = 32;

/// A one-message chat whose templated prompt is exactly `n` tokens, its user text starting
/// differently from the previous one's.
fn chat_prompt_of(s: &mut Session, n: usize, rep: usize) -> Result<Vec<api::Message>> {
    let text = format!("{} {n}/{rep}. {FILLER}", opening());
    let ids = s.instance.tokenize(&s.model, &text, false)?;
    for k in (1..=n.min(ids.len())).rev() {
        let messages = vec![user(&s.instance.detokenize(&s.model, &ids[..k])?)];
        let templated = s.instance.apply_chat_template(&s.model, &messages)?;
        match s
            .instance
            .tokenize(&s.model, &templated, true)?
            .len()
            .cmp(&n)
        {
            std::cmp::Ordering::Equal => return Ok(messages),
            std::cmp::Ordering::Less => break,
            std::cmp::Ordering::Greater => {}
        }
    }
    bail!("could not build a {n}-token chat prompt")
}

/// Time to first token of [`CHAT_TOKENS`]-token chat prompts on the warm instance, as
/// `edge-llm chat` sends them: after `warm-up`, each shares the chat template's preamble with
/// what the session holds and nothing else. Returns the TTFTs and the prompt tokens each
/// actually prefilled.
fn chat_ttft(s: &mut Session, repeat: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    s.instance.warm_up(&s.model)?;
    let (mut ttfts, mut prefilled) = (Vec::new(), Vec::new());
    for rep in 0..repeat {
        let messages = chat_prompt_of(s, CHAT_TOKENS, rep)?;
        let c = s.instance.chat(&s.model, &messages, &params(1))?;
        if c.usage.prompt_tokens as usize != CHAT_TOKENS {
            bail!(
                "the chat call prompted {} tokens, the template gives {CHAT_TOKENS}",
                c.usage.prompt_tokens
            );
        }
        ttfts.push(c.timings.ttft_ms);
        prefilled.push(f64::from(
            c.usage.prompt_tokens - c.usage.cached_prompt_tokens,
        ));
    }
    Ok((ttfts, prefilled))
}

fn measure(args: &BenchArgs, backend: BackendChoice, threads: usize) -> Result<Value> {
    let mut model_args = args.model.clone();
    model_args.backend = backend;
    model_args.threads = Some(threads);
    let t = Instant::now();
    let mut s = Session::open(&model_args)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let instantiate_ms = s.instance.instantiate_time().as_secs_f64() * 1e3;
    let mut row = json!({
        "backend": match backend { BackendChoice::Wasm => "wasm", _ => "native" },
        "threads": if backend == BackendChoice::Wasm { 1 } else { threads },
        "setup_ms": open_ms,
        "instantiate_ms": instantiate_ms,
        // Median, min and max of every measured figure (JSON only; the table shows medians).
        "spread": {},
    });
    // Warm-up: first-touch of the weights.
    s.instance.complete(&s.model, "Hello", &params(4))?;
    for &n in &args.prefill {
        let mut speeds = Vec::new();
        let mut ttfts = Vec::new();
        for rep in 0..args.repeat {
            let prompt = prompt_of(&mut s, n, rep)?;
            let c = s.instance.complete(&s.model, &prompt, &params(1))?;
            speeds.push(f64::from(c.usage.prompt_tokens) / (c.timings.prefill_ms / 1e3));
            ttfts.push(c.timings.ttft_ms);
        }
        row["spread"][format!("pp{n}_tokens_per_s")] = spread(&speeds);
        row["spread"][format!("pp{n}_ttft_ms")] = spread(&ttfts);
        row[format!("pp{n}_tokens_per_s")] = json!(median(speeds));
        row[format!("pp{n}_ttft_ms")] = json!(median(ttfts));
    }
    let (ttfts, prefilled) = chat_ttft(&mut s, args.repeat)?;
    row["spread"][format!("chat{CHAT_TOKENS}_ttft_ms")] = spread(&ttfts);
    row[format!("chat{CHAT_TOKENS}_ttft_ms")] = json!(median(ttfts));
    row[format!("chat{CHAT_TOKENS}_prefilled")] = json!(median(prefilled));
    let mut decode = Vec::new();
    for rep in 0..args.repeat {
        let c = s.instance.complete(
            &s.model,
            &format!("{} story {rep}: once upon a time", opening()),
            &params(args.decode),
        )?;
        decode.push(c.timings.decode_tokens_per_s);
    }
    row["spread"][format!("tg{}_tokens_per_s", args.decode)] = spread(&decode);
    row[format!("tg{}_tokens_per_s", args.decode)] = json!(median(decode));
    Ok(row)
}

/// Wall time of `edge-llm run --max-tokens 1` in a new process.
fn cold_start(args: &BenchArgs, fresh_cache: bool) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let mut times = Vec::new();
    for _ in 0..args.repeat {
        let mut cmd = Command::new(&exe);
        cmd.args(["run", "--max-tokens", "1", "--json"]);
        if let Some(m) = &args.model.model {
            cmd.args(["--model", m]);
        }
        if let Some(c) = &args.model.component {
            cmd.arg("--component").arg(c);
        }
        // A fresh cache directory per run, removed when dropped.
        let fresh = match fresh_cache {
            true => Some(
                tempfile::Builder::new()
                    .prefix("edge-llm-bench-cold-")
                    .tempdir()
                    .context("creating a cache directory")?,
            ),
            false => None,
        };
        let cache_dir = fresh
            .as_ref()
            .map(|d| d.path())
            .or(args.model.cache_dir.as_deref());
        if let Some(dir) = cache_dir {
            cmd.arg("--cache-dir").arg(dir);
        }
        cmd.arg("Hi");
        let t = Instant::now();
        let out = cmd.output();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(fresh);
        let out = out?;
        if !out.status.success() {
            bail!(
                "cold-start run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(median(times))
}

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.repeat == 0 || args.decode == 0 {
        bail!("--repeat and --decode must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = args.thread_counts.clone();
    if threads.is_empty() {
        threads = vec![1, cores];
        threads.dedup();
    }
    let mut rows = Vec::new();
    for &backend in &args.backends {
        let counts: &[usize] = if backend == BackendChoice::Wasm {
            &[1]
        } else {
            &threads
        };
        for &t in counts {
            rows.push(measure(&args, backend, t)?);
        }
    }
    let mut report = json!({ "rows": rows });
    if args.cold_start {
        cold_start(&args, false)?; // make sure the cache is populated
        report["cold_start_warm_cache_ms"] = json!(cold_start(&args, false)?);
        report["cold_start_cold_cache_ms"] = json!(cold_start(&args, true)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let columns: Vec<String> = rows
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().filter(|k| *k != "spread").cloned().collect())
        .unwrap_or_default();
    println!("| {} |", columns.join(" | "));
    println!("|{}", " --- |".repeat(columns.len()));
    for row in &rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match &row[c] {
                Value::Number(n) => n
                    .as_f64()
                    .map_or_else(|| n.to_string(), |f| format!("{f:.1}")),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        println!("| {} |", cells.join(" | "));
    }
    for key in ["cold_start_warm_cache_ms", "cold_start_cold_cache_ms"] {
        if let Some(v) = report[key].as_f64() {
            println!("{key}: {v:.1}");
        }
    }
    Ok(())
}
