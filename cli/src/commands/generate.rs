//! `run`, `chat` and `perplexity`: generation from the command line.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use edge_llm_host::models::RecommendedSampling;
use edge_llm_host::{api, Instance, ModelHandle, StreamHandle};
use serde_json::json;

use super::setup::{self, backend_name, Session};
use super::ModelArgs;

/// Sampling and stopping options. A sampling option left out takes, for a chat, the model's
/// recommended value (its GGUF's `general.sampling.*`) or else llama.cpp's default, and for a raw
/// completion the greedy setting.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Temperature; 0 = greedy [chat default: the model's, else 0.8; raw: 0].
    #[arg(long)]
    temperature: Option<f32>,
    /// Keep the k most likely tokens, 0 = off [chat default: the model's, else 40; raw: 0].
    #[arg(long)]
    top_k: Option<u32>,
    /// Nucleus sampling threshold in (0, 1], 1 = off [chat default: the model's, else 0.95; raw: 1].
    #[arg(long)]
    top_p: Option<f32>,
    /// Drop tokens below min-p times the top probability, 0 = off [chat default: the model's,
    /// else 0.05; raw: 0].
    #[arg(long)]
    min_p: Option<f32>,
    /// Repeat penalty, 1 = off [default: the model's, else 1].
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Window of the repeat penalty, in tokens [default: the model's, else 64].
    #[arg(long)]
    repeat_last_n: Option<u32>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    ignore_eos: bool,
}

/// llama.cpp's default sampler settings (`common_params_sampling`), for chats with a model
/// that recommends none.
const LLAMA_CPP_DEFAULTS: RecommendedSampling = RecommendedSampling {
    temperature: Some(0.8),
    top_k: Some(40),
    top_p: Some(0.95),
    min_p: Some(0.05),
    repeat_penalty: Some(1.0),
    repeat_last_n: Some(64),
};

impl SamplingArgs {
    /// The WIT parameters: the options given, else for a chat the model's recommended settings
    /// (`recommended`), else llama.cpp's defaults; for a raw completion, greedy.
    pub fn params(&self, chat: bool, recommended: &RecommendedSampling) -> api::Params {
        let greedy = edge_llm_host::greedy(self.max_tokens);
        let d = match chat {
            true => recommended.or(&LLAMA_CPP_DEFAULTS),
            false => RecommendedSampling::default(),
        };
        api::Params {
            temperature: self
                .temperature
                .or(d.temperature)
                .unwrap_or(greedy.temperature),
            top_k: self.top_k.or(d.top_k).unwrap_or(greedy.top_k),
            top_p: self.top_p.or(d.top_p).unwrap_or(greedy.top_p),
            min_p: self.min_p.or(d.min_p).unwrap_or(greedy.min_p),
            repeat_penalty: self
                .repeat_penalty
                .or(d.repeat_penalty)
                .unwrap_or(greedy.repeat_penalty),
            repeat_last_n: self
                .repeat_last_n
                .or(d.repeat_last_n)
                .unwrap_or(greedy.repeat_last_n),
            seed: self.seed,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            ..greedy
        }
    }

    /// [`SamplingArgs::params`] with the settings the model file at `path` recommends.
    pub fn params_for(&self, chat: bool, path: &Path) -> Result<api::Params> {
        let recommended = if chat {
            RecommendedSampling::from_file(path)?
        } else {
            RecommendedSampling::default()
        };
        Ok(self.params(chat, &recommended))
    }
}

/// `edge-llm run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Wrap PROMPT as one user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Print one JSON object instead of the stream.
    #[arg(long)]
    json: bool,
    /// The prompt (control tokens such as `<|im_start|>` are parsed).
    prompt: String,
}

/// `edge-llm chat`.
#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system message (default: the chat template's own).
    #[arg(long)]
    system: Option<String>,
}

pub(super) fn user(content: &str) -> api::Message {
    api::Message {
        role: "user".into(),
        content: content.into(),
    }
}

/// Pulls a stream to its end, printing chunks as they come when `print` is set.
fn drain(instance: &mut Instance, stream: StreamHandle, print: bool) -> Result<api::Completion> {
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = instance.next_chunk(&stream)? {
        if print {
            out.write_all(chunk.text.as_bytes())
                .context("writing to stdout")?;
            out.flush().context("writing to stdout")?;
        }
    }
    let completion = instance
        .finish(&stream)?
        .context("the stream ended without a summary")?;
    instance.drop_stream(stream)?;
    Ok(completion)
}

fn start(
    instance: &mut Instance,
    model: &ModelHandle,
    prompt: &str,
    chat: bool,
    params: &api::Params,
) -> Result<StreamHandle> {
    Ok(if chat {
        instance.stream_chat(model, &[user(prompt)], params)?
    } else {
        instance.stream_complete(model, prompt, params)?
    })
}

