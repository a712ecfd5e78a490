//! Helpers shared by the end-to-end tests (`e2e/`, `tests/memory.rs`): where the workspace, the built
//! artifacts, the model and the reference data are, and how to run the `edge-llm` CLI.

pub mod fixtures;
pub mod http;
pub mod load;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Reads a JSON file of llama.cpp's reference outputs (`tests/refs/`).
pub use edge_llm_refs::json as read_ref;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn built(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: run `just build` first ({what})",
        path.display()
    );
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

/// The guest pre-initialized for the default model (`just preinit`), which `edge-llm` runs by
/// default.
pub fn preinit_guest_wasm() -> PathBuf {
    recipe_artifact("target/edge-llm-guest-preinit.wasm", "preinit")
}

/// An artifact a `just` recipe builds (a path under the workspace root).
fn recipe_artifact(rel: &str, recipe: &str) -> PathBuf {
    let path = root().join(rel);
    assert!(
        path.is_file(),
        "{} is missing: run `just {recipe}` first",
        path.display()
    );
    path
}

/// The CLI front composed onto the standalone inference component (`just compose`).
pub fn composed_cli_wasm() -> PathBuf {
    recipe_artifact("target/edge-llm-cli.wasm", "compose")
}

/// The HTTP front composed onto the bundled, pre-initialized component (`just compose-http`).
pub fn http_bundle_wasm() -> PathBuf {
    recipe_artifact("target/edge-llm-http-bundle.wasm", "compose-http")
}

/// The sandbox tests' component that tries an outgoing HTTP request (`just build-test-components`).
pub fn egress_wasm() -> PathBuf {
    recipe_artifact(
        "target/wasm32-wasip2/release/edge_llm_test_egress.wasm",
        "build-test-components",
    )
}

/// The CLI front composed onto the bundled, pre-initialized component (`just bundle`).
pub fn bundled_cli_wasm() -> PathBuf {
    recipe_artifact("target/edge-llm-bundle-cli.wasm", "bundle")
}

/// Runs a command-line tool from `PATH` (installed by `just tools`).
pub fn tool(name: &str, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `{name}` ({e}): run `just tools`"))
}

/// `wasm` compiled by the stock `wasmtime compile`, once per test process, as a deployment
/// would ship it. The stock CLI runs the result with `--allow-precompiled`.
///
/// Loaded from a file, wasmtime maps a component's initial linear memory (for the bundled
/// components, the 100 MB model) straight from that file. Compiled from a `.wasm`, it copies
/// that image into a memfd and seals it, and some kernels now and then refuse the seal with
/// "device or resource busy" (seen in CI: `cannot add seals to the memfd`).
pub fn precompiled(wasm: &std::path::Path) -> PathBuf {
    static DONE: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, cwasm)) = done.iter().find(|(w, _)| w == wasm) {
        return cwasm.clone();
    }
    let stem = wasm.file_stem().expect("a file name").to_string_lossy();
    let cwasm = temp_dir("precompiled").join(format!("{stem}.cwasm"));
    let out = tool(
        "wasmtime",
        &[
            "compile".as_ref(),
            wasm.as_os_str(),
            "-o".as_ref(),
            cwasm.as_os_str(),
        ],
    );
    assert!(
        out.status.success(),
        "wasmtime compile {}: {}",
        wasm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    done.push((wasm.to_path_buf(), cwasm.clone()));
    cwasm
}

/// Runs `wasmtime run [--dir DIR::GUEST]... WASM ARGS` with the stock `wasmtime` CLI, on the
/// component [`precompiled`].
pub fn wasmtime_run(
    wasm: &std::path::Path,
    dirs: &[(&std::path::Path, &str)],
    args: &[&str],
) -> Output {
    wasmtime_run_with(wasm, &[], dirs, args)
}

/// [`wasmtime_run`] with options of `wasmtime run` itself first (e.g. `-W max-memory-size=N`).
pub fn wasmtime_run_with(
    wasm: &std::path::Path,
    options: &[&str],
    dirs: &[(&std::path::Path, &str)],
    args: &[&str],
) -> Output {
    let mut argv: Vec<std::ffi::OsString> = vec!["run".into(), "--allow-precompiled".into()];
    argv.extend(options.iter().map(Into::into));
    for (host, guest) in dirs {
        let mut spec = host.as_os_str().to_os_string();
        spec.push("::");
        spec.push(guest);
        argv.push("--dir".into());
        argv.push(spec);
    }
    argv.push(precompiled(wasm).into());
    argv.extend(args.iter().map(Into::into));
    let argv: Vec<&std::ffi::OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
    tool("wasmtime", &argv)
}

