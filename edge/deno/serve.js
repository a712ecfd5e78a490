// edge-llm's OpenAI-compatible HTTP component under Deno.serve, through jco:
//   deno run --allow-read=. --allow-net --allow-env serve.js [--port 8000] [--hostname 127.0.0.1]
// The core modules are read from this file's directory and compiled before serving.
// Environment variables named EDGE_LLM_* become the component's environment.

import { instantiate } from "edge-llm-component";
import { serveComponent } from "../js/serve.js";

const arg = (flag, fallback) => {
  const i = Deno.args.indexOf(flag);
  return i >= 0 ? Deno.args[i + 1] : fallback;
};
const hostname = arg("--hostname", "127.0.0.1");
const port = Number(arg("--port", "8000"));

// A failure inside a request's generation must not end the server.
globalThis.addEventListener("unhandledrejection", (event) => {
  console.error("edge-llm:", event.reason);
  event.preventDefault();
});

const dir = new URL(".", import.meta.url);
const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".wasm"));
const modules = Object.fromEntries(
  await Promise.all(names.map(async (n) => [n, await WebAssembly.compile(await Deno.readFile(new URL(n, dir)))])),
);
const env = Object.fromEntries(Object.entries(Deno.env.toObject()).filter(([k]) => k.startsWith("EDGE_LLM_")));
const started = performance.now();
const served = await serveComponent({ instantiate, getCoreModule: (name) => modules[name], env });
console.error(`edge-llm: component ready in ${Math.round(performance.now() - started)} ms`);
Deno.serve({ hostname, port, onListen: ({ hostname, port }) => console.error(`edge-llm: listening on http://${hostname}:${port}`) }, (request) => served.fetch(request));
