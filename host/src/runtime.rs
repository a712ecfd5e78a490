//! One engine, the guest compiled once (through the cache), pre-instantiated once, and
//! long-lived instances that serve many calls.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_llm_kernel::Model;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::{Store, Trap};

use crate::bindings::exports::edge::llm::inference as api;
use crate::bindings::{LlmInference, LlmInferencePre};
use crate::cache::CacheStatus;
use crate::call::{CallState, NnFailure};
use crate::sandbox::{self, link_error, HostState, Sandbox};
use crate::{HostError, RuntimeOptions};

/// The compiled guest plus everything instances share: engine, linker, preloaded models.
pub struct Runtime {
    sandbox: Sandbox,
    pre: LlmInferencePre<HostState>,
}

impl Runtime {
    /// Creates the engine, loads the component (compiling it only on a cache miss) and links it.
    pub fn new(options: RuntimeOptions) -> Result<Self, HostError> {
        let sandbox = Sandbox::new(options)?;
        let mut linker = Linker::<HostState>::new(&sandbox.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_error)?;
        sandbox::add_nn_to_linker(&mut linker)?;
        let pre = linker
            .instantiate_pre(&sandbox.component)
            .map_err(link_error)?;
        let pre = LlmInferencePre::new(pre).map_err(link_error)?;
        Ok(Self { sandbox, pre })
    }

    /// What the component cache did when this runtime was created.
    pub fn cache_status(&self) -> &CacheStatus {
        &self.sandbox.cache_status
    }

    /// Time spent creating the engine and loading or compiling the component.
    pub fn load_time(&self) -> Duration {
        self.sandbox.load_time
    }

    /// The options this runtime was built with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.sandbox.options
    }

    /// Memory-maps a GGUF file once and registers it for `wasi:nn` `load-by-name` under each of
    /// `names`; every instance and execution context shares the mapping.
    pub fn preload(&mut self, path: &Path, names: &[String]) -> Result<Arc<Model>, HostError> {
        tracing::debug!(model = %path.display(), ?names, "preloading for the native backend");
        self.sandbox.preload(path, names)
    }

    /// Loads a GGUF file as [`Runtime::preload`] does, without a runtime (`cache_dir`: the
    /// repacked-model cache, as in [`RuntimeOptions`]): a host can load the model while
    /// [`Runtime::new`] loads the component, which shares nothing with it, then register it
    /// with [`Runtime::register`].
    pub fn load_model(path: &Path, cache_dir: Option<&Path>) -> Result<Arc<Model>, HostError> {
        sandbox::load_native_model(path, cache_dir)
    }

    /// Registers a model loaded by [`Runtime::load_model`] for `wasi:nn` `load-by-name` under
    /// each of `names`.
    pub fn register(&mut self, model: Arc<Model>, names: &[String]) {
        tracing::debug!(?names, "registered for the native backend");
        self.sandbox.register(model, names);
    }

    /// A fresh instance with its own store, WASI context and limits.
    pub fn instantiate(&self) -> Result<Instance, HostError> {
        let mut store = self.sandbox.store(self.sandbox.host_state()?);
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

    /// This instance's call state: [`CallState::cancel`] from another thread stops the running
    /// call (the native compute at its next layer, the guest at its next epoch tick); it fails
    /// with [`HostError::Cancelled`].
    pub fn call_state(&self) -> Arc<CallState> {
        self.store.data().call().clone()
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
        let call = self.store.data().call().clone();
        sandbox::begin_call(&mut self.store, self.timeout);
        let guest = self.bindings.edge_llm_inference();
        let result = f(&mut self.store, guest);
        sandbox::end_call(&self.store);
        let native_failure = call.take_failure();
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => match (e, native_failure) {
                (_, Some(NnFailure::Deadline)) => Err(HostError::Deadline(started.elapsed())),
                (_, Some(NnFailure::Cancelled)) => Err(HostError::Cancelled),
                (_, Some(NnFailure::KvMemory(e))) => Err(HostError::KvMemory(e)),
                (api::Error::BackendError(m), Some(NnFailure::Backend(detail))) => Err(
                    HostError::Inference(api::Error::BackendError(format!("{m} ({detail})"))),
                ),
                (e, _) => Err(e.into()),
            },
            Err(trap) => {
                if trap.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    if call.is_cancelled() {
                        self.poisoned = Some("interrupted when its call was cancelled".into());
                        return Err(HostError::Cancelled);
                    }
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

    /// Computes the chat template's preamble into the model's session cache (the WIT
    /// `warm-up`): the next chat runs only its own messages.
    pub fn warm_up(&mut self, model: &ModelHandle) -> Result<(), HostError> {
        self.call(|s, g| g.model().call_warm_up(s, model.0))
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
