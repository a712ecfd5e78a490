//! Writes a copy of a GGUF model with its matrices in another type (this crate's simple
//! quantizers, from the values the file's types dequantize to), to try the kernels on types
//! no model at hand has. K-quant matrices whose rows are not whole 256-blocks get llama.cpp's
//! fallback type (Q4_K: Q5_0, Q5_K: Q5_1, Q6_K: Q8_0, Q2_K/Q3_K: IQ4_NL).
//!
//! Usage: `cargo run -p edge-llm-kernel --release --example requantize -- IN.gguf OUT.gguf TYPE`
//! (TYPE: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K ... Q6_K, F16, BF16, F32).

use edge_llm_kernel::gguf::GgmlType;
use edge_llm_kernel::requantize::{k_quant_fallback, requantize};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, ty] = &args[..] else {
        eprintln!("usage: requantize IN.gguf OUT.gguf TYPE");
        std::process::exit(2);
    };
    let Some(ty) = (0..64)
        .filter_map(GgmlType::from_u32)
        .find(|t| t.name() == ty.as_str())
    else {
        eprintln!("unknown type {ty}");
        std::process::exit(2);
    };
    let bytes = std::fs::read(input).unwrap_or_else(|e| {
        eprintln!("cannot read {input}: {e}");
        std::process::exit(1)
    });
    let out = requantize(&bytes, |t| {
        if ty.row_bytes(t.dims[0]).is_some() {
            ty
        } else {
            k_quant_fallback(ty)
        }
    })
    .unwrap_or_else(|e| {
        eprintln!("{input}: {e}");
        std::process::exit(1)
    });
    if let Err(e) = std::fs::write(output, &out) {
        eprintln!("cannot write {output}: {e}");
        std::process::exit(1);
    }
    println!("{output}: {} bytes", out.len());
}
