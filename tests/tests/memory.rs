//! Memory over many calls on one long-lived instance. Its own test binary: RSS is per process,
//! so nothing else may run beside it.

use edge_llm_host::{api, greedy};
use edge_llm_tests::{default_model_guest_path, runtime, temp_dir};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn two_hundred_calls_on_one_instance_keep_memory_flat() {
    let cache = temp_dir("rss");
    let rt = runtime(true, &cache);
    let mut instance = rt.instantiate().expect("instance");
    let options = api::OpenOptions {
        backend: Some(api::Backend::WasiNn),
        context_length: Some(512),
    };
    let model = instance
        .open(&default_model_guest_path(), &options)
        .expect("open");
    let mut params = greedy(8);
    params.ignore_eos = true;
    let mut call = |i: usize| {
        let prompt = format!("Request {i}: tell me about WebAssembly.");
        instance
            .complete(&model, &prompt, &params)
            .expect("complete");
    };
    for i in 0..20 {
        call(i);
    }
    let warm = rss_kib();
    for i in 20..200 {
        call(i);
    }
    let end = rss_kib();
    eprintln!("RSS after warm-up {warm} KiB, after 200 calls {end} KiB");
    assert!(
        end <= warm + 8 * 1024,
        "RSS grew from {warm} KiB to {end} KiB over 180 calls"
    );
}
