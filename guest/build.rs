//! Build-time inputs the component includes:
//! - feature `preinit`: the header of the GGUF file `$EDGE_LLM_PREINIT_MODEL` names (its bytes
//!   before the tensor data, then its length) in `$OUT_DIR/preinit-header.bin`, which
//!   `src/preinit.rs` builds in;
//! - feature `bundle`: the GGUF file `$EDGE_LLM_BUNDLE_MODEL` names with its Q4_1 matrices
//!   repacked ([`Model::repack_in_place`], the layout the SIMD kernels read fastest) in
//!   `$OUT_DIR/bundle-model.gguf`, which `src/bundle.rs` builds in.

use std::path::{Path, PathBuf};

use edge_llm_kernel::gguf::Gguf;
use edge_llm_kernel::Model;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if std::env::var_os("CARGO_FEATURE_PREINIT").is_some() {
        let (model, bytes) = read_model("EDGE_LLM_PREINIT_MODEL", "preinit", "just preinit");
        let gguf =
            Gguf::parse(&bytes).unwrap_or_else(|e| fail(&format!("{}: {e}", model.display())));
        write(
            &out.join("preinit-header.bin"),
            &gguf.header_with_len(&bytes),
        );
    }
    if std::env::var_os("CARGO_FEATURE_BUNDLE").is_some() {
        let (model, mut bytes) = read_model("EDGE_LLM_BUNDLE_MODEL", "bundle", "just bundle");
        Model::repack_in_place(&mut bytes)
            .unwrap_or_else(|e| fail(&format!("{}: {e}", model.display())));
        write(&out.join("bundle-model.gguf"), &bytes);
    }
}

/// The path in `$var` and the bytes of that file.
fn read_model(var: &str, feature: &str, recipe: &str) -> (PathBuf, Vec<u8>) {
    println!("cargo:rerun-if-env-changed={var}");
    let Some(model) = std::env::var_os(var) else {
        fail(&format!(
            "feature `{feature}` needs ${var}: the GGUF file to build in (`{recipe}` sets it)"
        ));
    };
    let model = PathBuf::from(model);
    println!("cargo:rerun-if-changed={}", model.display());
    let bytes = std::fs::read(&model)
        .unwrap_or_else(|e| fail(&format!("reading {}: {e}", model.display())));
    (model, bytes)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes)
        .unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())));
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
