//! What every store shares, whichever world the component implements: one engine, the
//! component compiled once (through the cache), the models preloaded for `wasi:nn`, and each
//! store's call state, WASI, `wasi:nn` and limits. A host that serves another world (the
//! `edge-llm` CLI's `wasi:http` server) keeps a [`HostState`] inside its own store data
//! ([`HostData`]) and links its own interfaces beside these.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_llm_kernel::simd::{repacking_pays, Isa};
use edge_llm_kernel::{Model, ModelBytes, ModelError};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_nn::wit::WasiNnView;
use wasmtime_wasi_nn::{Backend, Registry};

use crate::batch::Batcher;
use crate::cache::{self, CacheStatus};
use crate::call::{CallState, Epochs};
use crate::kv_budget::KvBudget;
use crate::nn::{GgmlBackend, Preloaded};
use crate::packed;
use crate::HostError;

/// Where the guest sees the model directory.
pub const GUEST_MODEL_DIR: &str = "/models";

/// How often the epoch advances; deadlines are rounded up to this.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// "No deadline" in epoch ticks (wasmtime adds it to the current epoch, so not `u64::MAX`).
pub(crate) const NO_DEADLINE: u64 = 1 << 62;

/// The epoch deadline, in ticks from now, for a call bounded by `timeout`.
fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) + 1;
    u64::try_from(ticks).unwrap_or(NO_DEADLINE).min(NO_DEADLINE)
}

/// Starts a call into `store`'s guest bounded by `timeout`, and cancellable through the store's
/// [`CallState`]: both stop the native backend at its next layer and the guest at its next
/// epoch check (each tick, see [`Sandbox::store`]).
pub fn begin_call<T: HostData>(store: &mut Store<T>, timeout: Option<Duration>) {
    store.data().host().call.begin(timeout.map(deadline_ticks));
    store.set_epoch_deadline(1);
}

/// Ends the call [`begin_call`] started: until the next one, the KV caches of the store's
/// native contexts may be reclaimed for other stores' calls ([`crate::kv_budget`]).
pub fn end_call<T: HostData>(store: &Store<T>) {
    store.data().host().call.end();
}

/// How to build a [`Runtime`](crate::Runtime) or a [`Sandbox`].
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// The component: the guest (`edge_llm_guest.wasm`) for a `Runtime`, a composed
    /// `wasi:http` component (`edge-llm-http.wasm`) for the CLI's server.
    pub component: PathBuf,
    /// Where precompiled components and repacked models are cached; `None` compiles and
    /// repacks in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// A directory preopened read-only for the guest at [`GUEST_MODEL_DIR`].
    pub model_dir: Option<PathBuf>,
    /// Environment variables the guest sees (nothing of the host's is inherited).
    pub guest_env: Vec<(String, String)>,
    /// Threads of the native backend.
    pub threads: usize,
    /// Offer the native `wasi:nn` backend (graph encoding `ggml`) to the guest.
    pub native: bool,
    /// Upper bound on each instance's linear memory, in bytes.
    pub memory_limit: usize,
    /// Pre-allocate slots for this many concurrent instances (wasmtime's pooling allocator,
    /// with copy-on-write memory images), for hosts that create many short-lived instances.
    /// `None` allocates on demand.
    pub pooling: Option<u32>,
    /// Bound on the KV cache memory of all native sessions together, in bytes; `None`:
    /// unbounded ([`crate::kv_budget`]).
    pub kv_memory: Option<usize>,
}

impl RuntimeOptions {
    /// Defaults: the cache in the platform cache dir, all cores, native backend on, 2 GiB memory.
    pub fn new(component: impl Into<PathBuf>) -> Self {
        Self {
            component: component.into(),
            cache_dir: Some(cache::default_dir()),
            model_dir: None,
            guest_env: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            native: true,
            memory_limit: 2 << 30,
            pooling: None,
            kv_memory: None,
        }
    }
}

/// Loads a GGUF file for the native backend. Where the kernel reads repacked matrices faster
/// ([`repacking_pays`]: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q4_K, Q5_K, Q6_K rows
/// eight at a time on AVX2) the repacked copy is mapped from the cache in `cache_dir`, or made and cached ([`packed::load`]);
/// elsewhere the file itself is memory-mapped.
pub fn load_native_model(path: &Path, cache_dir: Option<&Path>) -> Result<Arc<Model>, HostError> {
    let loaded = if repacking_pays(Isa::best()) {
        packed::load(path, cache_dir)?
    } else {
        let bytes: ModelBytes = Arc::new(crate::models::map_model_file(path)?);
        Model::load(bytes)
    };
    Ok(Arc::new(loaded.map_err(|e| {
        let message = format!("{}: {e}", path.display());
        match e {
            // What the guest's own kernel answers for it: the WIT's `model-not-supported`.
            ModelError::UnsupportedArch(_) => HostError::Inference(
                crate::bindings::exports::edge::llm::inference::Error::ModelNotSupported(message),
            ),
            _ => HostError::ModelLoad(message),
        }
    })?))
}

