//! Hostile chat templates and messages (`template \0 content`): compiling and rendering under
//! the limits must end in a string or an error, within the fuel, depth and size bounds.
#![no_main]

use edge_llm_guest::chat::{ChatTemplate, Message, TemplateLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (source, content) = input.split_once('\0').unwrap_or((&input, "hi"));
    let limits = TemplateLimits {
        fuel: 50_000,
        max_output_bytes: 1 << 20,
        ..TemplateLimits::default()
    };
    if let Ok(template) = ChatTemplate::new(source, "<s>", "</s>", limits) {
        let messages = [
            Message::new("system", content),
            Message::new("user", content),
            Message::new("assistant", content),
        ];
        if let Ok(out) = template.render(&messages, true) {
            assert!(out.len() <= 1 << 20);
        }
    }
});
