//! `edge-llm serve`: the composed HTTP component (`just compose-http`) behind an
//! OpenAI-compatible HTTP server, with the native backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::{ServeOptions, Server};
use anyhow::{bail, Context, Result};

use super::setup::{self, status, ComponentKind, ModelFile};
use super::{BackendChoice, ModelArgs};

/// `edge-llm serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// `--component` is the composed HTTP component (default: $EDGE_LLM_HTTP_COMPONENT, else
    /// the `edge-llm-http.wasm` that `just compose-http` builds).
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on; port 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Requests generating at once, each in its own instance (default: 2).
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Requests that may wait for an instance; more get 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// KV cache memory of all sessions together, in MiB (default: room for `--concurrency`
    /// sessions of `--ctx-size` tokens, else of the model's context up to 8192 tokens each); a
    /// request that cannot get the memory for its prompt plus `max_tokens` gets 503 with
    /// `Retry-After`.
    #[arg(long, value_name = "MIB")]
    kv_memory: Option<usize>,
    /// Request bodies larger than this get 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Another name a request's `model` may use, e.g. `gpt-3.5-turbo` (repeatable; `*`
    /// accepts any name).
    #[arg(long = "model-alias", value_name = "NAME")]
    model_alias: Vec<String>,
    /// A key clients must send as `Authorization: Bearer KEY` (repeatable; any one passes);
    /// every route but `/health` answers 401 without one.
    #[arg(long = "api-key", value_name = "KEY")]
    api_key: Vec<String>,
    /// An origin browsers may call from, e.g. `http://localhost:3000` (repeatable; `*` for
    /// any): responses carry CORS headers and preflights are answered.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origin: Vec<String>,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    // Memory a truncated KV cache frees goes back to the system.
    crate::alloc::map_large_blocks();
    if !(1..=256).contains(&args.concurrency) {
        bail!(
            "--concurrency must be between 1 and 256, got {}",
            args.concurrency
        );
    }
    if args.max_body_bytes == 0 {
        bail!("--max-body-bytes must be at least 1");
    }
    for (flag, values) in [
        ("--model-alias", &args.model_alias),
        ("--api-key", &args.api_key),
        ("--cors-origin", &args.cors_origin),
    ] {
        if let Some(bad) = values
            .iter()
            .find(|v| v.trim().is_empty() || v.contains(',') || v.trim() != v.as_str())
        {
            bail!("{flag} must be non-empty, without commas or outer spaces, got `{bad}`");
        }
    }
    let started = Instant::now();
    let file = ModelFile::resolve(&args.model)?;
    let native = args.model.backend != BackendChoice::Wasm;
    let mut runtime = setup::runtime_options(
        &args.model,
        ComponentKind::Http,
        native,
        Some(file.dir.clone()),
    )?;
    // The front opens the model by its manifest name when it has one, else by its path.
    let served_name = file.names.last().cloned().unwrap_or_default();
    runtime.guest_env = vec![
        ("EDGE_LLM_MODEL".into(), served_name.clone()),
        (
            "EDGE_LLM_MAX_BODY_BYTES".into(),
            args.max_body_bytes.to_string(),
        ),
    ];
    if !args.model_alias.is_empty() {
        runtime
            .guest_env
            .push(("EDGE_LLM_MODEL_ALIASES".into(), args.model_alias.join(",")));
    }
    if !args.api_key.is_empty() {
        runtime
            .guest_env
            .push(("EDGE_LLM_API_KEYS".into(), args.api_key.join(",")));
    }
    if !args.cors_origin.is_empty() {
        runtime
            .guest_env
            .push(("EDGE_LLM_CORS_ORIGINS".into(), args.cors_origin.join(",")));
    }
    // The front reports each request's tokens as trailers, which `/metrics` counts.
    runtime
        .guest_env
        .push(("EDGE_LLM_USAGE_TRAILERS".into(), "1".into()));
    if let Some(n) = args.model.ctx_size {
        runtime
            .guest_env
            .push(("EDGE_LLM_CTX_SIZE".into(), n.to_string()));
    }
    runtime.pooling = Some(u32::try_from(args.concurrency + 1).unwrap_or(u32::MAX));
    let options = ServeOptions {
        runtime,
        concurrency: args.concurrency,
        queue: args.queue,
        timeout: args.model.timeout_ms.map(Duration::from_millis),
        api_keys: args.api_key.clone(),
        cors_origins: args.cors_origin.clone(),
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        // Each generating request occupies a thread while it is in the native backend
        // (computing or waiting for its batched step); the backend first hands that worker's
        // queued tasks to another thread (edge-llm-host's `nn::blocking`), among them a
        // connection's, whose hang-up cancels a call. A spare worker per request keeps the
        // other requests' guests running meanwhile. Idle workers cost a thread each.
        .worker_threads(2 * args.concurrency + 1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    tokio.block_on(async move {
        let component = options.runtime.component.clone();
        let mut server = Server::new(options)?;
        status(format_args!(
            "component {}: {} in {:.1?}",
            component.display(),
            server.cache_status(),
            server.load_time()
        ));
        if native {
            let model = server.preload(&file.path, &file.names)?;
            let budget = kv_memory_bytes(&model, args.kv_memory, args.model.ctx_size, args.concurrency)?;
            server.set_kv_memory(budget);
            status(format_args!(
                "KV cache memory: {:.0} MiB{}",
                budget as f64 / MIB,
                if args.kv_memory.is_some() { "" } else { " (--concurrency × the context; --kv-memory sets it)" }
            ));
        }
        let server = Arc::new(server);
        let (code, body) = server.warm_up().await?;
        if code != 200 {
            bail!("the model does not open: {}", body.trim());
        }
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        eprintln!(
            "edge-llm: serving {served_name} on http://{addr} ({}, {} at once, ready in {:.0?}); Ctrl-C stops",
            if native { "native backend" } else { "wasm kernel" },
            args.concurrency,
            started.elapsed()
        );
        server.serve(listener, shutdown_signal()).await?;
        eprintln!("edge-llm: stopped");
        Ok(())
    })
}

const MIB: f64 = (1 << 20) as f64;

/// Positions per session the default KV budget counts when `--ctx-size` is not given: the
/// sessions may still grow to the model's context, as long as the budget has room.
const MAX_CTX: usize = 8192;

/// The KV cache memory budget in bytes: `--kv-memory` MiB, or by default room for
/// `concurrency` sessions of `--ctx-size` positions, else of the model's context up to
/// [`MAX_CTX`].
fn kv_memory_bytes(
    model: &Arc<edge_llm_kernel::Model>,
    kv_memory: Option<usize>,
    ctx_size: Option<u32>,
    concurrency: usize,
) -> Result<usize> {
    if let Some(mib) = kv_memory {
        if mib == 0 {
            bail!("--kv-memory must be at least 1 (MiB)");
        }
        return mib.checked_mul(1 << 20).context("--kv-memory is too large");
    }
    let c = model.config();
    let positions = ctx_size.map_or(c.n_ctx_train.min(MAX_CTX), |n| n as usize);
    let cache = edge_llm_kernel::model::KvCache::new(c.n_layer, c.kv_dim(), c.n_ctx_train);
    Ok(cache.bytes_for(positions).saturating_mul(concurrency))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
