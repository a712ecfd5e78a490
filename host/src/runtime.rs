//! One engine, the guest compiled once (through the cache), pre-instantiated once, and
//! long-lived instances that serve many calls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_llm_kernel::{Model, ModelBytes};
use wasmtime::component::{Linker, ResourceAny, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_nn::wit::WasiNnView;
use wasmtime_wasi_nn::{Backend, Registry};

use crate::bindings::exports::edge::llm::inference as api;
use crate::bindings::{LlmInference, LlmInferencePre};
use crate::cache::{self, CacheStatus};
use crate::nn::{self, GgmlBackend, Preloaded};
use crate::HostError;

/// Where the guest sees the model directory.
pub const GUEST_MODEL_DIR: &str = "/models";

/// How often the epoch advances; deadlines are rounded up to this.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// "No deadline" in epoch ticks (wasmtime adds it to the current epoch, so not `u64::MAX`).
const NO_DEADLINE: u64 = 1 << 62;

/// How to build a [`Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// The guest component (`edge_llm_guest.wasm`).
    pub component: PathBuf,
    /// Where precompiled components are cached; `None` compiles in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// A directory preopened read-only for the guest at [`GUEST_MODEL_DIR`].
    pub model_dir: Option<PathBuf>,
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
}

impl RuntimeOptions {
    /// Defaults: the cache in the platform cache dir, all cores, native backend on, 2 GiB memory.
    pub fn new(component: impl Into<PathBuf>) -> Self {
        Self {
            component: component.into(),
            cache_dir: Some(cache::default_dir()),
            model_dir: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            native: true,
            memory_limit: 2 << 30,
            pooling: None,
        }
    }
}

/// The compiled guest plus everything instances share: engine, linker, preloaded models.
pub struct Runtime {
    engine: Engine,
    pre: LlmInferencePre<HostState>,
    options: RuntimeOptions,
    preloaded: Preloaded,
    cache_status: CacheStatus,
    load_time: Duration,
    ticker: Arc<AtomicBool>,
}

impl Runtime {
    /// Creates the engine, loads the component (compiling it only on a cache miss) and links it.
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
        let wasm = std::fs::read(&options.component).map_err(|e| {
            HostError::Component(format!(
                "{}: {e} (build it with `just build`)",
                options.component.display()
            ))
        })?;
        let (component, cache_status) = cache::load(&engine, &wasm, options.cache_dir.as_deref())?;
        let mut linker = Linker::<HostState>::new(&engine);
        let link = |e: wasmtime::Error| HostError::Component(format!("link: {e:#}"));
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
        wasmtime_wasi_nn::wit::add_to_linker(&mut linker, |s: &mut HostState| {
            WasiNnView::new(&mut s.table, &mut s.nn)
        })
        .map_err(link)?;
        let pre = linker.instantiate_pre(&component).map_err(link)?;
        let pre = LlmInferencePre::new(pre).map_err(link)?;
        let ticker = Arc::new(AtomicBool::new(true));
        spawn_epoch_ticker(engine.clone(), ticker.clone());
        Ok(Self {
            engine,
            pre,
            options,
            preloaded: Preloaded::default(),
            cache_status,
            load_time: started.elapsed(),
            ticker,
        })
    }

    /// What the component cache did when this runtime was created.
    pub fn cache_status(&self) -> &CacheStatus {
        &self.cache_status
    }

    /// Time spent creating the engine and loading or compiling the component.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The options this runtime was built with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// Memory-maps a GGUF file once and registers it for `wasi:nn` `load-by-name` under each of
    /// `names`; every instance and execution context shares the mapping.
    pub fn preload(&mut self, path: &Path, names: &[String]) -> Result<Arc<Model>, HostError> {
        let file = std::fs::File::open(path).map_err(|e| HostError::io(path, e))?;
        // SAFETY: the mapping is read-only and the model files are ours (fetched and verified
        // into the model directory); like every mmap user we rely on nobody truncating the
        // file while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| HostError::io(path, e))?;
        let bytes: ModelBytes = Arc::new(map);
        let model = Arc::new(
            Model::load(bytes)
                .map_err(|e| HostError::ModelLoad(format!("{}: {e}", path.display())))?,
        );
        let graph = GgmlBackend::new(self.options.threads).graph(model.clone());
        for name in names {
            self.preloaded.insert(name.clone(), graph.clone());
        }
        Ok(model)
    }

    /// A fresh instance with its own store, WASI context and limits.
    pub fn instantiate(&self) -> Result<Instance, HostError> {
        let mut wasi = WasiCtxBuilder::new();
        if let Some(dir) = &self.options.model_dir {
            wasi.preopened_dir(dir, GUEST_MODEL_DIR, FsPerms::ReadOnly)
                .map_err(|e| HostError::Component(format!("preopen {}: {e:#}", dir.display())))?;
        }
        let backends: Vec<Backend> = if self.options.native {
            vec![GgmlBackend::new(self.options.threads).into()]
        } else {
            Vec::new()
        };
        let registry = if self.options.native {
            Registry::from(self.preloaded.clone())
        } else {
            Registry::from(Preloaded::default())
        };
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            nn: wasmtime_wasi_nn::wit::WasiNnCtx::new(backends, registry),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.options.memory_limit)
                .instances(4)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(NO_DEADLINE);
        store.epoch_deadline_trap();
        let started = Instant::now();
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| HostError::Component(format!("instantiate: {e:#}")))?;
        Ok(Instance {
            store,
            bindings,
            timeout: None,
            poisoned: None,
            instantiate_time: started.elapsed(),
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

fn spawn_epoch_ticker(engine: Engine, running: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while running.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        }
    });
}

