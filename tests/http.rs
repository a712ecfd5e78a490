//! A small HTTP/1.1 client (enough for the servers under test: `Connection: close`, chunked
//! bodies, server-sent events) and server processes started and stopped by the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the body arrived whole (false if the connection ended mid-body).
    pub complete: bool,
}

impl Response {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of a server-sent-events body, in order (`[DONE]` included as a
    /// string).
    pub fn events(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.body)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string())))
            .collect()
    }

    /// The text of a streamed chat (`delta.content`) or completion (`text`), concatenated.
    pub fn streamed_text(&self) -> String {
        self.events()
            .iter()
            .filter_map(|e| e["choices"].get(0))
            .filter_map(|c| c["delta"]["content"].as_str().or(c["text"].as_str()))
            .collect()
    }
}

/// Sends a request and reads the whole response. A server that answers before reading all of
/// a large body (413) is fine: write errors are ignored and the response read anyway.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Response {
    request_with(addr, method, path, body, || {})
}

/// Like [`request`], calling `on_head` once the status line and headers have arrived (e.g. to
/// act while a stream is still running).
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    on_head: impl FnOnce(),
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .expect("read timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    on_head();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    // A body cut short (the server dropped the connection) ends the read: `complete` says so.
    let complete = if chunked {
        read_chunked(&mut reader, &mut body)
    } else {
        reader.read_to_end(&mut body).is_ok()
    };
    Response {
        status,
        headers,
        body,
        complete,
    }
}

/// De-chunks a body into `body`; false if it ends before its last chunk.
fn read_chunked(reader: &mut impl BufRead, body: &mut Vec<u8>) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
            return false;
        };
        if size == 0 {
            return true;
        }
        let start = body.len();
        body.resize(start + size, 0);
        if reader.read_exact(&mut body[start..]).is_err() {
            body.truncate(start);
            return false;
        }
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
    }
}

/// What a streamed (server-sent events) request saw, timed as the client sees it.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// Status code.
    pub status: u16,
    /// From sending the request to the first event with text.
    pub first_text: Option<Duration>,
    /// Events with text (one per token for the servers measured).
    pub text_events: usize,
    /// From sending the request to the end of the body.
    pub total: Duration,
    /// Whether the body ended with its last chunk and a `[DONE]` event.
    pub complete: bool,
}

/// POSTs `value` (a request with `"stream": true`) and reads its events as they arrive.
pub fn post_streamed(addr: SocketAddr, path: &str, value: &Value) -> Streamed {
    let started = Instant::now();
    let body = value.to_string();
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .expect("read timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
            break;
        }
        let l = line.to_ascii_lowercase();
        chunked |= l.starts_with("transfer-encoding") && l.contains("chunked");
    }
    let (mut first_text, mut text_events, mut done) = (None, 0, false);
    let mut pending = Vec::new();
    let mut on_bytes = |bytes: &[u8], pending: &mut Vec<u8>| {
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let event = String::from_utf8_lossy(&event);
            let Some(data) = event.trim().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            let c = &v["choices"][0];
            let text = c["delta"]["content"].as_str().or(c["text"].as_str());
            if text.is_some_and(|t| !t.is_empty()) {
                text_events += 1;
                first_text.get_or_insert_with(|| started.elapsed());
            }
        }
    };
    let mut whole = !chunked;
    if chunked {
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
                break;
            };
            if size == 0 {
                whole = true;
                break;
            }
            let mut chunk = vec![0; size];
            if reader.read_exact(&mut chunk).is_err() {
                break;
            }
            on_bytes(&chunk, &mut pending);
            line.clear();
            let _ = reader.read_line(&mut line);
        }
    } else {
        let mut rest = Vec::new();
        whole = reader.read_to_end(&mut rest).is_ok();
        on_bytes(&rest, &mut pending);
    }
    Streamed {
        status,
        first_text,
        text_events,
        total: started.elapsed(),
        complete: whole && done,
    }
}

