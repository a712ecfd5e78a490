//! `quant::dequantize_row` equals ggml's dequantization bit for bit on random valid blocks of
//! every supported type (the expected values come from the `gguf` package; see
//! `tests/data/README.md`).
#![allow(clippy::unwrap_used)]

use edge_llm_kernel::gguf::GgmlType;
use edge_llm_kernel::quant;

macro_rules! refs {
    ($($ty:ident),*) => {
        [$((GgmlType::$ty, include_str!(concat!("data/quant/", stringify!($ty), ".json")))),*]
    };
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn dequantize_row_equals_ggml() {
    let refs =
        refs!(F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL);
    for (ty, text) in refs {
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(doc["type"].as_str(), Some(ty.name()));
        let blocks = hex(doc["blocks_hex"].as_str().unwrap());
        let want: Vec<f32> = hex(doc["values_f32le_hex"].as_str().unwrap())
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let n_blocks = blocks.len() / ty.type_size() as usize;
        assert_eq!(n_blocks * ty.block_size() as usize, want.len(), "{ty}");
        // The whole data as one row, and block by block.
        let mut got = vec![f32::NAN; want.len()];
        assert!(quant::dequantize_row(ty, &blocks, &mut got), "{ty}");
        let per = ty.block_size() as usize;
        let mut one = vec![f32::NAN; want.len()];
        for (b, o) in blocks
            .chunks_exact(ty.type_size() as usize)
            .zip(one.chunks_exact_mut(per))
        {
            quant::dequantize_row(ty, b, o);
        }
        for (i, ((g, o), w)) in got.iter().zip(&one).zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{ty} value {i}: {g} vs ggml {w}");
            assert_eq!(o.to_bits(), w.to_bits(), "{ty} value {i} (block by block)");
        }
        println!("{ty}: {} values equal ggml's", want.len());
    }
}