/// A store's state: WASI, wasi-nn and the memory limits.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    nn: wasmtime_wasi_nn::wit::WasiNnCtx,
    limits: StoreLimits,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A model opened inside an [`Instance`].
#[derive(Debug)]
pub struct ModelHandle(ResourceAny);

/// A generation in progress inside an [`Instance`]; drop it with [`Instance::drop_stream`].
#[derive(Debug)]
pub struct StreamHandle(ResourceAny);

/// A live instance of the guest: one store, reused for many calls.
pub struct Instance {
    store: Store<HostState>,
    bindings: LlmInference,
    timeout: Option<Duration>,
    poisoned: Option<String>,
    instantiate_time: Duration,
}

impl Instance {
    /// How long instantiation took.
    pub fn instantiate_time(&self) -> Duration {
        self.instantiate_time
    }

    /// Bounds every following call: past it the guest is interrupted (epochs) and the native
    /// backend stops between layers; the call fails with [`HostError::Deadline`].
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<HostState>, &api::Guest) -> wasmtime::Result<Result<R, api::Error>>,
    ) -> Result<R, HostError> {
        if let Some(trap) = &self.poisoned {
            return Err(HostError::Trap(format!(
                "instance unusable after an earlier trap: {trap}"
            )));
        }
        let started = Instant::now();
        let deadline = self.timeout.map(|t| started + t);
        match self.timeout {
            Some(t) => {
                let ticks = t.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) + 1;
                self.store.set_epoch_deadline(
                    u64::try_from(ticks).unwrap_or(NO_DEADLINE).min(NO_DEADLINE),
                );
            }
            None => self.store.set_epoch_deadline(NO_DEADLINE),
        }
        let guest = self.bindings.edge_llm_inference();
        nn::take_last_error();
        let result = nn::with_deadline(deadline, || f(&mut self.store, guest));
        let native_error = nn::take_last_error();
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => match (e, native_error) {
                (_, Some(detail)) if detail == nn::DEADLINE_MESSAGE => {
                    Err(HostError::Deadline(started.elapsed()))
                }
                (api::Error::BackendError(m), Some(detail)) => Err(HostError::Inference(
                    api::Error::BackendError(format!("{m} ({detail})")),
                )),
                (e, _) => Err(e.into()),
            },
            Err(trap) => {
                if trap.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    self.poisoned = Some("interrupted at its deadline".into());
                    return Err(HostError::Deadline(started.elapsed()));
                }
                let message = format!("{trap:#}");
                self.poisoned = Some(message.clone());
                Err(HostError::Trap(message))
            }
        }
    }

    /// Opens a model by name or by its path as the guest sees it (under [`GUEST_MODEL_DIR`]).
    pub fn open(
        &mut self,
        name_or_path: &str,
        options: &api::OpenOptions,
    ) -> Result<ModelHandle, HostError> {
        self.call(|s, g| g.model().call_open(s, name_or_path, *options))
            .map(ModelHandle)
    }

    /// The model's description.
    pub fn info(&mut self, model: &ModelHandle) -> Result<api::ModelInfo, HostError> {
        self.call(|s, g| g.model().call_info(s, model.0).map(Ok))
    }

    /// Token ids of `text`.
    pub fn tokenize(
        &mut self,
        model: &ModelHandle,
        text: &str,
        parse_control: bool,
    ) -> Result<Vec<u32>, HostError> {
        self.call(|s, g| g.model().call_tokenize(s, model.0, text, parse_control))
    }

    /// Text of token ids.
    pub fn detokenize(&mut self, model: &ModelHandle, tokens: &[u32]) -> Result<String, HostError> {
        self.call(|s, g| g.model().call_detokenize(s, model.0, tokens))
    }

    /// The chat template applied to `messages`.
    pub fn apply_chat_template(
        &mut self,
        model: &ModelHandle,
        messages: &[api::Message],
    ) -> Result<String, HostError> {
        self.call(|s, g| g.model().call_apply_chat_template(s, model.0, messages))
    }

    /// Completes a raw prompt in one call.
    pub fn complete(
        &mut self,
        model: &ModelHandle,
        prompt: &str,
        params: &api::Params,
    ) -> Result<api::Completion, HostError> {
        self.call(|s, g| g.model().call_complete(s, model.0, prompt, params))
    }

    /// Answers a chat in one call.
    pub fn chat(
        &mut self,
        model: &ModelHandle,
        messages: &[api::Message],
        params: &api::Params,
    ) -> Result<api::Completion, HostError> {
        self.call(|s, g| g.model().call_chat(s, model.0, messages, params))
    }

    /// Starts a streamed completion of a raw prompt.
    pub fn stream_complete(
        &mut self,
        model: &ModelHandle,
        prompt: &str,
        params: &api::Params,
    ) -> Result<StreamHandle, HostError> {
        self.call(|s, g| g.model().call_stream_complete(s, model.0, prompt, params))
            .map(StreamHandle)
    }

    /// Starts a streamed chat answer.
    pub fn stream_chat(
        &mut self,
        model: &ModelHandle,
        messages: &[api::Message],
        params: &api::Params,
    ) -> Result<StreamHandle, HostError> {
        self.call(|s, g| g.model().call_stream_chat(s, model.0, messages, params))
            .map(StreamHandle)
    }

    /// The next chunk of a stream, `None` at its end.
    pub fn next_chunk(&mut self, stream: &StreamHandle) -> Result<Option<api::Chunk>, HostError> {
        self.call(|s, g| g.generation().call_next(s, stream.0))
    }

    /// A finished stream's summary.
    pub fn finish(&mut self, stream: &StreamHandle) -> Result<Option<api::Completion>, HostError> {
        self.call(|s, g| g.generation().call_finish(s, stream.0).map(Ok))
    }

    /// Drops a stream (cancelling it if it is still running).
    pub fn drop_stream(&mut self, stream: StreamHandle) -> Result<(), HostError> {
        self.call(|s, _| stream.0.resource_drop(s).map(Ok))
    }

    /// Drops a model.
    pub fn drop_model(&mut self, model: ModelHandle) -> Result<(), HostError> {
        self.call(|s, _| model.0.resource_drop(s).map(Ok))
    }
}
