//! Where the tests find llama.cpp's reference outputs (the files beside this crate, described in
//! its README) and the default model, and their parsed forms. Every crate's tests use this one
//! resolver; it builds for wasm32-wasip2 too, where the kernel's tests read the same files through
//! the host's file system (the wasm runner maps `/` read-only).
//!
//! These are test helpers: a missing or malformed file panics with a message saying how to get it.

use std::path::{Path, PathBuf};

/// File name of the default model (`just model` fetches it into `models/`).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of the reference files.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of reference file `name`.
pub fn path(name: &str) -> PathBuf {
    dir().join(name)
}

/// Reads and parses reference JSON file `name`.
pub fn json(name: &str) -> serde_json::Value {
    let path = path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reference file {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The default model's path: `$EDGE_LLM_MODEL` when set, else `models/` at the workspace root.
pub fn default_model() -> PathBuf {
    match std::env::var_os("EDGE_LLM_MODEL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("models").join(DEFAULT_MODEL_FILE),
    }
}

/// The default model's bytes, or a panic naming `just model`.
pub fn default_model_bytes() -> Vec<u8> {
    let path = default_model();
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "the default model is missing at {} ({e}): run `just model` to fetch it, \
             or set EDGE_LLM_MODEL",
            path.display()
        )
    })
}

/// A JSON array of numbers as token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| {
            let id = x.as_u64().expect("an id");
            u32::try_from(id).expect("an id fits u32")
        })
        .collect()
}

/// Per position, the `(id, logit)` pairs of a reference's `[[[id, logit], ...], ...]`.
pub fn top_logits(v: &serde_json::Value) -> Vec<Vec<(u32, f32)>> {
    let pair = |p: &serde_json::Value| {
        let id = u32::try_from(p[0].as_u64().expect("an id")).expect("an id fits u32");
        (id, p[1].as_f64().expect("a logit") as f32)
    };
    let rows = v.as_array().expect("top logits per position");
    rows.iter()
        .map(|row| {
            row.as_array()
                .expect("a position")
                .iter()
                .map(pair)
                .collect()
        })
        .collect()
}

/// One prompt of `greedy.json`: llama.cpp's greedy continuation and its top-20 logits.
pub struct Greedy {
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// The greedy continuation's ids (an end-of-generation id, when reached, kept last).
    pub generated_ids: Vec<u32>,
    /// Per step, the 20 highest `(id, logit)` pairs of the logits that chose that step's id.
    pub top20: Vec<Vec<(u32, f32)>>,
}

/// Every item of `greedy.json`.
pub fn greedy() -> Vec<Greedy> {
    items(&json("greedy.json"))
        .iter()
        .map(|it| Greedy {
            prompt_ids: ids(&it["prompt_ids"]),
            generated_ids: ids(&it["generated_ids"]),
            top20: top_logits(&it["top20_per_step"]),
        })
        .collect()
}

/// llama.cpp's perplexity on `ppl_text.txt` (flash attention off), per context length, and the
/// text's length in tokens.
pub struct Perplexity {
    /// `(context length, perplexity)`, shortest context first.
    pub by_context: Vec<(usize, f64)>,
    /// Tokens in `ppl_text.txt`.
    pub tokens: u64,
}

/// The figures of `ppl.json`.
pub fn perplexity() -> Perplexity {
    let d = json("ppl.json");
    let mut by_context: Vec<(usize, f64)> = d["perplexity"]
        .as_object()
        .expect("perplexity")
        .iter()
        .map(|(ctx, p)| {
            (
                ctx.parse().expect("a context length"),
                p.as_f64().expect("a perplexity"),
            )
        })
        .collect();
    by_context.sort_by_key(|&(ctx, _)| ctx);
    Perplexity {
        by_context,
        tokens: d["tokens"].as_u64().expect("tokens"),
    }
}

fn items(d: &serde_json::Value) -> &Vec<serde_json::Value> {
    d["items"].as_array().expect("items")
}

/// The tiny random-weight models of every architecture (`tests/arch/make_models.py`, written
/// into `build/arch/` by `just arch-models`) and llama.cpp's reference on each
/// (`arch/<name>.json`, made by `just arch-refs`).
pub mod arch {
    use sha2::{Digest, Sha256};

    /// The file names (without `.gguf`) of the tiny models, one per architecture.
    pub const MODELS: [&str; 6] = ["llama3", "qwen2", "qwen3", "gemma3", "phi3", "gpt2"];

    /// llama.cpp's reference on one tiny model.
    pub struct Reference {
        /// The model's bytes, checked against the sha256 the reference was made from.
        pub model: Vec<u8>,
        /// The context size llama.cpp ran with.
        pub n_ctx: usize,
        /// The evaluated token sequence.
        pub tokens: Vec<u32>,
        /// Perplexity of `tokens[1..]` under llama.cpp's logits.
        pub perplexity: f64,
        /// Per position, llama.cpp's highest `(id, logit)` pairs, highest first.
        pub top: Vec<Vec<(u32, f32)>>,
    }

    /// Where `just arch-models` writes the tiny model `name`.
    pub fn model_path(name: &str) -> std::path::PathBuf {
        super::workspace_root().join(format!("build/arch/{name}.gguf"))
    }

    /// The model `name` and its reference, or a panic saying how to make the missing file
    /// or that the regenerated model is not the one the reference was made from.
    pub fn reference(name: &str) -> Reference {
        let d = super::json(&format!("arch/{name}.json"));
        let path = model_path(name);
        let model = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}): run `just arch-models` to write the tiny models",
                path.display()
            )
        });
        let sha: String = Sha256::digest(&model)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let want = d["sha256"].as_str().expect("sha256");
        assert_eq!(
            sha,
            want,
            "{} is not the file the reference arch/{name}.json was made from: \
             regenerate both (`just arch-models arch-refs`) and commit the new reference",
            path.display()
        );
        Reference {
            model,
            n_ctx: d["n_ctx"].as_u64().expect("n_ctx") as usize,
            tokens: super::ids(&d["tokens"]),
            perplexity: d["perplexity"].as_f64().expect("perplexity"),
            top: super::top_logits(&d["top"]),
        }
    }
}
