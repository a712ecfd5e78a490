// Runs edge-llm's HTTP component on each JavaScript host for one chat prompt (greedy) and
// prints one JSON line per host (`just edge-hosts`, `just test-edge`):
//   {"host", "text", "equal", "ms", "load_ms", "ttft_ms", "decode_tokens_per_s", "chunks",
//    "chunk_arrivals", "peak_rss_mb"}
// `equal`: the text equals `edge-llm run --chat --temperature 0 --max-tokens N` for the prompt.
// `chunk_arrivals`: how many distinct moments the client received content chunks at (all at
// once would mean a buffered, not streamed, answer).
//
//   node hosts.mjs --edge-llm BIN --dir target/edge [--hosts workerd,workerd-128MiB,chromium,deno]
//                  [--prompt TEXT] [--max-tokens N] [--screenshot FILE] [--check]
// With --check: also fails (exit 1) unless every answer is equal and streamed, the page's
// second load comes from the browser's cache, and the page's stop button ends a generation;
// prints "N passed, N failed".

import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { serveStatic } from "./web/static.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const opts = { hosts: "workerd,workerd-128MiB,chromium,deno", prompt: "What is the capital of France?", "max-tokens": "32" };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const key = argv[i].replace(/^--/, "");
  opts[key] = key === "check" ? true : argv[++i];
}
if (!opts["edge-llm"] || !opts.dir) {
  console.error("usage: node hosts.mjs --edge-llm BIN --dir OUT [--hosts LIST] [--prompt TEXT] [--max-tokens N] [--screenshot FILE] [--check]");
  process.exit(2);
}
const dir = resolve(opts.dir);
const prompt = opts.prompt;
const maxTokens = Number(opts["max-tokens"]);
const bin = (path) => join(here, "node_modules", path);
const WORKERD = bin("workerd/bin/workerd");
const DENO = bin("deno/deno");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

const expected = JSON.parse(
  execFileSync(opts["edge-llm"], ["run", "--chat", "--temperature", "0", "--max-tokens", String(maxTokens), "--json", prompt], {
    encoding: "utf8",
  }),
).text;

const results = [];
const failures = [];
let passed = 0;
const check = (ok, what) => {
  if (ok) passed += 1;
  else failures.push(what);
  return ok;
};

function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Peak resident memory of a process, in MB (VmHWM). */
function peakRssMb(pid) {
  try {
    const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
    return Math.round(kb / 1024);
  } catch {
    return null;
  }
}

/** Starts a server process and waits until its /health answers; returns it and how long that took. */
async function startServer(command, args, cwd, base) {
  const started = performance.now();
  const env = { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((ok) => child.once("exit", (code) => ok(code)));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${command} exited ${child.exitCode}: ${stderr.slice(-2000)}`);
    try {
      const r = await fetch(`${base}/health`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (performance.now() - started > 120_000) throw new Error(`${command} not ready in 120 s: ${stderr.slice(-2000)}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
  };
  return { child, loadMs: performance.now() - started, stop, stderr: () => stderr };
}

/** Parses server-sent events from a byte stream; calls onDelta(text) for each content chunk. */
async function readEvents(body, onDelta) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const delta = JSON.parse(event.slice(6)).choices?.[0]?.delta?.content;
      if (delta) onDelta(delta);
    }
  }
}

/** One streamed greedy chat request: text, timings and when its chunks arrived. */
async function streamChat(base) {
  const started = performance.now();
  const response = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: prompt }], max_tokens: maxTokens, temperature: 0, stream: true }),
  });
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  let text = "";
  const arrivals = [];
  await readEvents(response.body, (delta) => {
    text += delta;
    arrivals.push(performance.now() - started);
  });
  const ms = performance.now() - started;
  const decodeMs = arrivals.length > 1 ? arrivals.at(-1) - arrivals[0] : 0;
  return {
    text,
    ms,
    ttftMs: arrivals[0] ?? null,
    decodeTokS: decodeMs > 0 ? ((arrivals.length - 1) * 1000) / decodeMs : null,
    chunks: arrivals.length,
    chunkArrivals: new Set(arrivals.map((t) => Math.round(t))).size,
  };
}

function report(host, run, loadMs, rss) {
  const line = {
    host,
    text: run.text,
    equal: run.text === expected,
    ms: Math.round(run.ms),
    load_ms: Math.round(loadMs),
    ttft_ms: run.ttftMs === null ? null : Math.round(run.ttftMs),
    decode_tokens_per_s: run.decodeTokS === null ? null : Number(run.decodeTokS.toFixed(1)),
    chunks: run.chunks,
    chunk_arrivals: run.chunkArrivals,
    peak_rss_mb: rss,
  };
  console.log(JSON.stringify(line));
  results.push(line);
  check(line.equal, `${host}: ${JSON.stringify(run.text)} != edge-llm run's ${JSON.stringify(expected)}`);
  check(run.chunks > 1 && run.chunkArrivals > run.chunks / 2, `${host}: the ${run.chunks} chunks arrived at only ${run.chunkArrivals} moments (buffered, not streamed)`);
}

async function serverHost(host, command, args, cwd) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = await startServer(command, args(port), cwd, base);
  try {
    // The first request instantiates the component (workerd instantiates lazily).
    const run = await streamChat(base);
    report(host, run, server.loadMs, peakRssMb(server.child.pid));
    if (opts.check) {
      // Bad input gets the component's own 4xx, through the host's glue.
      const bad = await fetch(`${base}/v1/chat/completions`, { method: "POST", body: "{bad" });
      const error = (await bad.json()).error?.message ?? "";
      check(bad.status === 400 && error.includes("not valid JSON"), `${host}: invalid JSON got ${bad.status} ${error}`);
    }
  } catch (error) {
    check(false, `${host}: ${error.message}\n${server.stderr().slice(-2000)}`);
  } finally {
    await server.stop();
  }
}

