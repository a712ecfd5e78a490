//! Constrained decoding on the default model, natively (the kernel backend, one thread): every
//! answer is valid JSON for its schema or matches its grammar, at temperature 1, and the
//! masks' share of the decode time is printed.

mod common;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use edge_llm_guest::constraint::{ConstraintError, ConstraintSet, ConstraintSpec};
use edge_llm_guest::generate::{FinishReason, GenerateParams, Generation};
use edge_llm_guest::kernel_backend::KernelBackend;
use edge_llm_guest::sampling::SamplingParams;
use edge_llm_guest::tokenizer::Tokenizer;
use edge_llm_kernel::Model;
use serde_json::{json, Value};

fn setup() -> (Arc<Model>, Rc<Tokenizer>, ConstraintSet) {
    let bytes = common::model_bytes();
    let tokenizer = Rc::new(Tokenizer::from_gguf(&common::model_gguf()).expect("tokenizer"));
    let t0 = Instant::now();
    let set = ConstraintSet::new(&tokenizer).expect("vocabulary");
    eprintln!(
        "ConstraintSet::new: {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let model = Arc::new(Model::load(Arc::new(bytes)).expect("model"));
    (model, tokenizer, set)
}

/// `<|im_start|>user\n{ask}<|im_end|>\n<|im_start|>assistant\n`, tokenized.
fn chat_prompt(tokenizer: &Tokenizer, ask: &str) -> Vec<u32> {
    let text = format!("<|im_start|>user\n{ask}<|im_end|>\n<|im_start|>assistant\n");
    tokenizer.encode(&text, true).expect("encodes")
}

/// Generates under `spec` at temperature 1; the text, why it ended, and the time spent in
/// masks and in all.
fn generate(
    s: &(Arc<Model>, Rc<Tokenizer>, ConstraintSet),
    ask: &str,
    spec: ConstraintSpec,
    seed: u64,
) -> (String, FinishReason, f64, f64) {
    generate_within(s, ask, spec, seed, 400)
}

/// [`generate`] with at most `max_tokens` tokens.
fn generate_within(
    (model, tokenizer, set): &(Arc<Model>, Rc<Tokenizer>, ConstraintSet),
    ask: &str,
    spec: ConstraintSpec,
    seed: u64,
    max_tokens: usize,
) -> (String, FinishReason, f64, f64) {
    let backend = KernelBackend::new(model.clone(), 1024).expect("session");
    let params = GenerateParams {
        max_tokens,
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            seed,
        },
        constraint: Some(spec.clone()),
        ..GenerateParams::default()
    };
    let constraint = set.start(&spec).expect("compiles");
    let t0 = Instant::now();
    let done = Generation::new(
        backend,
        tokenizer.clone(),
        chat_prompt(tokenizer, ask),
        params,
    )
    .expect("valid")
    .with_constraint(constraint)
    .run_to_end()
    .expect("runs");
    let total = t0.elapsed().as_secs_f64() * 1e3;
    (
        done.text,
        done.finish_reason,
        done.timings.constraint_ms,
        total,
    )
}

#[test]
fn answers_are_valid_json_for_their_schema() {
    let s = setup();
    let cases = [
        (
            "Describe a person.",
            json!({"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 20},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "role": {"enum": ["admin", "user", "guest"]}},
                "required": ["name", "age", "role"], "additionalProperties": false}),
        ),
        (
            "List some numbers.",
            json!({"type": "array", "items": {"type": "number", "minimum": -5, "maximum": 5},
                   "minItems": 2, "maxItems": 4}),
        ),
        (
            "Is water wet?",
            json!({"type": "object", "properties": {"answer": {"type": "boolean"},
                   "kind": {"const": "yes-no"}}, "required": ["answer", "kind"],
                   "additionalProperties": false}),
        ),
    ];
    let mut mask_ms = 0.0;
    let mut total_ms = 0.0;
    for (i, (ask, schema)) in cases.iter().enumerate() {
        let (text, finish, mask, total) = generate(
            &s,
            ask,
            ConstraintSpec::JsonSchema(schema.clone()),
            i as u64,
        );
        mask_ms += mask;
        total_ms += total;
        assert_eq!(finish, FinishReason::Stop, "{text}");
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        check(schema, &value);
    }
    eprintln!(
        "masks: {mask_ms:.1} ms of {total_ms:.1} ms ({:.1} %)",
        100.0 * mask_ms / total_ms
    );
    let (text, _, _, _) = generate(&s, "Say hi.", ConstraintSpec::JsonObject, 9);
    assert!(
        serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object()),
        "{text}"
    );
}