/// The engine, the compiled component and the preloaded models: what every store of one
/// component shares.
pub struct Sandbox {
    /// The engine (one configuration for sync and async embedding).
    pub engine: Engine,
    /// The compiled component.
    pub component: Component,
    /// What the sandbox was built with.
    pub options: RuntimeOptions,
    /// What the component cache did.
    pub cache_status: CacheStatus,
    /// Time spent creating the engine and loading or compiling the component.
    pub load_time: Duration,
    /// Models for `wasi:nn` `load-by-name`, by name.
    /// Per name, the model's batcher (one per model, shared by every store).
    preloaded: HashMap<String, Arc<Batcher>>,
    kv_budget: Arc<KvBudget>,
    epochs: Arc<Epochs>,
    ticker: Arc<AtomicBool>,
}

impl Sandbox {
    /// Creates the engine (one configuration for sync and async embedding) and loads the
    /// component, compiling it only on a cache miss.
    pub fn new(options: RuntimeOptions) -> Result<Self, HostError> {
        let started = Instant::now();
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .cranelift_opt_level(OptLevel::Speed)
            .wasm_simd(true)
            .wasm_relaxed_simd(true)
            // The guest's only relaxed op is `i16x8.relaxed_dot_i8x16_i7x16_s` on 4-bit
            // operands, where every lowering agrees; forcing the portable lowering costs the
            // in-guest kernel half its prefill speed.
            .relaxed_simd_deterministic(false)
            .epoch_interruption(true)
            .memory_init_cow(true);
        if let Some(instances) = options.pooling {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(8))
                .total_memories(instances.saturating_mul(4))
                .max_memories_per_component(4)
                .max_memory_size(options.memory_limit);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| HostError::Component(format!("{e:#}")))?;
        let wasm = cache::map_file(&options.component).map_err(|e| {
            HostError::Component(format!(
                "{}: {e} (build it with `just build`)",
                options.component.display()
            ))
        })?;
        let (component, cache_status) = cache::load(
            &engine,
            &options.component,
            &wasm,
            options.cache_dir.as_deref(),
        )?;
        let kv_budget = Arc::new(KvBudget::new(options.kv_memory.unwrap_or(usize::MAX)));
        let ticker = Arc::new(AtomicBool::new(true));
        let epochs = Arc::new(Epochs::default());
        spawn_epoch_ticker(engine.clone(), epochs.clone(), ticker.clone());
        Ok(Self {
            engine,
            component,
            options,
            cache_status,
            load_time: started.elapsed(),
            preloaded: HashMap::new(),
            kv_budget,
            epochs,
            ticker,
        })
    }

    /// The KV cache memory budget of the native sessions.
    pub fn kv_budget(&self) -> &Arc<KvBudget> {
        &self.kv_budget
    }

    /// Bounds the KV cache memory of the native sessions of stores made from now on at
    /// `bytes` (`None`: unbounded); call it before making any.
    pub fn set_kv_memory(&mut self, bytes: Option<usize>) {
        self.options.kv_memory = bytes;
        self.kv_budget = Arc::new(KvBudget::new(bytes.unwrap_or(usize::MAX)));
    }

    /// Loads a GGUF file once ([`load_native_model`]) and registers it for `wasi:nn`
    /// `load-by-name` under each of `names`; every store and execution context shares it.
    pub fn preload(&mut self, path: &Path, names: &[String]) -> Result<Arc<Model>, HostError> {
        let model = load_native_model(path, self.options.cache_dir.as_deref())?;
        self.register(model.clone(), names);
        Ok(model)
    }

    /// Registers a loaded model for `wasi:nn` `load-by-name` under each of `names`.
    pub fn register(&mut self, model: Arc<Model>, names: &[String]) {
        let batcher = Arc::new(Batcher::new(model));
        for name in names {
            self.preloaded.insert(name.clone(), batcher.clone());
        }
    }

    /// A fresh store's state: WASI with only the model directory (read-only) and the
    /// configured environment, the native backend when enabled (bound to the store's call
    /// state), the memory limit.
    pub fn host_state(&self) -> Result<HostState, HostError> {
        let options = &self.options;
        let mut wasi = WasiCtxBuilder::new();
        if let Some(dir) = &options.model_dir {
            wasi.preopened_dir(dir, GUEST_MODEL_DIR, FsPerms::ReadOnly)
                .map_err(|e| HostError::Component(format!("preopen {}: {e:#}", dir.display())))?;
        }
        wasi.envs(&options.guest_env);
        let call = Arc::new(CallState::new(self.epochs.clone()));
        let (backends, registry): (Vec<Backend>, Preloaded) = if options.native {
            let backend = GgmlBackend::new(options.threads, call.clone(), self.kv_budget.clone());
            let registry = backend.registry(&self.preloaded);
            (vec![backend.into()], registry)
        } else {
            (Vec::new(), Preloaded::default())
        };
        Ok(HostState {
            call,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            nn: wasmtime_wasi_nn::wit::WasiNnCtx::new(backends, Registry::from(registry)),
            limits: StoreLimitsBuilder::new()
                .memory_size(options.memory_limit)
                .instances(8)
                .build(),
        })
    }

    /// A store of `data` (which holds a [`Sandbox::host_state`]) with its memory limits and no
    /// deadline yet.
    pub fn store<T: HostData>(&self, data: T) -> Store<T> {
        let mut store = Store::new(&self.engine, data);
        store.limiter(|s| &mut s.host_mut().limits);
        store.set_epoch_deadline(NO_DEADLINE);
        store.epoch_deadline_callback(|ctx| go_on(ctx.data(), UpdateDeadline::Continue(1)));
        store
    }

    /// A store like [`Sandbox::store`] for calls made with wasmtime's `*_async` methods: the
    /// guest also yields to the executor every epoch tick, so that a long computation in it
    /// never holds an executor thread for more than a tick (the tasks that notice a client
    /// hanging up, say, run meanwhile).
    pub fn async_store<T: HostData>(&self, data: T) -> Store<T> {
        let mut store = self.store(data);
        store.epoch_deadline_callback(|ctx| go_on(ctx.data(), UpdateDeadline::Yield(1)));
        store
    }
}

