//! `edge:llm/inference@0.2.0` straight through its WIT, from a Rust host of its own (the host
//! library binds 0.1.0): the JSON Schema suite constrained on both backends at temperature 1,
//! `n` answers and log probabilities, tool calls.

use std::io::Write;
use std::process::{Command, Stdio};

use edge_llm_host::sandbox::{self, link_error, HostState, Sandbox};
use edge_llm_tests::{default_model, default_model_guest_path, root, runtime_options, temp_dir};
use serde_json::Value;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::Store;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "edge:llm/llm-inference@0.2.0",
    });
}

use bindings::exports::edge::llm0_2_0::inference as v2;

/// The guest instantiated with both `wasi:nn` (the native backend, the default model
/// preloaded) and WASI, bound to 0.2.0; the sandbox (engine, epoch ticker) comes along.
fn instantiate() -> (Sandbox, Store<HostState>, bindings::LlmInference) {
    let cache = temp_dir("wit-v0-2");
    let mut sandbox = Sandbox::new(runtime_options(
        &edge_llm_tests::default_model_dir(),
        &cache,
    ))
    .expect("sandbox");
    sandbox
        .preload(&default_model(), &[default_model_guest_path()])
        .expect("preload");
    let mut linker = Linker::<HostState>::new(&sandbox.engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(link_error)
        .expect("wasi");
    sandbox::add_nn_to_linker(&mut linker).expect("wasi:nn");
    let pre = linker
        .instantiate_pre(&sandbox.component)
        .expect("instantiate_pre");
    let pre = bindings::LlmInferencePre::new(pre).expect("the guest exports inference@0.2.0");
    let mut store = sandbox.store(sandbox.host_state().expect("host state"));
    let b = pre.instantiate(&mut store).expect("instance");
    (sandbox, store, b)
}

fn open(
    store: &mut Store<HostState>,
    b: &bindings::LlmInference,
    backend: v2::Backend,
) -> ResourceAny {
    let options = v2::OpenOptions {
        backend: Some(backend),
        context_length: Some(1024),
    };
    b.edge_llm0_2_0_inference()
        .model()
        .call_open(&mut *store, &default_model_guest_path(), options)
        .expect("call")
        .expect("open")
}

fn params(seed: u64) -> v2::Params {
    v2::Params {
        max_tokens: 400,
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 0,
        seed,
        stop: Vec::new(),
        ignore_eos: false,
        logprobs: None,
        n: 1,
        constraint: None,
        tools: Vec::new(),
        tool_choice: v2::ToolChoice::None,
        parallel_tool_calls: true,
    }
}

fn chat(
    store: &mut Store<HostState>,
    b: &bindings::LlmInference,
    model: ResourceAny,
    ask: &str,
    p: &v2::Params,
) -> v2::Completion {
    let messages = [v2::Message {
        role: "user".into(),
        content: ask.into(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }];
    b.edge_llm0_2_0_inference()
        .model()
        .call_chat(&mut *store, model, &messages, p)
        .expect("call")
        .expect("chat")
}

#[test]
fn the_schema_suite_is_valid_through_the_wit_api_on_both_backends() {
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/clients/json_schemas.json")).expect("suite"),
    )
    .expect("suite parses");
    assert!(cases.len() >= 30);
    let (_sandbox, mut store, b) = instantiate();
    let mut answers = Vec::new();
    for backend in [v2::Backend::WasiNn, v2::Backend::Kernel] {
        let model = open(&mut store, &b, backend);
        for (i, case) in cases.iter().enumerate() {
            let mut p = params(i as u64);
            p.constraint = Some(v2::Constraint::JsonSchema(case["schema"].to_string()));
            let done = chat(
                &mut store,
                &b,
                model,
                case["ask"].as_str().expect("ask"),
                &p,
            );
            assert_eq!(done.backend, backend);
            let choice = &done.choices[0];
            assert_eq!(
                choice.finish_reason,
                v2::FinishReason::Stop,
                "{}",
                choice.text
            );
            answers.push(serde_json::json!({"schema": case["schema"], "answer": choice.text}));
        }
    }
    // Both backends compute the same logits, so they give the same answers.
    let (native, kernel) = answers.split_at(cases.len());
    assert_eq!(native, kernel);
    assert_eq!(invalid_answers(answers), serde_json::json!([]));
}

/// The answers (`{"schema", "answer"}` objects) that `tests/clients/validate_json.py` finds
/// invalid against their schemas.
fn invalid_answers(answers: Vec<Value>) -> Value {
    let mut validator = Command::new("python3")
        .arg(root().join("tests/clients/validate_json.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    validator
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(answers).to_string().as_bytes())
        .expect("writing the answers");
    let out = validator.wait_with_output().expect("validator");
    assert!(
        out.status.success(),
        "the validator failed (`just tools` installs jsonschema)"
    );
    serde_json::from_slice(&out.stdout).expect("the validator prints JSON")
}

#[test]
fn n_answers_and_logprobs_through_the_wit_api() {
    let (_sandbox, mut store, b) = instantiate();
    let model = open(&mut store, &b, v2::Backend::WasiNn);
    let mut p = params(5);
    p.max_tokens = 12;
    p.n = 3;
    p.logprobs = Some(2);
    let three = chat(&mut store, &b, model, "Name a fruit.", &p);
    assert_eq!(three.choices.len(), 3);
    p.n = 1;
    let one = chat(&mut store, &b, model, "Name a fruit.", &p);
    assert_eq!(
        three.choices[0].text, one.choices[0].text,
        "answer 0 samples with the seed"
    );
    let total: usize = three.choices.iter().map(|c| c.tokens.len()).sum();
    assert_eq!(three.usage.completion_tokens as usize, total);
    for (i, c) in three.choices.iter().enumerate() {
        assert_eq!(c.index as usize, i);
        let l = c.logprobs.as_ref().expect("logprobs");
        assert_eq!(l.len(), c.tokens.len());
        for (entry, &t) in l.iter().zip(&c.tokens) {
            assert_eq!(entry.chosen.token, t);
            assert!(entry.chosen.logprob <= 0.0 && entry.top.len() <= 2);
        }
    }
    let mut bad = params(0);
    bad.n = 0;
    let messages = [v2::Message {
        role: "user".into(),
        content: "x".into(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }];
    let err = b
        .edge_llm0_2_0_inference()
        .model()
        .call_chat(&mut store, model, &messages, &bad)
        .expect("call")
        .expect_err("n = 0 is refused");
    assert!(matches!(err, v2::Error::InvalidInput(m) if m.contains('n')));
}

/// The tools of the tool-call tests: a weather lookup and a unit conversion.
fn tools() -> Vec<v2::Tool> {
    vec![
        v2::Tool {
            name: "get_weather".into(),
            description: Some("The current weather in a city".into()),
            parameters: r#"{"type":"object","properties":{"city":{"type":"string","minLength":1},"unit":{"enum":["celsius","fahrenheit"]}},"required":["city","unit"]}"#.into(),
        },
        v2::Tool {
            name: "convert".into(),
            description: None,
            parameters: r#"{"type":"object","properties":{"value":{"type":"number","minimum":0,"maximum":1000}},"required":["value"]}"#.into(),
        },
    ]
}

fn user(text: &str) -> v2::Message {
    v2::Message {
        role: "user".into(),
        content: text.into(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// Tool calls through the WIT on both backends at temperature 1: with `required` and with a
/// named function every answer is a call of a listed tool whose arguments validate against its
/// schema, `finish-reason` `tool-calls`; the call and its result sent back give a text answer;
/// a raw completion with tools, an unknown tool name and a schema that is not an object are
/// refused.
#[test]
fn tool_calls_round_trip_through_the_wit_api_on_both_backends() {
    let (_sandbox, mut store, b) = instantiate();
    let api = b.edge_llm0_2_0_inference();
    let mut answers = Vec::new();
    for backend in [v2::Backend::WasiNn, v2::Backend::Kernel] {
        let model = open(&mut store, &b, backend);
        for (seed, choice) in [
            (1, v2::ToolChoice::Required),
            (2, v2::ToolChoice::Function("get_weather".into())),
            (3, v2::ToolChoice::Function("convert".into())),
            (4, v2::ToolChoice::Required),
        ] {
            let mut p = params(seed);
            p.max_tokens = 200;
            p.tools = tools();
            p.tool_choice = choice.clone();
            let ask = [user("What is the weather in Paris, in celsius?")];
            let done = api
                .model()
                .call_chat(&mut store, model, &ask, &p)
                .expect("call")
                .expect("chat");
            let c = &done.choices[0];
            assert_eq!(c.finish_reason, v2::FinishReason::ToolCalls, "{c:?}");
            assert_eq!(c.text, "");
            assert!(!c.tool_calls.is_empty());
            for call in &c.tool_calls {
                assert!(
                    call.id.starts_with("call_") && call.id.len() > 10,
                    "{call:?}"
                );
                if let v2::ToolChoice::Function(name) = &choice {
                    assert_eq!(&call.name, name);
                }
                let tool = tools()
                    .into_iter()
                    .find(|t| t.name == call.name)
                    .expect("a listed tool");
                let schema: Value = serde_json::from_str(&tool.parameters).expect("schema");
                answers.push(serde_json::json!({"schema": schema, "answer": call.arguments}));
            }
            // The call and its result in the history: the model answers in text.
            let call = c.tool_calls[0].clone();
            let history = [
                ask[0].clone(),
                v2::Message {
                    role: "assistant".into(),
                    content: String::new(),
                    tool_calls: vec![call.clone()],
                    tool_call_id: None,
                },
                v2::Message {
                    role: "tool".into(),
                    content: r#"{"temperature": 18, "sky": "clear"}"#.into(),
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call.id.clone()),
                },
            ];
            let mut p = params(seed);
            p.max_tokens = 60;
            p.tools = tools();
            p.tool_choice = v2::ToolChoice::None;
            let done = api
                .model()
                .call_chat(&mut store, model, &history, &p)
                .expect("call")
                .expect("chat");
            let c = &done.choices[0];
            assert!(
                c.tool_calls.is_empty() && !c.text.trim().is_empty(),
                "{c:?}"
            );
            assert_ne!(c.finish_reason, v2::FinishReason::ToolCalls);
        }
        let mut bad = params(0);
        bad.tools = tools();
        bad.tool_choice = v2::ToolChoice::Function("nope".into());
        let err = api
            .model()
            .call_chat(&mut store, model, &[user("x")], &bad)
            .expect("call")
            .expect_err("an unknown tool is refused");
        assert!(
            matches!(&err, v2::Error::InvalidInput(m) if m.contains("nope")),
            "{err:?}"
        );
        bad.tool_choice = v2::ToolChoice::Auto;
        bad.tools[0].parameters = r#"{"type":"string"}"#.into();
        let err = api
            .model()
            .call_chat(&mut store, model, &[user("x")], &bad)
            .expect("call")
            .expect_err("a schema of a string is refused");
        assert!(
            matches!(&err, v2::Error::InvalidInput(m) if m.contains("get_weather")),
            "{err:?}"
        );
        bad.tools = tools();
        let err = api
            .model()
            .call_complete(&mut store, model, "x", &bad)
            .expect("call")
            .expect_err("tools need a chat");
        assert!(
            matches!(&err, v2::Error::InvalidInput(m) if m.contains("chat")),
            "{err:?}"
        );
    }
    assert_eq!(invalid_answers(answers), serde_json::json!([]));
}

/// Cosine similarity of two vectors.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn embeddings_match_llama_cpp_and_both_backends_agree() {
    let refs = edge_llm_refs::json("embeddings.json");
    let cases = refs["cases"].as_array().expect("cases");
    let texts: Vec<v2::EmbedInput> = cases
        .iter()
        .map(|c| v2::EmbedInput::Text(c["text"].as_str().expect("text").into()))
        .collect();
    let (_sandbox, mut store, b) = instantiate();
    let api = b.edge_llm0_2_0_inference().model();
    let mut by_backend = Vec::new();
    for backend in [v2::Backend::WasiNn, v2::Backend::Kernel] {
        let model = open(&mut store, &b, backend);
        let e = api
            .call_embed(&mut store, model, &texts)
            .expect("call")
            .expect("embed");
        assert_eq!(e.pooling, v2::Pooling::Mean, "the model names no pooling");
        let n_tokens: usize = cases
            .iter()
            .map(|c| c["tokens"].as_array().expect("tokens").len())
            .sum();
        assert_eq!(
            e.prompt_tokens as usize, n_tokens,
            "tokenized as llama.cpp does"
        );
        for (case, v) in cases.iter().zip(&e.vectors) {
            let reference: Vec<f32> = case["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect();
            assert_eq!(v.len(), reference.len(), "the model's width");
            let norm: f64 = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "normalized: {norm}");
            let cos = cosine(v, &reference);
            eprintln!("{backend:?} {:?}: cosine {cos:.6}", case["text"]);
            assert!(
                cos > 0.9995,
                "{:?}: cosine {cos} with llama.cpp's",
                case["text"]
            );
        }
        // The same tokens given as ids embed the same.
        let ids: Vec<u32> = cases[1]["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t.as_u64().expect("id") as u32)
            .collect();
        let by_ids = api
            .call_embed(&mut store, model, &[v2::EmbedInput::Tokens(ids)])
            .expect("call")
            .expect("embed");
        assert_eq!(by_ids.vectors[0], e.vectors[1]);
        // An empty input is refused, and the model still embeds afterwards.
        let empty = api
            .call_embed(&mut store, model, &[v2::EmbedInput::Text(String::new())])
            .expect("call");
        assert!(
            matches!(empty, Err(v2::Error::InvalidInput(_))),
            "{empty:?}"
        );
        by_backend.push(e.vectors);
    }
    assert_eq!(
        by_backend[0], by_backend[1],
        "native and wasm vectors are identical"
    );
}
