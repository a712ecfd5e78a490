//! Settings from the component's environment (`wasmtime serve --env NAME=VALUE`; `edge-llm
//! serve` sets them from its flags).

use std::cell::RefCell;
use std::rc::Rc;

/// The model served when `EDGE_LLM_MODEL` is unset.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";
/// The request body limit when `EDGE_LLM_MAX_BODY_BYTES` is unset: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// `max_tokens` when a request gives none.
pub const DEFAULT_MAX_TOKENS: u32 = 256;
/// The most stop strings one request may give.
pub const MAX_STOP_STRINGS: usize = 16;

/// What this front serves and accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `EDGE_LLM_MODEL`: the model name (or path inside the sandbox) to open and serve.
    pub model: String,
    /// `EDGE_LLM_MAX_BODY_BYTES`: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `EDGE_LLM_CTX_SIZE`: the context to open the model with (default: the model's).
    pub context_length: Option<u32>,
    /// `EDGE_LLM_MODEL_ALIASES`: comma-separated names a request's `model` may also use (such
    /// as `gpt-3.5-turbo`); `*` accepts any name.
    pub aliases: Vec<String>,
    /// `EDGE_LLM_API_KEYS`: comma-separated keys; when any is set, every route but `/health`
    /// (and CORS preflights) needs `Authorization: Bearer KEY` with one of them.
    pub api_keys: Vec<String>,
    /// `EDGE_LLM_CORS_ORIGINS`: comma-separated origins browsers may call from (`*` for any);
    /// empty: no CORS headers.
    pub cors_origins: Vec<String>,
}

/// The comma-separated non-empty names of `var`, or an error naming it.
fn list(vars: &impl Fn(&str) -> Option<String>, var: &str) -> Result<Vec<String>, String> {
    match vars(var) {
        None => Ok(Vec::new()),
        Some(v) => {
            let names: Vec<String> = v.split(',').map(|a| a.trim().to_string()).collect();
            if names.iter().any(String::is_empty) {
                return Err(format!(
                    "{var} must be comma-separated non-empty values, got `{v}`"
                ));
            }
            Ok(names)
        }
    }
}

impl Config {
    /// Reads the settings from `vars`; an unparsable value is an error naming the variable.
    pub fn from_vars(vars: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let model = vars("EDGE_LLM_MODEL")
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| DEFAULT_MODEL.into());
        let max_body_bytes = match vars("EDGE_LLM_MAX_BODY_BYTES") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    format!("EDGE_LLM_MAX_BODY_BYTES must be a positive number of bytes, got `{v}`")
                })?,
        };
        let context_length =
            match vars("EDGE_LLM_CTX_SIZE") {
                None => None,
                Some(v) => Some(v.trim().parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(
                    || format!("EDGE_LLM_CTX_SIZE must be a positive number of tokens, got `{v}`"),
                )?),
            };
        let aliases = list(&vars, "EDGE_LLM_MODEL_ALIASES")?;
        let api_keys = list(&vars, "EDGE_LLM_API_KEYS")?;
        let cors_origins = list(&vars, "EDGE_LLM_CORS_ORIGINS")?;
        Ok(Self {
            model,
            max_body_bytes,
            context_length,
            aliases,
            api_keys,
            cors_origins,
        })
    }

    /// Whether a request's `model` may be `name`: the served model, or an alias of it.
    pub fn answers_to(&self, name: &str) -> bool {
        name == self.model || self.aliases.iter().any(|a| a == "*" || a == name)
    }

    /// The settings of this instance's environment, read on the first call and kept: an
    /// instance's environment does not change, and a host that reuses instances would
    /// otherwise read it for every request. A bad setting is an error on every call.
    pub fn current() -> Result<Rc<Self>, String> {
        thread_local! {
            static CURRENT: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
        }
        if let Some(config) = CURRENT.with(|c| c.borrow().clone()) {
            return Ok(config);
        }
        let config = Rc::new(Self::from_vars(|name| std::env::var(name).ok())?);
        CURRENT.with(|c| *c.borrow_mut() = Some(config.clone()));
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let none = Config::from_vars(|_| None).unwrap();
        assert_eq!(none.model, DEFAULT_MODEL);
        assert_eq!(none.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(none.context_length, None);
        let set = Config::from_vars(|n| match n {
            "EDGE_LLM_MODEL" => Some("/models/x.gguf".into()),
            "EDGE_LLM_MAX_BODY_BYTES" => Some("4096".into()),
            "EDGE_LLM_CTX_SIZE" => Some("512".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(set.model, "/models/x.gguf");
        assert_eq!(set.max_body_bytes, 4096);
        assert_eq!(set.context_length, Some(512));
        let bad = Config::from_vars(|n| (n == "EDGE_LLM_MAX_BODY_BYTES").then(|| "lots".into()));
        assert!(bad.unwrap_err().contains("EDGE_LLM_MAX_BODY_BYTES"));
    }

    #[test]
    fn aliases_name_the_served_model() {
        let none = Config::from_vars(|_| None).unwrap();
        assert!(none.answers_to(DEFAULT_MODEL));
        assert!(!none.answers_to("gpt-3.5-turbo"));
        let some = Config::from_vars(|n| {
            (n == "EDGE_LLM_MODEL_ALIASES").then(|| "gpt-3.5-turbo, gpt-4o".into())
        })
        .unwrap();
        assert_eq!(some.aliases, ["gpt-3.5-turbo", "gpt-4o"]);
        assert!(some.answers_to("gpt-4o") && some.answers_to(DEFAULT_MODEL));
        assert!(!some.answers_to("gpt-4"));
        let any =
            Config::from_vars(|n| (n == "EDGE_LLM_MODEL_ALIASES").then(|| "*".into())).unwrap();
        assert!(any.answers_to("anything at all"));
        let empty = Config::from_vars(|n| (n == "EDGE_LLM_MODEL_ALIASES").then(|| "a,,b".into()));
        assert!(empty.unwrap_err().contains("EDGE_LLM_MODEL_ALIASES"));
    }
}
