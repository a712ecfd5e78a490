//! Helpers shared by the end-to-end tests in `tests/tests/`: where the workspace, the built
//! artifacts, the model and the reference data are, and how to run the `edge-llm` CLI.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `../shared/refs`: llama.cpp's reference outputs.
pub fn refs() -> PathBuf {
    root().join("../shared/refs")
}

/// Reads a JSON file from the reference data.
pub fn read_ref(name: &str) -> serde_json::Value {
    let path = refs().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn built(path: PathBuf, what: &str) -> PathBuf {
    assert!(path.is_file(), "{} is missing: run `just build` first ({what})", path.display());
    path
}

/// The release `edge-llm` binary (`$EDGE_LLM_BIN` overrides).
pub fn edge_llm_bin() -> PathBuf {
    let path = std::env::var_os("EDGE_LLM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/edge-llm"));
    built(path, "the host CLI")
}

/// The guest component.
pub fn guest_wasm() -> PathBuf {
    built(
        root().join("target/wasm32-wasip2/release/edge_llm_guest.wasm"),
        "the guest component",
    )
}

/// The default model, fetched by `just model`.
pub fn default_model() -> PathBuf {
    let path = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run `just model`", path.display());
    path
}

/// Runs `edge-llm ARGS` with a private component cache directory.
pub fn edge_llm(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(edge_llm_bin())
        .args(args)
        .env("EDGE_LLM_CACHE_DIR", cache)
        .env_remove("EDGE_LLM_MODEL")
        .output()
        .expect("running edge-llm")
}

/// A fresh temporary directory under the target dir, named for the test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = root().join("target/test-tmp").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// The JSON a successful `edge-llm ... --json` printed.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "edge-llm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    })
}
