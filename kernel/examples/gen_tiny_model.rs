//! Writes the deterministic tiny test model to a file.
//!
//! Usage: `cargo run -p edge-llm-kernel --example gen_tiny_model -- OUT.gguf [SEED]`

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: gen_tiny_model OUT.gguf [SEED]");
        std::process::exit(2);
    };
    let seed = match args.next().map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("bad seed: {e}");
            std::process::exit(2);
        }
    };
    let bytes = edge_llm_kernel::tiny::tiny_model_gguf(seed);
    if let Err(e) = std::fs::write(&path, &bytes) {
        eprintln!("cannot write {path}: {e}");
        std::process::exit(1);
    }
    println!("wrote {} bytes to {path}", bytes.len());
}
