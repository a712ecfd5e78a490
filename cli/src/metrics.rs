//! The server's Prometheus metrics (`GET /metrics`, OpenMetrics text format), kept with the
//! `prometheus-client` crate.
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `edge_llm_requests_total{route, status}` | counter | requests answered |
//! | `edge_llm_request_duration_seconds{route}` | histogram | from arrival to the end of the body |
//! | `edge_llm_prompt_tokens_total` | counter | prompt tokens of generation requests |
//! | `edge_llm_generated_tokens_total` | counter | tokens generated |
//! | `edge_llm_requests_running` | gauge | requests inside an instance |
//! | `edge_llm_requests_queued` | gauge | requests waiting for one |
//!
//! Token counts come from the HTTP front's usage trailers (`EDGE_LLM_USAGE_TRAILERS`), which
//! the server reads off each response body and does not forward.

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The routes the front serves; any other path is counted as `other`, so a scan of random
/// paths cannot grow the label sets.
const ROUTES: [&str; 9] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/health",
    "/tokenize",
    "/detokenize",
    "/metrics",
    "/",
];

/// A request's route label: its path if the front serves it (OpenAI's routes also without
/// their `/v1` prefix, which the front answers too), else `other`.
pub fn route(path: &str) -> &'static str {
    let path = match path {
        "/chat/completions" => "/v1/chat/completions",
        "/completions" => "/v1/completions",
        "/models" => "/v1/models",
        other => other,
    };
    ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
}

/// Every metric the server keeps, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    durations: Family<Route, Histogram>,
    prompt_tokens: Counter,
    generated_tokens: Counter,
    running: Gauge,
    queued: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edge_llm");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        // 5 ms to ~80 s: a health check to a long generation on the guest's kernel.
        let durations = Family::<Route, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 15))
        });
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to the end of its response body",
            durations.clone(),
        );
        let prompt_tokens = Counter::default();
        registry.register(
            "prompt_tokens",
            "Prompt tokens of generation requests",
            prompt_tokens.clone(),
        );
        let generated_tokens = Counter::default();
        registry.register(
            "generated_tokens",
            "Tokens generated",
            generated_tokens.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "requests_running",
            "Requests inside an instance now",
            running.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "requests_queued",
            "Requests waiting for an instance now",
            queued.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            prompt_tokens,
            generated_tokens,
            running,
            queued,
        }
    }

    /// Counts one answered request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        self.durations
            .get_or_create(&Route { route })
            .observe(seconds);
    }

    /// Counts one request's tokens.
    pub fn tokens(&self, prompt: u64, generated: u64) {
        self.prompt_tokens.inc_by(prompt);
        self.generated_tokens.inc_by(generated);
    }

    /// The metrics as OpenMetrics text, with the load gauges set to `running` and `queued`.
    pub fn encode(&self, running: usize, queued: usize) -> String {
        self.running.set(i64::try_from(running).unwrap_or(i64::MAX));
        self.queued.set(i64::try_from(queued).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_the_text() {
        let m = Metrics::new();
        m.request(route("/v1/chat/completions"), 200, 0.25);
        m.request(route("/nope"), 404, 0.001);
        assert_eq!(route("/chat/completions"), "/v1/chat/completions");
        m.tokens(12, 5);
        let text = m.encode(1, 3);
        for line in [
            "edge_llm_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1",
            "edge_llm_requests_total{route=\"other\",status=\"404\"} 1",
            "edge_llm_prompt_tokens_total 12",
            "edge_llm_generated_tokens_total 5",
            "edge_llm_requests_running 1",
            "edge_llm_requests_queued 3",
            "edge_llm_request_duration_seconds_count{route=\"/v1/chat/completions\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
