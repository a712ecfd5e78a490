// The page's Web Worker: fetches the component's core modules once (then from the Cache API),
// reporting progress, compiles and instantiates them, and answers the page's OpenAI requests
// with the component's own HTTP front (edge/js/serve.js), streaming the response back.
//
// Messages in:  {type: "request", id, path, body}   {type: "stop", id}
// Messages out: {type: "progress", loaded, total}   {type: "ready", ms, fromCache}
//               {type: "status", id, status}   {type: "data", id, bytes}   {type: "end", id, error?}

import { instantiate } from "edge-llm-component";
import { serveComponent } from "../js/serve.js";

const CACHE = "edge-llm-component";

/** The module's bytes from the cache, or from the network (then cached), counting progress. */
async function download(cache, { name, size, sha256 }, onBytes) {
  const url = new URL(`${name}?sha256=${sha256}`, self.location.href).href;
  const cached = await cache.match(url);
  if (cached) {
    const bytes = await cached.arrayBuffer();
    onBytes(bytes.byteLength);
    return { bytes, fromCache: true };
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
  const reader = response.body.getReader();
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes.set(value, offset);
    offset += value.byteLength;
    onBytes(value.byteLength);
  }
  if (offset !== size) throw new Error(`${name}: got ${offset} bytes of ${size}`);
  await cache.put(url, new Response(bytes, { headers: { "content-type": "application/wasm" } }));
  return { bytes, fromCache: false };
}

async function load() {
  const started = performance.now();
  const list = await (await fetch("modules.json", { cache: "no-cache" })).json();
  const total = list.reduce((sum, m) => sum + m.size, 0);
  let loaded = 0;
  const cache = await caches.open(CACHE);
  // Entries of older builds (another sha256) are dropped.
  const current = new Set(list.map((m) => new URL(`${m.name}?sha256=${m.sha256}`, self.location.href).href));
  for (const request of await cache.keys()) if (!current.has(request.url)) await cache.delete(request);
  let fromCache = true;
  const modules = {};
  await Promise.all(
    list.map(async (m) => {
      const got = await download(cache, m, (n) => {
        loaded += n;
        postMessage({ type: "progress", loaded, total });
      });
      fromCache &&= got.fromCache;
      modules[m.name] = await WebAssembly.compile(got.bytes);
    }),
  );
  const served = await serveComponent({ instantiate, getCoreModule: (name) => modules[name] });
  postMessage({ type: "ready", ms: Math.round(performance.now() - started), fromCache });
  return served;
}

const ready = load().catch((error) => {
  postMessage({ type: "failed", error: String(error) });
  throw error;
});
const readers = new Map();

async function request({ id, path, body }) {
  try {
    const served = await ready;
    const response = await served.fetch(
      new Request(new URL(path, self.location.href), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }),
    );
    postMessage({ type: "status", id, status: response.status });
    const reader = response.body.getReader();
    readers.set(id, reader);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      postMessage({ type: "data", id, bytes: value }, [value.buffer]);
    }
    postMessage({ type: "end", id });
  } catch (error) {
    postMessage({ type: "end", id, error: String(error) });
  } finally {
    readers.delete(id);
  }
}

onmessage = ({ data }) => {
  if (data.type === "request") request(data);
  // Cancelling the body closes the stream the component writes to: it stops generating.
  if (data.type === "stop") readers.get(data.id)?.cancel();
};