/// The WIT of a component, as `wasm-tools component wit` prints it.
pub fn component_wit(wasm: &std::path::Path) -> String {
    let out = tool(
        "wasm-tools",
        &["component".as_ref(), "wit".as_ref(), wasm.as_os_str()],
    );
    assert!(
        out.status.success(),
        "wasm-tools: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The generated token ids of a `--json` summary.
pub fn json_tokens(json: &serde_json::Value) -> Vec<u64> {
    json["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|v| v.as_u64().expect("id"))
        .collect()
}

/// Checks a free-running greedy continuation against a `greedy.json` item: where it first
/// differs from llama.cpp's, our choice must be a near tie (within 0.25 of the reference's
/// top logit at that step). Returns how many leading tokens agree.
pub fn check_against_reference(item: &serde_json::Value, got: &[u64]) -> usize {
    let want: Vec<u64> = item["generated_ids"]
        .as_array()
        .expect("generated_ids")
        .iter()
        .map(|v| v.as_u64().expect("id"))
        .collect();
    let Some(step) = got.iter().zip(&want).position(|(a, b)| a != b) else {
        return got.len().min(want.len());
    };
    let top = item["top20_per_step"][step]
        .as_array()
        .expect("top-20 of the step");
    let logit_of = |id: u64| {
        top.iter()
            .find(|e| e[0].as_u64() == Some(id))
            .and_then(|e| e[1].as_f64())
    };
    let max = top
        .iter()
        .filter_map(|e| e[1].as_f64())
        .fold(f64::MIN, f64::max);
    let ours = logit_of(got[step]).unwrap_or(f64::MIN);
    assert!(
        max - ours <= 0.25,
        "step {step}: chose {} (reference logit {ours}) but the reference max is {max}",
        got[step]
    );
    step
}

/// The default model, fetched by `just model`.
pub fn default_model() -> PathBuf {
    let path = root()
        .join("models")
        .join(edge_llm_refs::DEFAULT_MODEL_FILE);
    assert!(
        path.is_file(),
        "{} is missing: run `just model`",
        path.display()
    );
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
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let base = root().join("target/test-tmp");
    SWEEP.call_once(|| sweep_finished(&base));
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base.join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// Removes the directories under `base` that test processes which have ended left behind
/// (named `NAME-PID-N` by [`temp_dir`]; each run's caches and compiled components take 1-2
/// GB), so that repeated runs do not fill the disk. A process still running keeps its own.
fn sweep_finished(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_string_lossy()
            .rsplit('-')
            .nth(1)
            .map(str::to_string);
        let ended = pid
            .filter(|p| p.parse::<u32>().is_ok())
            .is_some_and(|p| !std::path::Path::new("/proc").join(p).exists());
        if ended {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The JSON a successful `edge-llm ... --json` printed.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "edge-llm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Options for a runtime on the built guest with `model_dir` preopened and a private cache.
pub fn runtime_options(
    model_dir: &std::path::Path,
    cache: &std::path::Path,
) -> edge_llm_host::RuntimeOptions {
    let mut options = edge_llm_host::RuntimeOptions::new(guest_wasm());
    options.cache_dir = Some(cache.to_path_buf());
    options.model_dir = Some(model_dir.to_path_buf());
    options
}

/// The directory of the default model.
pub fn default_model_dir() -> PathBuf {
    default_model()
        .parent()
        .map_or_else(|| root().join("models"), std::path::Path::to_path_buf)
}

/// A runtime on the built component with the default model preloaded for the native backend,
/// and a private cache directory.
pub fn runtime(native: bool, cache: &std::path::Path) -> edge_llm_host::Runtime {
    let model = default_model();
    let mut options = runtime_options(&default_model_dir(), cache);
    options.native = native;
    let mut runtime = edge_llm_host::Runtime::new(options).expect("runtime");
    if native {
        runtime
            .preload(
                &model,
                &[
                    default_model_guest_path(),
                    "smollm2-135m-instruct".to_string(),
                ],
            )
            .expect("preload");
    }
    runtime
}

/// The default model's path inside the sandbox.
pub fn default_model_guest_path() -> String {
    format!(
        "{}/SmolLM2-135M-Instruct.Q4_1.gguf",
        edge_llm_host::GUEST_MODEL_DIR
    )
}