/// The few schema keywords the cases above use, checked by hand (the full validator runs in
/// the HTTP tests, through the `jsonschema` Python package).
fn check(schema: &Value, value: &Value) {
    match schema["type"].as_str() {
        Some("object") => {
            let o = value.as_object().expect("an object");
            for key in schema["required"].as_array().into_iter().flatten() {
                assert!(
                    o.contains_key(key.as_str().unwrap_or_default()),
                    "{value} lacks {key}"
                );
            }
            for (k, v) in o {
                let sub = &schema["properties"][k];
                assert!(!sub.is_null(), "{value}: unexpected key {k}");
                check(sub, v);
            }
        }
        Some("array") => {
            let a = value.as_array().expect("an array");
            let n = a.len() as u64;
            assert!(n >= schema["minItems"].as_u64().unwrap_or(0), "{value}");
            assert!(
                n <= schema["maxItems"].as_u64().unwrap_or(u64::MAX),
                "{value}"
            );
            a.iter().for_each(|v| check(&schema["items"], v));
        }
        Some("integer" | "number") => {
            let x = value.as_f64().expect("a number");
            if schema["type"] == "integer" {
                assert!(value.is_i64() || value.is_u64(), "{value}");
            }
            assert!(
                x >= schema["minimum"].as_f64().unwrap_or(f64::MIN),
                "{value}"
            );
            assert!(
                x <= schema["maximum"].as_f64().unwrap_or(f64::MAX),
                "{value}"
            );
        }
        Some("string") => {
            let len = value.as_str().expect("a string").chars().count() as u64;
            assert!(
                len <= schema["maxLength"].as_u64().unwrap_or(u64::MAX),
                "{value}"
            );
        }
        Some("boolean") => assert!(value.is_boolean(), "{value}"),
        _ => {}
    }
    if let Some(options) = schema["enum"].as_array() {
        assert!(options.contains(value), "{value}");
    }
    if !schema["const"].is_null() {
        assert_eq!(&schema["const"], value);
    }
}

/// Free-form JSON at temperature 1 with a small budget: the last quarter of it closes the
/// value, so answers that would be cut off mid-string end complete.
#[test]
fn a_small_budget_still_ends_in_complete_json() {
    let s = setup();
    for seed in 0..6 {
        let (text, finish, _, _) = generate_within(
            &s,
            "Describe the weather.",
            ConstraintSpec::JsonObject,
            seed,
            24,
        );
        assert_eq!(finish, FinishReason::Stop, "{text}");
        assert!(
            serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object()),
            "{text}"
        );
    }
}

#[test]
fn a_lark_grammar_is_followed() {
    let s = setup();
    let grammar = "start: \"The answer is \" (\"yes\" | \"no\") \".\"";
    let (text, finish, _, _) = generate(
        &s,
        "Is the sky blue?",
        ConstraintSpec::Lark(grammar.into()),
        1,
    );
    assert!(
        text == "The answer is yes." || text == "The answer is no.",
        "{text}"
    );
    assert_eq!(finish, FinishReason::Stop);
}

