//! Startup of a fresh instance, per component variant: instantiation, `open` of the default
//! model (instantiate-to-ready is the sum), and the first generated token.
//!
//! `just bench-startup` (or `cargo run --release -p edge-llm-tests --features startup-bench
//! --example startup` after `just compose bundle`). Each variant is loaded once through the host
//! runtime (precompiled-component cache, copy-on-write memory images) with the native backend
//! off; then every repetition instantiates a new store, as a server would per request.

use std::path::Path;
use std::time::{Duration, Instant};

use edge_llm_host::{api, greedy, HostError, Runtime, RuntimeOptions};
use edge_llm_tests::root;

/// Fresh instances measured per variant.
const REPEAT: usize = 10;

/// One component to measure.
struct Variant {
    label: &'static str,
    component: &'static str,
    recipe: &'static str,
    /// Preopen `models/` (the file-based component reads the GGUF from it).
    model_dir: bool,
}

/// One instance's figures.
#[derive(Clone, Copy)]
struct Sample {
    instantiate: Duration,
    open: Duration,
    first_token: Duration,
}

fn one_instance(runtime: &Runtime) -> Result<Sample, HostError> {
    let started = Instant::now();
    let mut instance = runtime.instantiate()?;
    let instantiate = started.elapsed();
    let options = api::OpenOptions {
        backend: None,
        context_length: None,
    };
    let model = instance.open("smollm2-135m-instruct", &options)?;
    let open = started.elapsed() - instantiate;
    let stream = instance.stream_complete(&model, "The capital of France is", &greedy(1))?;
    while instance
        .next_chunk(&stream)?
        .is_some_and(|c| c.tokens.is_empty())
    {}
    let first_token = started.elapsed() - instantiate - open;
    Ok(Sample {
        instantiate,
        open,
        first_token,
    })
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn measure(v: &Variant) -> Result<(), String> {
    let component = root().join(v.component);
    if !component.is_file() {
        return Err(format!(
            "{} is missing: run `just {}`",
            component.display(),
            v.recipe
        ));
    }
    let mut options = RuntimeOptions::new(&component);
    options.native = false;
    options.cache_dir = Some(root().join("target/startup-cache"));
    options.model_dir = v.model_dir.then(|| root().join("models"));
    let runtime = Runtime::new(options).map_err(|e| e.to_string())?;
    // A first instance warms the cache file's pages; it is not counted.
    one_instance(&runtime).map_err(|e| e.to_string())?;
    let samples: Vec<Sample> = (0..REPEAT)
        .map(|_| one_instance(&runtime))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let pick = |f: fn(&Sample) -> Duration| median(samples.iter().map(f).collect());
    println!(
        "{:<28} {:>10.1} MB {:>14.2} {:>10.2} {:>20.2} {:>16.2}",
        v.label,
        file_mb(&component),
        pick(|s| s.instantiate),
        pick(|s| s.open),
        pick(|s| s.instantiate + s.open),
        pick(|s| s.first_token),
    );
    Ok(())
}

fn file_mb(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6)
}

fn main() -> std::process::ExitCode {
    let variants = [
        Variant {
            label: "file-based (standalone)",
            component: "target/edge-llm-standalone.wasm",
            recipe: "compose",
            model_dir: true,
        },
        Variant {
            label: "bundled, no wizer",
            component: "target/edge-llm-bundle-raw.wasm",
            recipe: "bundle",
            model_dir: false,
        },
        Variant {
            label: "bundled + wizer",
            component: "target/edge-llm-bundle.wasm",
            recipe: "bundle",
            model_dir: false,
        },
    ];
    println!("medians of {REPEAT} fresh instances, milliseconds (first token: prompt of 5 tokens)");
    println!(
        "{:<28} {:>13} {:>14} {:>10} {:>20} {:>16}",
        "component", "size", "instantiate", "open", "instantiate→ready", "first token"
    );
    for v in &variants {
        if let Err(e) = measure(v) {
            eprintln!("error: {}: {e}", v.label);
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
