//! Any bytes as a GGUF file: parsing, every tensor view, the metadata the loader reads, and
//! the model loaders themselves must return errors, never panic or read out of bounds.
#![no_main]

use std::sync::Arc;

use edge_llm_kernel::gguf::Gguf;
use edge_llm_kernel::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(gguf) = Gguf::parse(data) {
        for t in gguf.tensors() {
            let _ = gguf.tensor_data(data, t);
        }
        let _ = gguf.get_str("general.architecture");
        let _ = gguf.get_str_array("tokenizer.ggml.tokens");
        let _ = gguf.get_i32_array("tokenizer.ggml.token_type");
        let _ = Gguf::parse_header(&gguf.header_with_len(data));
    }
    let _ = Model::load(Arc::new(data.to_vec()));
    // The loader that rewrites the file's Q4_1 matrices in place (on AVX2 machines).
    let _ = Model::load_packed(data.to_vec());
});
