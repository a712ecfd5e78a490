//! Turning command-line options into a runtime, an instance and an opened model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use edge_llm_host::{
    api, cache, models, Instance, ModelHandle, Runtime, RuntimeOptions, GUEST_MODEL_DIR,
};
use edge_llm_kernel::{Config, Model};
use serde_json::json;

use super::{BackendChoice, ModelArgs};

/// With `-v` (or `RUST_LOG` set), tracing events go to stderr: edge-llm's own at debug level
/// (status lines, cache, model loading, native-backend calls) and wasmtime's at info;
/// `RUST_LOG` (e.g. `RUST_LOG=wasmtime_cranelift=debug`) replaces that filter. Without either,
/// only the events `quiet` names are shown (`serve`'s access log and warnings), or none.
pub fn init_logging(verbose: bool, quiet: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        _ if verbose => {
            EnvFilter::new("edge_llm=debug,edge_llm_host=debug,wasmtime=info,wasmtime_wasi_nn=off")
        }
        _ => match quiet {
            Some(spec) => EnvFilter::new(spec),
            None => return,
        },
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// A status line (an info event: on stderr with `-v`).
pub fn status(message: impl std::fmt::Display) {
    tracing::info!("{message}");
}

/// Which component a command runs, and where `just build` puts it.
#[derive(Clone, Copy, Debug)]
pub enum ComponentKind {
    /// The inference guest (`$EDGE_LLM_COMPONENT`, `edge_llm_guest.wasm`).
    Guest,
    /// The composed HTTP component (`$EDGE_LLM_HTTP_COMPONENT`, `edge-llm-http.wasm`).
    Http,
}

/// The component: `--component`, its environment variable, or the one the justfile builds
/// in the target directory next to this binary. For the guest that is the pre-initialized one
/// (`just preinit`) while it was built from the plain build's sources (not after a `cargo
/// build` of other sources).
fn component_path(args: &ModelArgs, kind: ComponentKind) -> Result<PathBuf> {
    let (var, preferred, plain, recipe) = match kind {
        ComponentKind::Guest => (
            "EDGE_LLM_COMPONENT",
            Some("edge-llm-guest-preinit.wasm"),
            "wasm32-wasip2/release/edge_llm_guest.wasm",
            "just build",
        ),
        ComponentKind::Http => (
            "EDGE_LLM_HTTP_COMPONENT",
            None,
            "edge-llm-http.wasm",
            "just compose-http",
        ),
    };
    if let Some(p) = args
        .component
        .clone()
        .or_else(|| std::env::var_os(var).map(PathBuf::from))
    {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    // Beside this binary, or in the target directory above it (target/release/edge-llm).
    let find = |rel: &str| {
        let name = Path::new(rel)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        [
            dir.join(name),
            dir.join("..").join(rel),
            dir.join("../..").join(rel),
        ]
        .into_iter()
        .find(|p| p.is_file())
    };
    let plain = find(plain);
    if let Some(pre) = preferred.and_then(find) {
        if plain.as_deref().is_none_or(|p| built_from(&pre, p)) {
            return Ok(pre);
        }
        tracing::debug!(stale = %pre.display(), "built from other sources than the plain guest");
    }
    plain.with_context(|| {
        format!("the component is not built (run `{recipe}`, or pass --component)")
    })
}

/// Whether the pre-initialized guest `pre` was built from the same sources as the plain guest
/// `plain`: `just preinit` records the plain build's sha256 next to it (4 MB to hash, ~3 ms).
fn built_from(pre: &Path, plain: &Path) -> bool {
    let recorded = std::fs::read_to_string(pre.with_extension("wasm.plain-sha256"));
    match (recorded, models::sha256_file(plain)) {
        (Ok(recorded), Ok(current)) => recorded.trim() == current,
        _ => false,
    }
}

/// Runtime options for these arguments, offering the native backend when `native`, with
/// `model_dir` preopened for the guest.
pub fn runtime_options(
    args: &ModelArgs,
    kind: ComponentKind,
    native: bool,
    model_dir: Option<PathBuf>,
) -> Result<RuntimeOptions> {
    let mut options = RuntimeOptions::new(component_path(args, kind)?);
    options.cache_dir = if args.no_cache {
        None
    } else {
        Some(args.cache_dir.clone().unwrap_or_else(cache::default_dir))
    };
    if let Some(t) = args.threads {
        if t == 0 || t > 256 {
            bail!("--threads must be between 1 and 256, got {t}");
        }
        options.threads = t;
    }
    options.native = native;
    options.model_dir = model_dir;
    Ok(options)
}

/// A runtime for these options, offering the native backend when `native`, with `model_dir`
/// preopened for the guest.
pub fn runtime(args: &ModelArgs, native: bool, model_dir: Option<PathBuf>) -> Result<Runtime> {
    start_runtime(runtime_options(
        args,
        ComponentKind::Guest,
        native,
        model_dir,
    )?)
}

/// [`Runtime::new`], with the status line.
fn start_runtime(options: RuntimeOptions) -> Result<Runtime> {
    let component = options.component.clone();
    let runtime = Runtime::new(options)?;
    status(format_args!(
        "component {}: {} in {:.1?}",
        component.display(),
        runtime.cache_status(),
        runtime.load_time()
    ));
    Ok(runtime)
}

/// The model file to serve, verified, and what the guest calls it.
pub struct ModelFile {
    /// The file on the host.
    pub path: PathBuf,
    /// Its directory, preopened for the guest at `/models`.
    pub dir: PathBuf,
    /// Its path inside the sandbox (`/models/<file>`).
    pub guest_path: String,
    /// Every name the native backend registers it under: the guest path and the manifest
    /// name if it is a known model.
    pub names: Vec<String>,
}

impl ModelFile {
    /// Resolves `--model` (or the default) and checks a known model's sha256.
    pub fn resolve(args: &ModelArgs) -> Result<Self> {
        let path = models::resolve(args.model.as_deref())?;
        let file_name = path
            .file_name()
            .and_then(|f| f.to_str())
            .context("model path has no file name")?
            .to_string();
        let stamps =
            (!args.no_cache).then(|| args.cache_dir.clone().unwrap_or_else(cache::default_dir));
        models::verify(&path, stamps.as_deref())?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let guest_path = format!("{GUEST_MODEL_DIR}/{file_name}");
        let mut names = vec![guest_path.clone()];
        names.extend(models::find(&file_name).map(|k| k.name.clone()));
        Ok(Self {
            path,
            dir,
            guest_path,
            names,
        })
    }
}

/// An instance with the requested model open.
pub struct Session {
    /// Kept alive for the instance (engine, epoch ticker, preloaded model).
    pub runtime: Runtime,
    /// The instance.
    pub instance: Instance,
    /// The opened model.
    pub model: ModelHandle,
    /// The model file on the host.
    pub path: PathBuf,
    /// The native backend's copy of the model (absent with `--backend wasm`).
    pub native_model: Option<Arc<Model>>,
    /// Time from the start of setup to the model being open.
    pub load_time: Duration,
}

impl Session {
    /// Resolves and verifies the model, builds the runtime, preloads the model for the native
    /// backend (unless `--backend wasm`), instantiates and opens it.
    pub fn open(args: &ModelArgs) -> Result<Session> {
        let started = Instant::now();
        let file = ModelFile::resolve(args)?;
        let native = args.backend != BackendChoice::Wasm;
        let options = runtime_options(args, ComponentKind::Guest, native, Some(file.dir.clone()))?;
        let cache_dir = options.cache_dir.clone();
        // The component and the model load from different files into nothing shared: on two
        // threads (~20 ms each on a warm start).
        let (runtime, loaded) = std::thread::scope(|s| {
            let loading = native.then(|| {
                s.spawn(|| {
                    let t = Instant::now();
                    (
                        Runtime::load_model(&file.path, cache_dir.as_deref()),
                        t.elapsed(),
                    )
                })
            });
            let runtime = start_runtime(options);
            let loaded = loading.map(|l| l.join());
            (runtime, loaded)
        });
        let mut runtime = runtime?;
        let native_model = match loaded {
            None => None,
            Some(Err(_)) => bail!("loading {} panicked", file.path.display()),
            // A vocabulary-only file has nothing for the native backend: the guest serves it
            // for tokenizing (`edge-llm tokenize`, as llama-tokenize reads such files).
            Some(Ok((Err(_), _)))
                if args.backend == BackendChoice::Auto
                    && models::read_header(&file.path).is_ok_and(|g| g.tensors().is_empty()) =>
            {
                status("native backend: the file holds no weights (vocabulary only)");
                None
            }
            Some(Ok((model, took))) => {
                let model = model?;
                status(format_args!(
                    "native backend: loaded {} in {took:.1?}",
                    file.path.display()
                ));
                runtime.register(model.clone(), &file.names);
                Some(model)
            }
        };
        let mut instance = runtime.instantiate()?;
        status(format_args!(
            "instantiated in {:.1?}",
            instance.instantiate_time()
        ));
        instance.set_timeout(args.timeout_ms.map(Duration::from_millis));
        let backend = match args.backend {
            BackendChoice::Auto => None,
            BackendChoice::Native => Some(api::Backend::WasiNn),
            BackendChoice::Wasm => Some(api::Backend::Kernel),
        };
        let open = api::OpenOptions {
            backend,
            context_length: args.ctx_size,
        };
        let t = Instant::now();
        let model = instance.open(&file.guest_path, &open)?;
        status(format_args!("model open in {:.1?}", t.elapsed()));
        Ok(Session {
            runtime,
            instance,
            model,
            path: file.path,
            native_model,
            load_time: started.elapsed(),
        })
    }
}

/// The backend's name as the CLI spells it.
pub fn backend_name(b: api::Backend) -> &'static str {
    match b {
        api::Backend::WasiNn => "native",
        api::Backend::Kernel => "wasm",
    }
}

/// `info` as JSON.
pub fn info_json(info: &api::ModelInfo, path: &Path) -> Result<serde_json::Value> {
    let header = models::read_header(path)?;
    let config = Config::from_gguf(&header)?;
    let mut hyper = serde_json::Map::new();
    for (k, v) in [
        ("n_layer", config.n_layer),
        ("n_embd", config.n_embd),
        ("n_ff", config.n_ff),
        ("n_head", config.n_head),
        ("n_head_kv", config.n_head_kv),
        ("head_dim", config.head_dim),
    ] {
        hyper.insert(k.into(), v.into());
    }
    for (k, v) in config.family_params() {
        hyper.insert(k.into(), v.into());
    }
    Ok(json!({
        "name": info.name,
        "path": path.display().to_string(),
        "architecture": info.architecture,
        "family": format!("{:?}", config.family),
        "hyper_parameters": hyper,
        "parameters": info.parameters,
        "context_length": info.context_length,
        "trained_context_length": info.trained_context_length,
        "vocab_size": info.vocab_size,
        "quantization": info.quantization,
        "tensor_types": models::tensor_types(&header),
        "backend": backend_name(info.backend),
    }))
}