/// `edge-llm run`.
pub fn run(args: RunArgs) -> Result<()> {
    let mut s = Session::open(&args.model)?;
    let params = args.sampling.params_for(args.chat, &s.path)?;
    let stream = start(&mut s.instance, &s.model, &args.prompt, args.chat, &params)?;
    let c = drain(&mut s.instance, stream, !args.json)?;
    if args.json {
        let out = json!({
            "text": c.text,
            "tokens": c.tokens,
            "finish_reason": match c.finish_reason { api::FinishReason::Stop => "stop", api::FinishReason::Length => "length" },
            "usage": {
                "prompt_tokens": c.usage.prompt_tokens,
                "completion_tokens": c.usage.completion_tokens,
                "cached_prompt_tokens": c.usage.cached_prompt_tokens,
            },
            "backend": backend_name(c.backend),
            "timings": {
                "load_ms": s.load_time.as_secs_f64() * 1e3,
                "prefill_ms": c.timings.prefill_ms,
                "ttft_ms": c.timings.ttft_ms,
                "decode_tokens_per_s": c.timings.decode_tokens_per_s,
            },
        });
        println!("{out}");
    } else {
        println!();
    }
    setup::status(format_args!(
        "{} prompt + {} generated tokens on {}: prefill {:.1} ms, first token {:.1} ms, decode {:.1} tokens/s",
        c.usage.prompt_tokens,
        c.usage.completion_tokens,
        backend_name(c.backend),
        c.timings.prefill_ms,
        c.timings.ttft_ms,
        c.timings.decode_tokens_per_s
    ));
    Ok(())
}

/// `edge-llm chat`: reads user messages line by line and streams the answers.
pub fn chat(args: ChatArgs) -> Result<()> {
    let mut s = Session::open(&args.model)?;
    let params = args.sampling.params_for(true, &s.path)?;
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(api::Message {
            role: "system".into(),
            content: system.clone(),
        });
    }
    // While the user types, compute the chat template's preamble (with the template's own
    // system prompt the first message then runs only its own tokens).
    if args.system.is_none() {
        s.instance.warm_up(&s.model)?;
    }
    let stdin = std::io::stdin();
    eprint!("> ");
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            eprint!("> ");
            continue;
        }
        messages.push(user(&line));
        let stream = s.instance.stream_chat(&s.model, &messages, &params)?;
        let c = drain(&mut s.instance, stream, true)?;
        println!();
        messages.push(api::Message {
            role: "assistant".into(),
            content: c.text,
        });
        eprint!("> ");
    }
    Ok(())
}

/// `edge-llm perplexity`: tokenizes with the guest, scores with the native kernel.
pub fn perplexity(args: &ModelArgs, file: &Path, ctx: usize) -> Result<()> {
    if !(8..=8192).contains(&ctx) || !ctx.is_multiple_of(2) {
        bail!("--ctx must be an even number between 8 and 8192, got {ctx}");
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid UTF-8 (byte {})",
            file.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let mut s = Session::open(args)?;
    let tokens = s.instance.tokenize(&s.model, &text, false)?;
    let model = s
        .native_model
        .clone()
        .context("perplexity runs on the native kernel; use --backend auto or native")?;
    if tokens.len() < ctx {
        bail!(
            "{} has {} tokens, fewer than one chunk of --ctx {ctx}",
            file.display(),
            tokens.len()
        );
    }
    let threads = s.runtime.options().threads;
    let started = std::time::Instant::now();
    let p = edge_llm_kernel::perplexity(&model, &tokens, ctx, threads)?;
    println!(
        "{}",
        json!({
            "perplexity": p.ppl,
            "ctx": ctx,
            "chunks": p.chunks,
            "scored_tokens": p.scored,
            "tokens": tokens.len(),
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sampling: SamplingArgs,
    }

    fn sampling(args: &[&str]) -> SamplingArgs {
        Cli::parse_from(std::iter::once("edge-llm").chain(args.iter().copied())).sampling
    }

    #[test]
    fn a_chat_samples_as_the_model_recommends_else_as_llama_cpp() {
        let none = RecommendedSampling::default();
        let p = sampling(&[]).params(true, &none);
        assert_eq!(
            (p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty),
            (0.8, 40, 0.95, 0.05, 1.0)
        );
        let model = RecommendedSampling {
            temperature: Some(0.2),
            top_p: Some(0.9),
            ..RecommendedSampling::default()
        };
        let p = sampling(&[]).params(true, &model);
        assert_eq!((p.temperature, p.top_k, p.top_p), (0.2, 40, 0.9));
        let p = sampling(&["--top-p", "0.5"]).params(true, &model);
        assert_eq!(p.top_p, 0.5, "an option given wins");
    }

    #[test]
    fn temperature_zero_and_raw_completions_stay_greedy() {
        let model = RecommendedSampling {
            temperature: Some(0.7),
            ..RecommendedSampling::default()
        };
        assert_eq!(
            sampling(&["--temperature", "0"])
                .params(true, &model)
                .temperature,
            0.0
        );
        let raw = sampling(&[]).params(false, &model);
        let greedy = edge_llm_host::greedy(256);
        assert_eq!(
            (raw.temperature, raw.top_k, raw.top_p, raw.min_p),
            (greedy.temperature, greedy.top_k, greedy.top_p, greedy.min_p)
        );
    }
}
