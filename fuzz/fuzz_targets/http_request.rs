//! Any bytes as the body of an OpenAI request: parsing either endpoint's body gives a checked
//! request or a 4xx naming the problem.
#![no_main]

use edge_llm_guest_http::openai::{parse_request, Endpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for endpoint in [Endpoint::Chat, Endpoint::Text] {
        if let Err(e) = parse_request(endpoint, data) {
            assert!((400..500).contains(&e.status));
        }
    }
});
