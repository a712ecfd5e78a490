//! Prints a GGUF file's metadata (arrays abbreviated) and tensor table.
//!
//! Usage: `cargo run -p edge-llm-kernel --example gguf_info -- MODEL.gguf`

use edge_llm_kernel::gguf::{Gguf, MetadataValue};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: gguf_info FILE.gguf");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let g = match Gguf::parse(&bytes) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    println!("version {}", g.version());
    for k in g.keys() {
        match g.get(k) {
            Some(MetadataValue::Array(a)) => println!("{k} = {} of {}", a.type_name(), a.len()),
            Some(v) => println!("{k} = {v:?}"),
            None => {}
        }
    }
    for t in g.tensors() {
        println!("{} {} {:?} @{} +{}", t.name, t.ty, t.dims, t.offset, t.size);
    }
}
