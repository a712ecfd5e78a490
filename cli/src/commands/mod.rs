//! The command line: argument parsing and one module per subcommand.

mod bench;
mod generate;
mod serve;
mod setup;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

/// Run small language models inside a WebAssembly sandbox.
#[derive(Parser, Debug)]
#[command(name = "edge-llm", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Print progress and timing details on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a completion of PROMPT (streamed to stdout).
    Run(generate::RunArgs),
    /// Chat interactively: one user message per line on stdin.
    Chat(generate::ChatArgs),
    /// Print the token ids of TEXT as a JSON array.
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        /// Do not parse control tokens such as `<|im_start|>` in TEXT.
        #[arg(long)]
        no_control: bool,
        /// The text.
        text: String,
    },
    /// Describe the model (architecture, size, context, quantization, backend) as JSON.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Perplexity of a text file, scored like llama.cpp's llama-perplexity.
    Perplexity {
        #[command(flatten)]
        model: ModelArgs,
        /// The text file.
        file: PathBuf,
        /// Context length of each chunk.
        #[arg(long, default_value_t = 512)]
        ctx: usize,
    },
    /// Compile the component into the cache now.
    Precompile {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Measure prefill, decode, time to first token, cold start and instantiation.
    Bench(bench::BenchArgs),
    /// Serve an OpenAI-compatible HTTP API (the composed HTTP component, native backend).
    Serve(serve::ServeArgs),
}

/// Which engine runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The native backend when available, else the guest's kernel.
    Auto,
    /// The host's native wasi-nn backend.
    Native,
    /// The guest's own kernel inside the sandbox.
    Wasm,
}

/// Options shared by every command that loads a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// GGUF file or known model name (default: $EDGE_LLM_MODEL, else the fetched default model).
    #[arg(long)]
    model: Option<String>,
    /// Backend: auto prefers native.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Threads of the native backend (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// The guest component (default: $EDGE_LLM_COMPONENT, else the one built beside this binary).
    #[arg(long)]
    component: Option<PathBuf>,
    /// Directory of the caches of precompiled components and repacked models (default: the
    /// platform cache dir).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile the component and repack the model in memory; neither read nor write a cache.
    #[arg(long)]
    no_cache: bool,
    /// Context length in tokens (default: the model's).
    #[arg(long)]
    ctx_size: Option<u32>,
    /// Give up on a call after this many milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

/// Runs the parsed command.
pub fn run(args: Args) -> Result<()> {
    // `serve` always logs its requests and warnings (target `edge_llm::access`, and warn).
    // wasi-nn's glue logs every backend failure as an error; the server logs them itself.
    let quiet = matches!(args.command, Command::Serve(_))
        .then_some("warn,edge_llm::access=info,wasmtime_wasi_nn=off");
    setup::init_logging(args.verbose, quiet);
    match args.command {
        Command::Run(a) => generate::run(a),
        Command::Chat(a) => generate::chat(a),
        Command::Tokenize {
            model,
            no_control,
            text,
        } => {
            let mut s = setup::Session::open(&model)?;
            let ids = s.instance.tokenize(&s.model, &text, !no_control)?;
            println!("{}", serde_json::to_string(&ids)?);
            Ok(())
        }
        Command::Info { model } => {
            let mut s = setup::Session::open(&model)?;
            let info = s.instance.info(&s.model)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&setup::info_json(&info, &s.path)?)?
            );
            Ok(())
        }
        Command::Perplexity { model, file, ctx } => generate::perplexity(&model, &file, ctx),
        Command::Precompile { model } => {
            let runtime = setup::runtime(&model, false, None)?;
            eprintln!("{} in {:.0?}", runtime.cache_status(), runtime.load_time());
            Ok(())
        }
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
    }
}
