//! Embedding edge-llm in a Rust program: one runtime, one long-lived instance, many calls.
//!
//! ```sh
//! just build model
//! cargo run --release -p edge-llm-host --example embed -- "What is WebAssembly?"
//! ```

use std::path::Path;

use edge_llm_host::{api, greedy, Runtime, RuntimeOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is WebAssembly?".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model_file = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");

    // Compile (or load from the cache) once; preload the model for the native backend.
    let mut options =
        RuntimeOptions::new(root.join("target/wasm32-wasip2/release/edge_llm_guest.wasm"));
    options.model_dir = Some(root.join("models"));
    let mut runtime = Runtime::new(options)?;
    eprintln!(
        "component: {} in {:.1?}",
        runtime.cache_status(),
        runtime.load_time()
    );
    runtime.preload(&model_file, &["smollm2-135m-instruct".to_string()])?;

    // One instance serves every call below.
    let mut instance = runtime.instantiate()?;
    let open = api::OpenOptions {
        backend: None,
        context_length: Some(2048),
    };
    let model = instance.open("smollm2-135m-instruct", &open)?;
    let info = instance.info(&model)?;
    eprintln!(
        "{} ({} parameters, {}) on {:?}",
        info.name, info.parameters, info.quantization, info.backend
    );

    // Stream a chat answer.
    let messages = [api::Message {
        role: "user".into(),
        content: question,
    }];
    let stream = instance.stream_chat(&model, &messages, &greedy(128))?;
    while let Some(chunk) = instance.next_chunk(&stream)? {
        print!("{}", chunk.text);
    }
    let done = instance.finish(&stream)?.ok_or("no summary")?;
    instance.drop_stream(stream)?;
    println!();
    eprintln!(
        "{} tokens, first after {:.1} ms, {:.1} tokens/s",
        done.usage.completion_tokens, done.timings.ttft_ms, done.timings.decode_tokens_per_s
    );

    // Reuse the same instance for a raw completion.
    let c = instance.complete(&model, "The capital of France is", &greedy(8))?;
    println!("The capital of France is{}", c.text);
    Ok(())
}
