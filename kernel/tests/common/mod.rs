//! Shared helpers of the integration tests: locating the real model and the reference data.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use edge_llm_kernel::Model;

/// The real model: `$EDGE_LLM_MODEL`, else `models/SmolLM2-135M-Instruct.Q4_1.gguf` in the repo.
pub fn model_path() -> PathBuf {
    match std::env::var("EDGE_LLM_MODEL") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    }
}

/// Loads the real model, failing with a message naming `just model` if it is missing.
pub fn load_model() -> Arc<Model> {
    let path = model_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "the reference model is missing at {} ({e}): run `just model` to fetch it, \
             or set EDGE_LLM_MODEL",
            path.display()
        )
    });
    Arc::new(Model::load(Arc::new(bytes)).expect("the reference model loads"))
}

/// The shared reference data directory.
pub fn refs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/refs")
}

/// Reads and parses a JSON reference file.
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read reference file {}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON parses")
}

/// A greedy.json item.
pub struct GreedyItem {
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    /// Per step, the reference top-20 `(id, logit)`.
    pub top20: Vec<Vec<(u32, f32)>>,
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// All items of greedy.json.
pub fn greedy_items() -> Vec<GreedyItem> {
    let d = read_json(&refs_dir().join("greedy.json"));
    d["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|it| GreedyItem {
            prompt_ids: ids(&it["prompt_ids"]),
            generated_ids: ids(&it["generated_ids"]),
            top20: it["top20_per_step"]
                .as_array()
                .expect("top20")
                .iter()
                .map(|step| {
                    step.as_array()
                        .expect("step")
                        .iter()
                        .map(|p| {
                            (
                                p[0].as_u64().expect("id") as u32,
                                p[1].as_f64().expect("logit") as f32,
                            )
                        })
                        .collect()
                })
                .collect(),
        })
        .collect()
}

/// Index of the maximum (first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
