//! Chat template rendering: the default model's template against the reference prompts, and
//! the limits against hostile templates.

mod common;

use common::{load_ref, model_gguf};
use edge_llm_guest::chat::{ChatError, ChatTemplate, Message, TemplateLimits};

fn template(src: &str, limits: TemplateLimits) -> ChatTemplate {
    ChatTemplate::new(src, "<s>", "</s>", limits).expect("template compiles")
}

#[test]
fn default_model_template_matches_reference_prompts() {
    let gguf = model_gguf();
    let tmpl = ChatTemplate::from_gguf(
        &gguf,
        "<|im_start|>",
        "<|im_end|>",
        TemplateLimits::default(),
    )
    .expect("template loads");
    let greedy = load_ref("greedy.json");
    let mut checked = 0;
    for item in greedy["items"].as_array().expect("items") {
        if item["kind"] != "chat" {
            continue;
        }
        let user = item["user"].as_str().expect("user");
        let want = item["prompt"].as_str().expect("prompt");
        assert_eq!(tmpl.render_user(user).expect("renders"), want);
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn for_model_uses_the_tokenizer_bos_and_eos() {
    let gguf = common::tiny_gguf();
    let tok = edge_llm_guest::tokenizer::Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let tmpl = ChatTemplate::for_model(&gguf, &tok, TemplateLimits::default()).expect("template");
    let out = tmpl.render_user("Hi").expect("renders");
    assert!(
        out.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        "{out:?}"
    );
    assert!(format!("{tmpl:?}").contains("<|im_end|>"));
}

#[test]
fn first_reference_prompt_exactly() {
    let tmpl = ChatTemplate::from_gguf(&model_gguf(), "", "", TemplateLimits::default())
        .expect("template loads");
    let out = tmpl
        .render(&[Message::user("What is the capital of France?")], true)
        .expect("renders");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn tiny_model_template_with_system_and_no_generation_prompt() {
    let tmpl = ChatTemplate::from_gguf(&common::tiny_gguf(), "", "", TemplateLimits::default())
        .expect("template loads");
    let out = tmpl
        .render(
            &[
                Message::system("Be brief."),
                Message::user("Hi"),
                Message::assistant("Hello"),
            ],
            false,
        )
        .expect("renders");
    assert_eq!(
        out,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
    );
}

#[test]
fn bos_and_eos_variables() {
    let t = template(
        "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}",
        TemplateLimits::default(),
    );
    assert_eq!(
        t.render(&[Message::user("x")], true).expect("renders"),
        "<s>x</s>"
    );
}

#[test]
fn missing_template_is_typed() {
    let mut w = edge_llm_kernel::gguf::writer::GgufWriter::new();
    w.add_str("general.architecture", "llama");
    let gguf = edge_llm_kernel::gguf::Gguf::parse(&w.to_bytes()).expect("parses");
    let err =
        ChatTemplate::from_gguf(&gguf, "", "", TemplateLimits::default()).expect_err("no template");
    assert!(matches!(err, ChatError::NoTemplate), "{err:?}");
}

#[test]
fn syntax_error_is_typed() {
    let err =
        ChatTemplate::new("{% for %}", "", "", TemplateLimits::default()).expect_err("bad syntax");
    assert!(matches!(err, ChatError::Syntax(_)), "{err:?}");
}

#[test]
fn endless_loop_runs_out_of_fuel() {
    let limits = TemplateLimits {
        fuel: 10_000,
        ..TemplateLimits::default()
    };
    let t = template(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        limits,
    );
    let err = t
        .render(&[Message::user("x")], true)
        .expect_err("out of fuel");
    assert!(
        matches!(err, ChatError::OutOfFuel { fuel: 10_000 }),
        "{err:?}"
    );
}

#[test]
fn deep_recursion_is_stopped() {
    let t = template(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        TemplateLimits {
            fuel: 100_000_000,
            ..TemplateLimits::default()
        },
    );
    let err = t
        .render(&[Message::user("x")], true)
        .expect_err("recursion limit");
    assert!(matches!(err, ChatError::RecursionLimit { .. }), "{err:?}");
}

#[test]
fn huge_output_is_capped() {
    let limits = TemplateLimits {
        max_output_bytes: 1000,
        ..TemplateLimits::default()
    };
    let t = template("{% for i in range(10000) %}xxxxxxxxxx{% endfor %}", limits);
    let err = t
        .render(&[Message::user("x")], true)
        .expect_err("too large");
    assert!(
        matches!(err, ChatError::OutputTooLarge { limit: 1000 }),
        "{err:?}"
    );
}

#[test]
fn oversized_template_is_refused() {
    let limits = TemplateLimits {
        max_template_bytes: 10,
        ..TemplateLimits::default()
    };
    let err = ChatTemplate::new("0123456789ABC", "", "", limits).expect_err("too large");
    assert!(
        matches!(
            err,
            ChatError::TemplateTooLarge {
                size: 13,
                limit: 10
            }
        ),
        "{err:?}"
    );
}

#[test]
fn raise_exception_and_empty_role() {
    let t = template(
        "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok",
        TemplateLimits::default(),
    );
    let err = t
        .render(&[Message::assistant("x")], true)
        .expect_err("raises");
    match err {
        ChatError::Raised(m) => assert_eq!(m, "Conversation must start with user"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        t.render(&[Message::user("x")], true).expect("renders"),
        "ok"
    );
    let err = t
        .render(&[Message::new("", "x")], true)
        .expect_err("empty role");
    assert!(matches!(err, ChatError::EmptyRole { index: 0 }), "{err:?}");
}

#[test]
fn common_hf_template_features() {
    // namespace, loop controls, tojson, dict methods, string methods.
    let src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'skip' %}{% continue %}{% endif %}{% set ns.n = ns.n + 1 %}{{ m.get('role') }}:{{ m.content | trim }};{% endfor %}{{ ns.n }}{{ {'a': 1} | tojson }}{% for k, v in {'k': 'v'}.items() %}{{ k }}={{ v }}{% endfor %}";
    let t = template(src, TemplateLimits::default());
    let out = t
        .render(
            &[
                Message::user(" a "),
                Message::new("skip", "b"),
                Message::assistant("c"),
            ],
            true,
        )
        .expect("renders");
    // `tojson` spaces as Python's json.dumps does, as Hugging Face's environment has it.
    assert_eq!(out, "user:a;assistant:c;2{\"a\": 1}k=v");
}

#[test]
fn an_empty_chat_is_refused() {
    let t = template("{{ messages | length }}", TemplateLimits::default());
    assert!(matches!(t.render(&[], true), Err(ChatError::NoMessages)));
}
