//! A third host: the CLI front composed onto the wasi:nn inference component, transpiled by jco
//! and run by Node.js with wasi:nn unimplemented (`just jco`). The guest falls back to its own
//! kernel and must produce the tokens `edge-llm run --backend wasm` produces.

use std::process::Command;

use edge_llm_tests::{edge_llm, json_tokens, root, stdout_json, temp_dir};

#[test]
fn node_runs_the_component_and_matches_the_guest_kernel() {
    let prompt = "What is the capital of France?";
    let args = [
        "--chat",
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--json",
        prompt,
    ];
    let cache = temp_dir("jco");
    let mut cli_args = vec!["run", "--backend", "wasm"];
    cli_args.extend_from_slice(&args);
    let expected = stdout_json(&edge_llm(&cli_args, &cache));

    let jco = root().join("tests/jco");
    let transpiled = jco.join("out/cli-nn/edge-llm.js");
    assert!(
        transpiled.is_file(),
        "{} is missing: run `just jco`",
        transpiled.display()
    );
    let out = Command::new("node")
        .arg("--experimental-wasm-relaxed-simd")
        .arg(jco.join("run.mjs"))
        .arg(&transpiled)
        .arg(root().join("models"))
        .arg("--")
        .args(args)
        .output()
        .expect("running node (Node.js 20 or later)");
    let got = stdout_json(&out);
    assert_eq!(
        got["backend"], "wasm",
        "wasi:nn is unavailable: the kernel serves"
    );
    assert_eq!(json_tokens(&got), json_tokens(&expected));
    assert_eq!(got["text"], expected["text"]);
}
