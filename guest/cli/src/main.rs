//! `edge-llm-cli`: a command-line front for any component that exports `edge:llm/inference`.
//!
//! It implements the `llm-client` world (it imports `inference` and nothing of its own) and,
//! being a Rust binary for wasm32-wasip2, exports `wasi:cli/run`. Composed with an inference
//! component (`just compose`, `just bundle`) it runs under the stock `wasmtime run`:
//!
//! ```text
//! wasmtime run --dir models::/models target/edge-llm-cli.wasm "The capital of France is" --max-tokens 16
//! ```
//!
//! Text streams to stdout as it is generated; `--json` prints one object at the end instead.
//! Errors are one line on stderr and a non-zero exit status.

mod args;
mod output;

use std::process::ExitCode;
use std::time::Instant;

use args::{Args, ArgsError, Command};
use bindings::edge::llm::inference as api;

#[allow(clippy::all, unused_qualifications)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "edge:llm/llm-client",
        generate_all,
    });
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The command line is malformed.
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// The inference component refused or failed.
    #[error("{}", output::describe(.0))]
    Inference(api::Error),
    /// Writing to stdout failed.
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

impl From<api::Error> for CliError {
    fn from(e: api::Error) -> Self {
        CliError::Inference(e)
    }
}

fn params(args: &Args) -> api::Params {
    api::Params {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: args.seed,
        stop: Vec::new(),
        ignore_eos: false,
    }
}

/// Opens the model, generates, and prints the stream or the JSON summary.
fn run(args: &Args) -> Result<(), CliError> {
    let started = Instant::now();
    let options = api::OpenOptions {
        backend: None,
        context_length: None,
    };
    let model = api::Model::open(&args.model, options)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let generation = if args.chat {
        let message = api::Message {
            role: "user".into(),
            content: args.prompt.clone(),
        };
        model.stream_chat(&[message], &params(args))?
    } else {
        model.stream_complete(&args.prompt, &params(args))?
    };
    let mut out = output::Output::new(args.json);
    while let Some(chunk) = generation.next()? {
        out.chunk(&chunk.text)?;
    }
    let completion = generation
        .finish()
        .ok_or_else(|| api::Error::RuntimeError("the generation ended without a summary".into()))?;
    out.finish(&completion, load_ms)?;
    Ok(())
}

fn main() -> ExitCode {
    let result = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(args)) => run(&args),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = e.to_string().replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