/// Each epoch tick the guest asks its call state whether to go on (`then`): past the call's
/// deadline or once it is cancelled, it is interrupted (`Trap::Interrupt`).
fn go_on<T: HostData>(data: &T, then: UpdateDeadline) -> wasmtime::Result<UpdateDeadline> {
    match data.host().call.stop_reason() {
        Some(_) => Err(Trap::Interrupt.into()),
        None => Ok(then),
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`], and the host's count of it right after.
fn spawn_epoch_ticker(engine: Engine, epochs: Arc<Epochs>, running: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while running.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
            epochs.tick();
        }
    });
}

/// A linking failure.
pub fn link_error(e: wasmtime::Error) -> HostError {
    HostError::Component(format!("link: {e:#}"))
}

/// Adds `wasi:nn` (its host functions are synchronous in sync and async stores alike).
pub fn add_nn_to_linker<T: HostData>(linker: &mut Linker<T>) -> Result<(), HostError> {
    wasmtime_wasi_nn::wit::add_to_linker(linker, |s: &mut T| s.host_mut().nn_view())
        .map_err(link_error)
}

/// A store's state: its call state, WASI, wasi-nn and the memory limits.
pub struct HostState {
    call: Arc<CallState>,
    wasi: WasiCtx,
    table: ResourceTable,
    nn: wasmtime_wasi_nn::wit::WasiNnCtx,
    limits: StoreLimits,
}

impl HostState {
    /// The state of the call this store runs: its deadline, cancellation, and the native
    /// backend's failure.
    pub fn call(&self) -> &Arc<CallState> {
        &self.call
    }

    /// The store's resource table (a host that links more interfaces shares it).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn nn_view(&mut self) -> WasiNnView<'_> {
        WasiNnView::new(&mut self.table, &mut self.nn)
    }
}

/// Store data that holds a [`HostState`]: the state itself, or a host's own data around it.
pub trait HostData: Send + 'static {
    /// The host state.
    fn host(&self) -> &HostState;
    /// The host state, mutably.
    fn host_mut(&mut self) -> &mut HostState;
}

impl HostData for HostState {
    fn host(&self) -> &HostState {
        self
    }

    fn host_mut(&mut self) -> &mut HostState {
        self
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