#[test]
fn a_gbnf_grammar_is_followed() {
    let s = setup();
    let grammar =
        "root ::= \"Colour: \" colour \".\"\ncolour ::= (\"red\" | \"green\" | \"blue\")\n";
    let (text, finish, _, _) = generate(
        &s,
        "Name a colour.",
        ConstraintSpec::Gbnf(grammar.into()),
        4,
    );
    assert!(
        ["Colour: red.", "Colour: green.", "Colour: blue."].contains(&text.as_str()),
        "{text}"
    );
    assert_eq!(finish, FinishReason::Stop);
    let grammar = "root ::= \"Answer: \" (\"yes\" | \"no\") \", because \" [a-z ]{1,40} \".\"\n";
    let (text, finish, _, _) = generate(
        &s,
        "Is the sea salty?",
        ConstraintSpec::Gbnf(grammar.into()),
        5,
    );
    let reason = text
        .strip_prefix("Answer: yes, because ")
        .or_else(|| text.strip_prefix("Answer: no, because "))
        .and_then(|t| t.strip_suffix('.'))
        .unwrap_or_else(|| panic!("{text}"));
    assert!((1..=40).contains(&reason.len()), "{text}");
    assert!(
        reason.bytes().all(|b| b.is_ascii_lowercase() || b == b' '),
        "{text}"
    );
    assert_eq!(finish, FinishReason::Stop);
}

#[test]
fn a_bad_schema_or_grammar_is_refused_with_the_reason() {
    let tokenizer = Tokenizer::from_gguf(&common::model_gguf()).expect("tokenizer");
    let set = ConstraintSet::new(&tokenizer).expect("vocabulary");
    for spec in [
        ConstraintSpec::JsonSchema(json!({"type": "no-such-type"})),
        ConstraintSpec::Lark("start: (".into()),
        ConstraintSpec::Gbnf("root ::= missing".into()),
    ] {
        match set.start(&spec) {
            Err(ConstraintError::Invalid { why, .. }) => assert!(!why.is_empty()),
            Err(e) => panic!("{spec:?}: {e}"),
            Ok(_) => panic!("{spec:?} compiled"),
        }
    }
}

/// A call constrained for `required` parses as a call of a listed tool in each format (the
/// model's output under Hermes' Lark grammar, Llama 3's and the generic JSON Schemas), and its
/// arguments hold what the tool's schema requires.
#[test]
fn tool_calls_constrained_in_every_format_parse() {
    use edge_llm_guest::tools::{self, Tool, ToolChoice, ToolFormat, ToolRequest};
    let s = setup();
    let request = |choice| ToolRequest {
        tools: vec![
            Tool {
                name: "get_weather".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {
                    "city": {"type": "string", "minLength": 1, "maxLength": 30},
                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                    "required": ["city", "unit"]}),
            },
            Tool {
                name: "get_time".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {
                    "zone": {"type": "integer", "minimum": -12, "maximum": 14}},
                    "required": ["zone"]}),
            },
        ],
        choice,
        parallel: false,
    };
    for format in [
        ToolFormat::Hermes,
        ToolFormat::Llama3Json,
        ToolFormat::Generic,
    ] {
        for (seed, choice) in [
            (0, ToolChoice::Required),
            (1, ToolChoice::Function("get_weather".into())),
            (2, ToolChoice::Function("get_time".into())),
        ] {
            let r = request(choice.clone());
            let spec = tools::constraint(format, &r).expect("a constraint");
            let (text, reason, _, _) = generate(&s, "What is the weather in Paris?", spec, seed);
            assert_eq!(reason, FinishReason::Stop, "{format:?}: {text}");
            let parsed = tools::parse(format, &r, &text);
            assert_eq!(parsed.calls.len(), 1, "{format:?} {choice:?}: {text}");
            let call = &parsed.calls[0];
            if let ToolChoice::Function(name) = &choice {
                assert_eq!(&call.name, name, "{text}");
            }
            match call.name.as_str() {
                "get_weather" => {
                    let city = call.arguments["city"].as_str().expect("a city");
                    assert!((1..=30).contains(&city.chars().count()), "{text}");
                    assert!(
                        ["celsius", "fahrenheit"]
                            .contains(&call.arguments["unit"].as_str().unwrap_or("")),
                        "{text}"
                    );
                }
                _ => {
                    let zone = call.arguments["zone"].as_i64().expect("a zone");
                    assert!((-12..=14).contains(&zone), "{text}");
                }
            }
            eprintln!("{format:?} {choice:?}: {text}");
        }
    }
}
