//! An HTTP server for `wasi:http` components: the composed `edge-llm-http.wasm` (the HTTP front
//! plugged onto the inference component) served by hyper, with the native `wasi:nn` backend,
//! the precompiled-component cache and warm instances.
//!
//! - **Instances**: at most `concurrency` requests run inside the component at once, each in
//!   its own instance. An instance that finished a request cleanly goes back to an idle pool
//!   and serves the next one warm (the front keeps its model open); one that trapped or ran
//!   past its deadline is dropped and replaced by a fresh one.
//! - **Queueing**: up to `queue` more requests wait for an instance; beyond that a request gets
//!   503 at once, so memory stays bounded under any load.
//! - **Shutdown**: [`Server::serve`] stops accepting when its shutdown future resolves and
//!   waits for the requests in flight.
//! - **Access log**: one line per request (a tracing event, target `edge_llm::access`).
//! - **Metrics**: `GET /metrics` is answered here, not by the component (Prometheus text,
//!   [`crate::metrics`]; it needs the API key when keys are set); every request is counted,
//!   and the front's usage trailers add its tokens.
//! - **No network**: the store's `wasi:http` hooks refuse every outgoing request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_llm_host::cache::CacheStatus;
use edge_llm_host::sandbox::{self, link_error, HostData, HostState, Sandbox};
use edge_llm_host::{CallState, KvMemoryError, NnFailure};
use edge_llm_host::{HostError, RuntimeOptions};
use edge_llm_kernel::Model;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use wasmtime::component::Linker;
use wasmtime::Store;
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::metrics::{self, Metrics};

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How to build a [`Server`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The composed `wasi:http` component and the sandbox around it.
    pub runtime: RuntimeOptions,
    /// Requests inside the component at once (one instance each).
    pub concurrency: usize,
    /// Requests that may wait for an instance; more get 503.
    pub queue: usize,
    /// Bound on each request's time inside the component; past it the instance is
    /// interrupted and replaced.
    pub timeout: Option<Duration>,
    /// Bearer keys `/metrics` accepts (the component checks its own routes); empty: open.
    pub api_keys: Vec<String>,
    /// Origins whose browsers may read the server's own responses (`/metrics`, 503 and 500
    /// answers), as the component lets them read its own; `*` for any.
    pub cors_origins: Vec<String>,
}

/// A request-serving instance.
struct Worker {
    store: Store<ServeState>,
    proxy: Proxy,
}

/// A serving store's data: the host's state, and `wasi:http` with no outgoing requests.
struct ServeState {
    host: HostState,
    http: WasiHttpCtx,
    no_outgoing_http: NoOutgoingHttp,
}

impl HostData for ServeState {
    fn host(&self) -> &HostState {
        &self.host
    }

    fn host_mut(&mut self) -> &mut HostState {
        &mut self.host
    }
}

impl WasiView for ServeState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.host.ctx()
    }
}

impl WasiHttpView for ServeState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: self.host.table(),
            hooks: &mut self.no_outgoing_http,
        }
    }
}

/// `wasi:http` hooks that refuse every outgoing request: guests get no network.
struct NoOutgoingHttp;

