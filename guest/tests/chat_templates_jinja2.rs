//! Every chat template of llama.cpp's collection (`models/templates/` in the
//! `llama-cpp-python==0.3.36` sdist) renders byte for byte as Python's jinja2 renders it in
//! Hugging Face's environment, for a fixed set of conversations: a lone user message, a system
//! prompt, several turns, a chat closed without the generation prompt, tool definitions, and a
//! tool call with its result. Where jinja2 raises, rendering must fail too.
//!
//! `just chat-templates` extracts the templates and writes jinja2's renders
//! (`tests/templates/render_jinja2.py`) to `build/templates/jinja2.json`.

use edge_llm_guest::chat::{ChatTemplate, Clock, TemplateLimits};
use minijinja::value::Value;

/// Renders that differ for a reason in minijinja's engine rather than in our environment, each
/// checked to still differ (so the list cannot outlive its reason).
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "LFM2.5-8B-A1B.jinja",
        "tool-result",
        "`for item in content` over a null content: jinja2 raises, minijinja iterates none as empty",
    ),
    (
        "llama-cpp-deepseek-r1.jinja",
        "tools",
        "`tools | map(...) | tojson`: jinja2's map is a generator json refuses, minijinja's a list",
    ),
    (
        "llama-cpp-deepseek-r1.jinja",
        "tool-result",
        "`tools | map(...) | tojson`: jinja2's map is a generator json refuses, minijinja's a list",
    ),
    (
        "meetkai-functionary-medium-v3.1.jinja",
        "tools",
        "`\"…\"|safe + x`: jinja2's Markup concatenation HTML-escapes x; minijinja has no Markup",
    ),
    (
        "meetkai-functionary-medium-v3.1.jinja",
        "tool-result",
        "`\"…\"|safe + x`: jinja2's Markup concatenation HTML-escapes x; minijinja has no Markup",
    ),
];

#[test]
fn every_llama_cpp_template_renders_as_jinja2_does() {
    let root = edge_llm_refs::workspace_root().join("build/templates");
    let expected_path = root.join("jinja2.json");
    let text = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `just chat-templates` first",
            expected_path.display()
        )
    });
    let expected: serde_json::Value = serde_json::from_str(&text).expect("jinja2.json parses");
    let clock = expected["clock_unix"].as_i64().expect("clock_unix");
    let (bos, eos) = (
        expected["bos_token"].as_str().expect("bos_token"),
        expected["eos_token"].as_str().expect("eos_token"),
    );
    let cases = expected["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= 400,
        "only {} renders in jinja2.json",
        cases.len()
    );

    let mut failures = Vec::new();
    let mut known_seen = Vec::new();
    for case in cases {
        let (template, conversation) = (
            case["template"].as_str().unwrap_or("?"),
            case["conversation"].as_str().unwrap_or("?"),
        );
        let name = format!("{template} / {conversation}");
        let source =
            std::fs::read_to_string(root.join(case["template"].as_str().expect("template")))
                .expect("the template file is there");
        let rendered =
            ChatTemplate::new(&source, bos, eos, TemplateLimits::default()).and_then(|mut t| {
                t.set_clock(Clock::Fixed(clock));
                t.render_context(Value::from_serialize(&case["context"]))
            });
        let known = KNOWN_DIFFERENCES
            .iter()
            .find(|(t, c, _)| *t == template && *c == conversation);
        let same = match (case["text"].as_str(), &rendered) {
            (Some(want), Ok(got)) => got == want,
            (None, Err(_)) => true,
            _ => false,
        };
        if let Some((_, _, why)) = known {
            assert!(
                !same,
                "{name} is listed as differing ({why}) but renders as jinja2 does"
            );
            known_seen.push(name);
            continue;
        }
        match (case["text"].as_str(), rendered) {
            (Some(want), Ok(got)) if got == want => {}
            (Some(want), Ok(got)) => {
                let at = want
                    .bytes()
                    .zip(got.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                let near = |s: &str| {
                    s.get(at.saturating_sub(40)..(at + 60).min(s.len()))
                        .unwrap_or("")
                        .to_owned()
                };
                failures.push(format!(
                    "{name}: differs at byte {at}:\n  jinja2: {:?}\n  ours:   {:?}",
                    near(want),
                    near(&got)
                ));
            }
            (Some(_), Err(e)) => failures.push(format!("{name}: jinja2 renders, ours fails: {e}")),
            (None, Ok(_)) => failures.push(format!(
                "{name}: jinja2 raises ({}), ours renders",
                case["error"].as_str().unwrap_or("?")
            )),
            (None, Err(_)) => {}
        }
    }
    assert_eq!(
        known_seen.len(),
        KNOWN_DIFFERENCES.len(),
        "listed differences not found: {known_seen:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} renders differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