/// POSTs a JSON value.
pub fn post_json(addr: SocketAddr, path: &str, value: &Value) -> Response {
    request(addr, "POST", path, value.to_string().as_bytes())
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `edge-llm serve --addr 127.0.0.1:0 EXTRA...`; waits for its "serving ... on" line.
    pub fn edge_llm(extra: &[&str], cache: &Path) -> Server {
        Self::edge_llm_with_env(extra, cache, &[])
    }

    /// Like [`Server::edge_llm`], with more variables in the server process's environment.
    pub fn edge_llm_with_env(extra: &[&str], cache: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(crate::edge_llm_bin());
        cmd.args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .env("EDGE_LLM_CACHE_DIR", cache)
            .env_remove("EDGE_LLM_MODEL")
            .envs(env.iter().copied());
        Self::start(cmd, None, "serving ")
    }

    /// The stock `wasmtime serve -S cli --allow-precompiled --addr 127.0.0.1:PORT EXTRA...`
    /// on a free port, serving the component [`crate::precompiled`]; waits for its "Serving
    /// HTTP on" line.
    pub fn wasmtime(component: &Path, extra: &[&str]) -> Server {
        let addr = free_port();
        let mut cmd = Command::new("wasmtime");
        cmd.args(["serve", "-S", "cli", "--allow-precompiled"])
            .args(["--addr", &addr.to_string()])
            .args(extra)
            .arg(crate::precompiled(component));
        Self::start(cmd, Some(addr), "Serving HTTP on")
    }

    /// llama.cpp's `llama-server` (the binary `bin`) on a free port with `model` and EXTRA
    /// arguments; waits until its `/health` answers 200 (it logs to stdout, dropped).
    pub fn llama_server(bin: &Path, model: &Path, extra: &[&str]) -> Server {
        let addr = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(extra);
        // No line to wait for: its `/health` says when it is ready.
        let server = Self::start(cmd, Some(addr), "");
        let until = Instant::now() + Duration::from_secs(180);
        while !TcpStream::connect(addr)
            .is_ok_and(|_| request(addr, "GET", "/health", b"").status == 200)
        {
            assert!(
                Instant::now() < until,
                "llama-server did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn start(mut cmd: Command, addr: Option<SocketAddr>, ready: &'static str) -> Server {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {cmd:?}: {e} (run `just tools` and `just build`)")
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(ready) {
                    let _ = tx.send(line.clone());
                }
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        if ready.is_empty() {
            let addr = addr.expect("an address when no ready line is awaited");
            return Server { child, addr, log };
        }
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "the server did not start: {}",
                    log.lock().expect("log lock")
                )
            });
        let addr = addr.unwrap_or_else(|| {
            let at = line.find("http://").expect("an address") + "http://".len();
            let end = line[at..].find([' ', '/']).map_or(line.len(), |e| at + e);
            line[at..end].parse().expect("a socket address")
        });
        Server { child, addr, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the client script `tests/clients/SCRIPT` against this server (`python3 SCRIPT
    /// http://ADDR ARGS...`), which prints one JSON value; fails with the script's stderr and
    /// the server's log when it does not succeed (`just tools` installs the Python clients).
    pub fn client(&self, script: &str, args: &[&std::ffi::OsStr]) -> Value {
        let out = Command::new("python3")
            .arg(crate::root().join("tests/clients").join(script))
            .arg(format!("http://{}", self.addr))
            .args(args)
            .output()
            .expect("running python3");
        assert!(
            out.status.success(),
            "{script} failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).expect("the script prints JSON")
    }

    /// Everything the server wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The log once it holds `needle`, or after `timeout` (the log is read from a pipe, and
    /// a response may reach the client before the line about it reaches the reader).
    pub fn log_with(&self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() >= until {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (a graceful shutdown).
    pub fn signal_terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal_terminate();
        self.child.wait().expect("waiting for the server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody is listening on (bound, then released).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}
