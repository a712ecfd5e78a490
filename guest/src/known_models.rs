//! Model names the component knows (from `models/manifest.json`, compiled in) and where their
//! files are inside the sandbox.

/// Where hosts preopen the model directory.
pub const MODEL_DIR: &str = "/models";

const MANIFEST: &str = include_str!("../../models/manifest.json");

/// The file name of a known model, if `name` is one.
pub fn file_of(name: &str) -> Option<String> {
    let manifest: serde_json::Value = serde_json::from_str(MANIFEST).ok()?;
    manifest["models"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["file"].as_str())
        .map(str::to_string)
}

/// The manifest's default model name (the one a bundled component carries).
pub fn default_name() -> Option<String> {
    let manifest: serde_json::Value = serde_json::from_str(MANIFEST).ok()?;
    manifest["default"].as_str().map(str::to_string)
}

/// A known name becomes its file under [`MODEL_DIR`]; anything else is taken as a path.
pub fn resolve(name_or_path: &str) -> String {
    match file_of(name_or_path) {
        Some(file) => format!("{MODEL_DIR}/{file}"),
        None => name_or_path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_resolves_into_the_model_dir() {
        assert_eq!(
            resolve("smollm2-135m-instruct"),
            "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        );
        assert_eq!(resolve("/models/other.gguf"), "/models/other.gguf");
        assert_eq!(default_name().as_deref(), Some("smollm2-135m-instruct"));
    }
}
