//! What the guest cannot do: read outside the model directory, open sockets, send HTTP
//! requests, or see the host's environment. (A model whose sha256 does not match the manifest is refused: `bad_input.rs`;
//! a tampered cache entry is rebuilt, never loaded: `host_api.rs`.)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use edge_llm_host::{api, HostError};
use edge_llm_tests::http::{request, Server};
use edge_llm_tests::{
    component_wit, default_model_dir, egress_wasm, guest_wasm, http_bundle_wasm, root,
    runtime_options, temp_dir,
};

#[test]
fn the_guest_sees_only_the_model_directory() {
    let options = runtime_options(&default_model_dir(), &temp_dir("sandbox-fs"));
    let runtime = edge_llm_host::Runtime::new(options).expect("runtime");
    let mut instance = runtime.instantiate().expect("instance");
    let host_path = root().join("Cargo.toml");
    let outside = [
        "/etc/passwd",
        "/models/../etc/passwd",
        "/models/../../../../etc/hostname",
        "../Cargo.toml",
        "/proc/self/environ",
        host_path.to_str().expect("path"),
    ];
    for path in outside {
        let r = instance.open(
            path,
            &api::OpenOptions {
                backend: Some(api::Backend::Kernel),
                context_length: None,
            },
        );
        assert!(
            matches!(r, Err(HostError::Inference(api::Error::ModelNotFound(_)))),
            "{path}: {r:?}"
        );
    }
}

#[test]
fn the_components_cannot_open_sockets() {
    let built = [
        guest_wasm(),
        root().join("target/edge-llm-http.wasm"),
        http_bundle_wasm(),
    ];
    for wasm in built {
        let wit = component_wit(&wasm);
        assert!(
            !wit.contains("import wasi:sockets"),
            "{} imports sockets:\n{wit}",
            wasm.display()
        );
    }
}

/// A listener that answers each connection with `204 No Content` and counts them. It reads
/// the request head first: closing a socket with unread data resets the connection, and the
/// client would see a protocol error instead of the answer.
fn counting_listener() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = listener.local_addr().expect("address");
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            count.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(&conn);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = (&conn).write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    (addr, hits)
}

#[test]
fn edge_llm_serve_refuses_outgoing_http() {
    let egress = egress_wasm();
    let egress = egress.to_str().expect("path");
    // The control: the stock `wasmtime serve` lets the component's request out.
    let (to, hits) = counting_listener();
    let stock = Server::wasmtime(std::path::Path::new(egress), &[]);
    let r = request(stock.addr, "GET", &format!("/egress?to={to}"), b"");
    assert_eq!(String::from_utf8_lossy(&r.body), "sent: 204");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // `edge-llm serve` refuses it before it leaves the process.
    let (to, hits) = counting_listener();
    let server = Server::edge_llm(&["--component", egress], &temp_dir("sandbox-egress"));
    let r = request(server.addr, "GET", &format!("/egress?to={to}"), b"");
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 200, "{body}");
    assert_eq!(body, "refused: ErrorCode::HttpRequestDenied");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the request reached the listener"
    );
}

#[test]
fn the_guest_does_not_see_the_host_environment() {
    // If the front saw the server's environment, it would open the model with an 8-token
    // context and every chat would overflow.
    let server = Server::edge_llm_with_env(
        &[],
        &temp_dir("sandbox-env"),
        &[("EDGE_LLM_CTX_SIZE", "8"), ("EDGE_LLM_MAX_BODY_BYTES", "1")],
    );
    let models = request(server.addr, "GET", "/v1/models", b"").json();
    assert_eq!(models["data"][0]["context_length"], 8192);
    let chat = request(
        server.addr,
        "POST",
        "/v1/chat/completions",
        br#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#,
    );
    assert_eq!(chat.status, 200, "{}", String::from_utf8_lossy(&chat.body));
}