/// The future type [`WasiHttpHooks::send_request`] returns.
type SendRequestFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                hyper::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for NoOutgoingHttp {
    fn send_request(
        &mut self,
        _request: hyper::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendRequestFuture {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The server: the compiled component, its idle instances and the admission limits.
pub struct Server {
    sandbox: Sandbox,
    pre: ProxyPre<ServeState>,
    concurrency: usize,
    queue: usize,
    timeout: Option<Duration>,
    idle: Mutex<Vec<Worker>>,
    slots: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    api_keys: Vec<String>,
    cors_origins: Vec<String>,
    metrics: Arc<Metrics>,
}

/// The response body type.
pub type Response = hyper::Response<HyperOutgoingBody>;

impl Server {
    /// Creates the engine (async), loads the component through the cache and links it with
    /// WASI, `wasi:http` and `wasi:nn`.
    pub fn new(options: ServeOptions) -> Result<Self, HostError> {
        if options.concurrency == 0 {
            return Err(HostError::Component(
                "concurrency must be at least 1".into(),
            ));
        }
        let sandbox = Sandbox::new(options.runtime)?;
        let mut linker = Linker::<ServeState>::new(&sandbox.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link_error)?;
        sandbox::add_nn_to_linker(&mut linker)?;
        let pre = linker
            .instantiate_pre(&sandbox.component)
            .map_err(link_error)?;
        let pre = ProxyPre::new(pre).map_err(|e| {
            HostError::Component(format!(
                "{} is not a wasi:http proxy component: {e:#}",
                sandbox.options.component.display()
            ))
        })?;
        Ok(Self {
            sandbox,
            pre,
            concurrency: options.concurrency,
            queue: options.queue,
            timeout: options.timeout,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(options.concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            api_keys: options.api_keys,
            cors_origins: options.cors_origins,
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// What the component cache did when this server was created.
    pub fn cache_status(&self) -> &CacheStatus {
        &self.sandbox.cache_status
    }

    /// Time spent creating the engine and loading or compiling the component.
    pub fn load_time(&self) -> Duration {
        self.sandbox.load_time
    }

    /// Bounds the KV cache memory of all native sessions at `bytes` (before serving).
    pub fn set_kv_memory(&mut self, bytes: usize) {
        self.sandbox.set_kv_memory(Some(bytes));
    }

    /// Memory-maps a GGUF file once for the native backend, under each of `names`.
    pub fn preload(&mut self, path: &Path, names: &[String]) -> Result<Arc<Model>, HostError> {
        self.sandbox.preload(path, names)
    }

    /// Serves one internal `GET /health` so that the first instance exists and has opened its
    /// model before the first client arrives; returns the response status and body once the
    /// request has left the server entirely (its instance idle again, its place free), so that
    /// the first client finds the server as idle as it will ever be.
    pub async fn warm_up(self: &Arc<Self>) -> Result<(u16, String), HostError> {
        let request = hyper::Request::get("http://localhost/health")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| HostError::Component(format!("warm-up request: {e}")))?;
        let (response, done) = self.clone().handle_tracked(request, None).await;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        if let Some(done) = done {
            let _ = done.await;
        }
        Ok((status, body))
    }

    /// Accepts connections on `listener` until `shutdown` resolves, then waits (up to 30 s) for
    /// the requests in flight.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let server = self.clone();
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(request, Some(peer)).await) }
            });
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                // A client that disconnects mid-request is not the server's error.
                let _ = connection.await;
            });
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(DRAIN_TIMEOUT) => {
                tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; exiting");
            }
        }
        Ok(())
    }

    /// Runs one request through an instance and answers it; never fails (errors become
    /// OpenAI-style JSON responses).
    pub async fn handle<B>(
        self: Arc<Self>,
        request: hyper::Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.handle_tracked(request, peer).await.0
    }

    /// [`Server::handle`], with the task that finishes the request after its response head
    /// (the rest of the guest's call; then the instance goes back, the place is freed), if the
    /// request got that far.
    async fn handle_tracked<B>(
        self: Arc<Self>,
        request: hyper::Request<B>,
        peer: Option<SocketAddr>,
    ) -> (Response, Option<tokio::task::JoinHandle<()>>)
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let line = format!(
            "{} {} {}",
            peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
            request.method(),
            request.uri().path()
        );
        let route = metrics::route(request.uri().path());
        let origin = self.cors_origin(request.headers());
        let cors = |response: Response| with_cors(response, origin.as_ref());
        let log = {
            let metrics = self.metrics.clone();
            move |line: &str, status: u16, started: Instant| {
                access_log(line, status, started);
                metrics.request(route, status, started.elapsed().as_secs_f64());
            }
        };
        if route == "/metrics" && request.method() == hyper::Method::GET {
            let response = self.metrics_response(request.headers());
            log(&line, response.status().as_u16(), started);
            return (cors(response), None);
        }
        let limit = self.concurrency + self.queue;
        let Some(admitted) = Admitted::try_new(&self.admitted, limit) else {
            log(&line, 503, started);
            let busy =
                format!("the server is busy ({limit} requests running or queued); retry later");
            return (cors(error_response(503, &busy)), None);
        };
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            log(&line, 503, started);
            return (
                cors(error_response(503, "the server is shutting down")),
                None,
            );
        };
        let mut worker = match self.take_worker().await {
            Ok(w) => w,
            Err(e) => {
                log(&line, 500, started);
                let message = format!("cannot start an instance: {e}");
                return (cors(error_response(500, &message)), None);
            }
        };
        let (sender, receiver) = oneshot::channel();
        let mut http = worker.store.data_mut().http();
        let prepared = http
            .new_incoming_request(Scheme::Http, request)
            .and_then(|r| Ok((r, http.new_response_outparam(sender)?)));
        let (guest_request, out) = match prepared {
            Ok(p) => p,
            Err(e) => {
                log(&line, 400, started);
                return (cors(error_response(400, &format!("{e:#}"))), None);
            }
        };
        // The deadline bounds the guest (epochs) and the native backend's compute (the store's
        // call state, checked between layers).
        sandbox::begin_call(&mut worker.store, self.timeout);
        let call = worker.store.data().host().call().clone();
        // A client that hangs up before the response head (hyper then drops this future)
        // cancels the call: the guest stops at its next epoch tick, the native compute at its
        // next layer. Once the head is out, a streamed body's failed write stops the guest.
        let cancel_on_drop = CancelOnDrop(Some(call.clone()));
        // The response head arrives through `receiver` while the call runs; forward it (and
        // learn its status for the access log) on a task of its own, so that a call that traps
        // first can drop its store, and with it the unset outparam, ending the wait.
        let (head_tx, head_rx) = oneshot::channel::<Response>();
        let counts = self.metrics.clone();
        let (failure, kv_origin) = (call.clone(), origin.clone());
        let forward = tokio::spawn(async move {
            let response = match receiver.await {
                // The native backend refused the call for want of KV memory: whatever the front
                // made of that (it sees only a backend failure), the answer is a 503.
                Ok(Ok(response)) => match failure.failure() {
                    Some(NnFailure::KvMemory(e)) => {
                        with_cors(kv_memory_response(&e), kv_origin.as_ref())
                    }
                    _ => response,
                },
                Ok(Err(code)) => error_response(500, &format!("the component failed: {code:?}")),
                // The outparam was dropped unset: the call trapped or returned without answering.
                Err(_) => return None,
            };
            let status = response.status().as_u16();
            let _ = head_tx.send(response.map(|body| count_usage(body, counts)));
            Some(status)
        });
        let server = self.clone();
        let done = tokio::spawn(async move {
            let result = worker
                .proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut worker.store, guest_request, out)
                .await;
            sandbox::end_call(&worker.store);
            let worker = match result {
                Ok(()) => Some(worker),
                Err(_) if call.is_cancelled() => {
                    tracing::debug!(
                        "{line}: the client hung up; call cancelled, instance discarded"
                    );
                    drop(worker);
                    None
                }
                Err(e) => {
                    tracing::warn!("{line}: instance discarded: {}", describe_trap(&e));
                    drop(worker);
                    None
                }
            };
            // The head is judged against the call's failure before the instance can serve
            // another call (which forgets it); a dropped instance drops its unset outparam.
            // 499 (nginx's "client closed request") for a call its client hung up on.
            let unanswered = if call.is_cancelled() { 499 } else { 500 };
            let status = forward.await.ok().flatten().unwrap_or(unanswered);
            if let Some(failure) = call.take_failure() {
                tracing::debug!(%failure, "{line}: the native backend failed");
            }
            if let Some(worker) = worker {
                server.return_worker(worker);
            }
            // Only now: the next request finds the instance idle instead of making another.
            drop(permit);
            log(&line, status, started);
            drop(admitted);
        });
        let response = match head_rx.await {
            Ok(response) => response,
            Err(_) => cors(error_response(
                500,
                "the component ended without a response (it trapped or ran past its deadline; see the server log)",
            )),
        };
        cancel_on_drop.disarm();
        (response, Some(done))
    }

    /// `GET /metrics`: the metrics as text, or 401 without a valid key when keys are set.
    fn metrics_response(&self, headers: &hyper::HeaderMap) -> Response {
        if !self.api_keys.is_empty() {
            let given = headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, key)| key.trim());
            // Every key is compared in full, in constant time, as the HTTP front compares them.
            let matched = given.is_some_and(|g| {
                self.api_keys.iter().fold(false, |any, k| {
                    any | constant_time_eq::constant_time_eq(k.as_bytes(), g.as_bytes())
                })
            });
            if !matched {
                return error_body(
                    401,
                    "invalid_request_error",
                    Some("invalid_api_key"),
                    "no API key or an incorrect one: send `Authorization: Bearer KEY`",
                );
            }
        }
        let running = self.concurrency - self.slots.available_permits();
        let queued = self.admitted.load(Ordering::SeqCst).saturating_sub(running);
        let body = self.metrics.encode(running, queued);
        let mut response = hyper::Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never: Infallible| match never {})
                .boxed_unsync(),
        );
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        response
    }

    /// The `Access-Control-Allow-Origin` value for a request from the origin in `headers`, if
    /// that origin is allowed.
    fn cors_origin(&self, headers: &hyper::HeaderMap) -> Option<hyper::header::HeaderValue> {
        let origin = headers.get(hyper::header::ORIGIN)?;
        if self.cors_origins.iter().any(|o| o == "*") {
            return Some(hyper::header::HeaderValue::from_static("*"));
        }
        self.cors_origins
            .iter()
            .any(|o| o.as_bytes() == origin.as_bytes())
            .then(|| origin.clone())
    }

    async fn take_worker(&self) -> wasmtime::Result<Worker> {
        let idle = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        if let Some(worker) = idle {
            return Ok(worker);
        }
        let host = self
            .sandbox
            .host_state()
            .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
        let mut store = self.sandbox.async_store(ServeState {
            host,
            http: WasiHttpCtx::new(),
            no_outgoing_http: NoOutgoingHttp,
        });
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Worker { store, proxy })
    }

    fn return_worker(&self, worker: Worker) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.concurrency {
                idle.push(worker);
            }
        }
    }
}