async function chromiumHost() {
  const { chromium } = await import("playwright-core");
  const site = await serveStatic(join(dir, "web"));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const open = async () => {
      const started = performance.now();
      await page.goto(site.url);
      await page.waitForFunction(() => window.edgeLLM?.ready || window.edgeLLM?.error, null, { timeout: 180_000 });
      const state = await page.evaluate(() => window.edgeLLM);
      if (!state.ready) throw new Error(`the page failed to load the component: ${state.error} ${errors.join("; ")}`);
      return { ...state, wallMs: performance.now() - started };
    };
    const first = await open();
    const turn = async (text, temperature, tokens) => {
      await page.fill("#prompt", text);
      await page.fill("#temperature", String(temperature));
      await page.fill("#max-tokens", String(tokens));
      const n = await page.evaluate(() => window.edgeLLM.turns.length);
      await page.click("#send");
      await page.waitForFunction((n) => window.edgeLLM.turns.length > n, n, { timeout: 180_000 });
      return page.evaluate(() => window.edgeLLM.turns.at(-1));
    };
    const answer = await turn(prompt, 0, maxTokens);
    if (answer.error) throw new Error(`the page's request failed: ${answer.error}`);
    const rss = Math.max(...rendererPids().map(peakRssMb).filter((x) => x !== null));
    report(
      "chromium",
      { text: answer.text, ms: answer.ms, ttftMs: answer.ttftMs, decodeTokS: answer.decodeTokensPerS, chunks: answer.chunks, chunkArrivals: answer.chunkArrivals },
      first.loadMs,
      rss,
    );
    if (opts.screenshot) await page.screenshot({ path: resolve(opts.screenshot), fullPage: true });
    // A reload finds the modules in the Cache API: none is downloaded again.
    const before = [...site.requests].filter(([p]) => p.endsWith(".wasm")).reduce((s, [, n]) => s + n, 0);
    const second = await open();
    const after = [...site.requests].filter(([p]) => p.endsWith(".wasm")).reduce((s, [, n]) => s + n, 0);
    console.log(JSON.stringify({ host: "chromium", reload_ms: second.loadMs, reload_from_cache: second.fromCache, modules_fetched_again: after - before }));
    if (opts.check) {
      check(first.fromCache === false && second.fromCache === true && after === before,
        `chromium: the reload fetched ${after - before} module(s) again (cache: first ${first.fromCache}, second ${second.fromCache})`);
      check(answer.finishReason === "length", `chromium: the greedy answer ended with ${answer.finishReason}, not length`);
      // Stop: a long sampled answer, stopped at its first chunk, ends with no finish reason
      // (the component's stream was closed before it finished) well before its limit.
      await page.fill("#prompt", "Write a long story about a dragon.");
      await page.fill("#temperature", "0.8");
      await page.fill("#max-tokens", "400");
      const n = await page.evaluate(() => window.edgeLLM.turns.length);
      await page.click("#send");
      await page.waitForFunction(() => document.querySelector(".assistant:last-of-type")?.textContent.length > 0, null, { timeout: 60_000 });
      await page.click("#stop");
      await page.waitForFunction((n) => window.edgeLLM.turns.length > n, n, { timeout: 60_000 });
      const stopped = await page.evaluate(() => window.edgeLLM.turns.at(-1));
      check(stopped.finishReason === null && stopped.chunks > 0 && stopped.chunks < 100,
        `chromium: after stop, ${stopped.chunks} chunks of up to 400, finish reason ${stopped.finishReason}`);
      // The page still answers after a stop, in a new chat.
      await page.click("#clear");
      const again = await turn(prompt, 0, maxTokens);
      check(again.text === expected, `chromium: after a stop the answer was ${JSON.stringify(again.text)}`);
    }
    check(errors.length === 0, `chromium: page errors: ${errors.join("; ")}`);
  } finally {
    await browser.close();
    site.server.close();
  }
}

/** The processes this script started (the browser's: renderers hold the page and its worker). */
function rendererPids() {
  const root = process.pid;
  const out = execFileSync("ps", ["-e", "-o", "pid=,ppid="], { encoding: "utf8" });
  const children = new Map();
  for (const line of out.trim().split("\n")) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(pid);
  }
  const all = [];
  const walk = (p) => (children.get(p) ?? []).forEach((c) => (all.push(c), walk(c)));
  walk(root);
  return all;
}

for (const host of opts.hosts.split(",")) {
  try {
    switch (host) {
      case "workerd":
        await serverHost(host, WORKERD, (port) => ["serve", "config.capnp", "--socket-addr", `http=127.0.0.1:${port}`], join(dir, "workerd"));
        break;
      case "workerd-128MiB":
        await serverHost(host, WORKERD, (port) => ["serve", "config-128mib.capnp", "--socket-addr", `http=127.0.0.1:${port}`], join(dir, "workerd"));
        break;
      case "deno":
        await serverHost(host, DENO, (port) => ["run", "--allow-read=.", "--allow-net=127.0.0.1", "--allow-env", "serve.js", "--port", String(port)], join(dir, "deno"));
        break;
      case "chromium":
        await chromiumHost();
        break;
      default:
        check(false, `unknown host ${host}`);
    }
  } catch (error) {
    check(false, `${host}: ${error.stack}`);
  }
}

for (const f of failures) console.error(`FAILED ${f}`);
if (opts.check) console.log(`edge-hosts: ${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
