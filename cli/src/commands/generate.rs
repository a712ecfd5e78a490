//! `run`, `chat` and `perplexity`: generation from the command line.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use edge_llm_host::{api, Instance, ModelHandle, StreamHandle};
use serde_json::json;

use super::setup::{self, backend_name, Session};
use super::ModelArgs;

/// Sampling and stopping options.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    /// Nucleus sampling threshold in (0, 1] (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Drop tokens below min-p times the top probability (0 = off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Repeat penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Window of the repeat penalty, in tokens.
    #[arg(long, default_value_t = 64)]
    repeat_last_n: u32,
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

impl SamplingArgs {
    /// The WIT parameters.
    pub fn params(&self) -> api::Params {
        api::Params {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
        }
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
    let params = args.sampling.params();
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
    let params = args.sampling.params();
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
