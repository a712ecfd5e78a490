//! `candle-bench --model GGUF --ids a,b,c.. --first-ids a,b --prefill 32,128 --decode 64 --t0 T`
//!
//! Runs candle's quantized llama (candle-transformers 0.11.1, CPU) the way `edge-llm bench`
//! and the llama.cpp worker of tests/peers/bench_peers.py do, and prints one JSON object:
//! prefill tokens/s of the first N of `--ids`, time to first token of a 32-token prompt,
//! decode tokens/s of one-token steps, and the time from `--t0` (seconds since the Unix epoch,
//! taken by the parent just before it started this process) to the first token of
//! `--first-ids`. Threads: candle's CPU backend reads RAYON_NUM_THREADS.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    model: String,
    ids: Vec<u32>,
    first_ids: Vec<u32>,
    prefill: Vec<usize>,
    decode: usize,
    t0: f64,
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("bad list item {v:?}").into())
        })
        .collect()
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        model: String::new(),
        ids: vec![],
        first_ids: vec![],
        prefill: vec![],
        decode: 64,
        t0: 0.0,
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => a.model = v,
            "--ids" => a.ids = list(&v)?,
            "--first-ids" => a.first_ids = list(&v)?,
            "--prefill" => a.prefill = list(&v)?,
            "--decode" => a.decode = v.parse()?,
            "--t0" => a.t0 = v.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    let longest = a.prefill.iter().copied().chain([32]).max().unwrap_or(32);
    if a.model.is_empty() || a.first_ids.is_empty() || a.ids.len() < longest + a.decode {
        return Err("need --model, --first-ids and at least max(prefill) + decode --ids".into());
    }
    Ok(a)
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs `ids` from position `pos` and returns the greedy next token.
fn step(model: &mut ModelWeights, ids: &[u32], pos: usize) -> Result<u32> {
    let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
    let logits = model.forward(&input, pos)?.squeeze(0)?;
    Ok(logits.argmax(0)?.to_scalar::<u32>()?)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let mut file = std::fs::File::open(&a.model)?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu)?;
    step(&mut model, &a.first_ids, 0)?;
    let start_to_first_token_ms = (now_unix() - a.t0) * 1e3;

    let mut out = vec![format!(
        "\"start_to_first_token_ms\": {start_to_first_token_ms}"
    )];
    for &n in &a.prefill {
        let t = Instant::now();
        step(&mut model, &a.ids[..n], 0)?; // position 0 drops the previous KV cache
        out.push(format!(
            "\"pp{n}_tokens_per_s\": {}",
            n as f64 / t.elapsed().as_secs_f64()
        ));
    }
    let t = Instant::now();
    step(&mut model, &a.ids[1..33], 0)?;
    out.push(format!(
        "\"ttft32_ms\": {}",
        t.elapsed().as_secs_f64() * 1e3
    ));

    let prompt = &a.ids[..8];
    let mut tok = step(&mut model, prompt, 0)?;
    let t = Instant::now();
    for i in 0..a.decode {
        tok = step(&mut model, &[tok], prompt.len() + i)?;
    }
    out.push(format!(
        "\"tg{}_tokens_per_s\": {}",
        a.decode,
        a.decode as f64 / t.elapsed().as_secs_f64()
    ));
    println!("{{{}}}", out.join(", "));
    Ok(())
}
