//! What the CLI prints: the streamed text, or one JSON object (the fields `edge-llm run --json`
//! prints), and one-line descriptions of the component's errors.

use std::io::Write;

use serde_json::json;

use crate::api;

/// Where generated text goes.
pub struct Output {
    json: bool,
    ends_with_newline: bool,
}

impl Output {
    /// Streams text to stdout, or (`json`) keeps quiet until [`Output::finish`].
    pub fn new(json: bool) -> Self {
        Self {
            json,
            ends_with_newline: true,
        }
    }

    /// Shows a chunk as soon as it arrives.
    pub fn chunk(&mut self, text: &str) -> std::io::Result<()> {
        if self.json || text.is_empty() {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        self.ends_with_newline = text.ends_with('\n');
        Ok(())
    }

    /// Ends the stream with a newline, or prints the JSON summary.
    pub fn finish(&mut self, c: &api::Completion, load_ms: f64) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let summary = json!({
                "text": c.text,
                "tokens": c.tokens,
                "finish_reason": match c.finish_reason {
                    api::FinishReason::Stop => "stop",
                    api::FinishReason::Length => "length",
                },
                "usage": {
                    "prompt_tokens": c.usage.prompt_tokens,
                    "completion_tokens": c.usage.completion_tokens,
                    "cached_prompt_tokens": c.usage.cached_prompt_tokens,
                },
                "backend": backend(c.backend),
                "timings": {
                    "load_ms": load_ms,
                    "prefill_ms": c.timings.prefill_ms,
                    "ttft_ms": c.timings.ttft_ms,
                    "decode_tokens_per_s": c.timings.decode_tokens_per_s,
                },
            });
            writeln!(stdout, "{summary}")?;
        } else if !self.ends_with_newline {
            writeln!(stdout)?;
        }
        stdout.flush()
    }
}

/// The backend's name as `edge-llm` prints it (`wasm` is the in-sandbox kernel).
fn backend(b: api::Backend) -> &'static str {
    match b {
        api::Backend::WasiNn => "native",
        api::Backend::Kernel => "wasm",
    }
}

/// One line naming the problem.
pub fn describe(e: &api::Error) -> String {
    match e {
        api::Error::InvalidInput(m) => format!("invalid input: {m}"),
        api::Error::ContextOverflow(o) => format!(
            "context overflow: {} prompt tokens + {} requested exceed the context of {}",
            o.prompt_tokens, o.max_tokens, o.context_length
        ),
        api::Error::ModelNotFound(m) => format!("model not found: {m}"),
        api::Error::ModelNotSupported(m) => format!("model not supported: {m}"),
        api::Error::BackendError(m) => format!("backend error: {m}"),
        api::Error::RuntimeError(m) => format!("runtime error: {m}"),
    }
}