/// One admitted request (running or queued); dropping it frees the place.
struct Admitted(Arc<AtomicUsize>);

impl Admitted {
    /// Admits a request unless `limit` are already in.
    fn try_new(count: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Cancels a call when dropped still armed: the request's future was dropped before its
/// response head, because its client hung up.
struct CancelOnDrop(Option<Arc<CallState>>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            call.cancel();
        }
    }
}

fn describe_trap(e: &wasmtime::Error) -> String {
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        "interrupted at its deadline".into()
    } else {
        format!("{e:#}").replace('\n', " ")
    }
}

/// One access-log line: `PEER METHOD PATH STATUS TIMEms` (target `edge_llm::access`).
fn access_log(line: &str, status: u16, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::info!(target: "edge_llm::access", "{line} {status} {ms:.1}ms");
}

/// Takes the front's usage trailers off a response body into `metrics`; the client gets the
/// other trailers, if any.
fn count_usage(body: HyperOutgoingBody, metrics: Arc<Metrics>) -> HyperOutgoingBody {
    body.map_frame(move |frame| {
        let mut trailers = match frame.into_trailers() {
            Ok(t) => t,
            Err(frame) => return frame,
        };
        let mut take = |name: &str| -> u64 {
            trailers
                .remove(name)
                .and_then(|v| v.to_str().ok().and_then(|v| v.parse().ok()))
                .unwrap_or(0)
        };
        let (prompt, generated) = (
            take("x-edge-llm-prompt-tokens"),
            take("x-edge-llm-completion-tokens"),
        );
        metrics.tokens(prompt, generated);
        hyper::body::Frame::trailers(trailers)
    })
    .boxed_unsync()
}

/// `response` with `Access-Control-Allow-Origin: origin`, when there is one.
fn with_cors(mut response: Response, origin: Option<&hyper::header::HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if origin != "*" {
            headers.insert(
                hyper::header::VARY,
                hyper::header::HeaderValue::from_static("origin"),
            );
        }
    }
    response
}

/// How long a client refused for want of KV memory is asked to wait (`Retry-After`, seconds):
/// about what a short request takes to finish and give its memory back.
const KV_RETRY_AFTER_S: u32 = 1;

/// 503 with `Retry-After` for a request the KV memory budget cannot take now.
fn kv_memory_response(e: &KvMemoryError) -> Response {
    let mut response = error_body(
        503,
        "server_error",
        Some("kv_memory_exhausted"),
        &e.to_string(),
    );
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(KV_RETRY_AFTER_S),
    );
    response
}

/// A JSON error response in the front's (OpenAI's) shape.
fn error_response(status: u16, message: &str) -> Response {
    error_body(status, "server_error", None, message)
}

/// A JSON error response of OpenAI's `type` and `code`.
fn error_body(status: u16, kind: &str, code: Option<&str>, message: &str) -> Response {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    let body = Full::new(Bytes::from(format!("{body}\n")))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
