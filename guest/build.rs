//! With feature `preinit`: writes the header of the GGUF file `$EDGE_LLM_PREINIT_MODEL` names
//! (its bytes before the tensor data, then its length) to `$OUT_DIR/preinit-header.bin`, which
//! `src/preinit.rs` builds into the component.

use std::path::PathBuf;

use edge_llm_kernel::gguf::Gguf;

fn main() {
    if std::env::var_os("CARGO_FEATURE_PREINIT").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=EDGE_LLM_PREINIT_MODEL");
    let Some(model) = std::env::var_os("EDGE_LLM_PREINIT_MODEL") else {
        fail("feature `preinit` needs $EDGE_LLM_PREINIT_MODEL: the GGUF file whose metadata to build in (`just preinit` sets it)");
    };
    let model = PathBuf::from(model);
    println!("cargo:rerun-if-changed={}", model.display());
    let bytes = std::fs::read(&model)
        .unwrap_or_else(|e| fail(&format!("reading {}: {e}", model.display())));
    let gguf = Gguf::parse(&bytes).unwrap_or_else(|e| fail(&format!("{}: {e}", model.display())));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let header = out.join("preinit-header.bin");
    std::fs::write(&header, gguf.header_with_len(&bytes))
        .unwrap_or_else(|e| fail(&format!("writing {}: {e}", header.display())));
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
