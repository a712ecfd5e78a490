// Builds edge-llm's HTTP component for the JavaScript hosts (`just workerd`, `just deno`,
// `just web`): node build.mjs COMPONENT.wasm OUT_DIR
//
//   OUT/component/  jco's output: edge-llm.js and its core modules (*.wasm)
//   OUT/workerd/    worker.js, the core modules, config.capnp (no memory cap) and
//                   config-128mib.capnp (Cloudflare's 128 MiB per isolate)
//   OUT/deno/       serve.js (Deno.serve) and the core modules
//   OUT/web/        the chat page, its Web Worker and the core modules
//
// jco transpiles with `--instantiation async` (the host compiles the core modules, as workerd
// requires: it refuses to compile wasm at run time) and JSPI for the response body's flush
// (edge/js/serve.js). The few tiny modules jco builds inline are written out as files too.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const [componentArg, outArg] = process.argv.slice(2);
if (!componentArg || !outArg) {
  console.error("usage: node build.mjs COMPONENT.wasm OUT_DIR");
  process.exit(2);
}
const component = resolve(componentArg);
const out = resolve(outArg);
const name = "edge-llm";

// 1. Transpile.
const transpiled = join(out, "component");
rmSync(transpiled, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    join(here, "node_modules/@bytecodealliance/jco/dist/jco.js"),
    "transpile", component, "-o", transpiled, "--name", name, "--quiet", "--no-typescript",
    "--instantiation", "async",
    "--async-mode", "jspi",
    "--async-imports", "wasi:io/streams#[method]output-stream.blocking-flush",
    "--async-exports", "wasi:http/incoming-handler#handle",
  ],
  { stdio: "inherit" },
);

// 2. jco compiles a few tiny helper modules from inline bytes: write them out as files that the
// host hands over like the others.
const jsPath = join(transpiled, `${name}.js`);
let js = readFileSync(jsPath, "utf8");
let inline = 0;
js = js.replace(/new WebAssembly\.Module\(new Uint8Array\(\[([0-9a-fx,\s]*)\]\)\)/g, (_, bytes) => {
  const file = `${name}.inline${++inline}.wasm`;
  const values = bytes.split(",").map((b) => b.trim()).filter(Boolean).map(Number);
  writeFileSync(join(transpiled, file), Uint8Array.from(values));
  return `getCoreModule(${JSON.stringify(file)})`;
});
if (/new WebAssembly\.Module\(/.test(js)) {
  throw new Error(`${jsPath} still compiles wasm at run time`);
}
writeFileSync(jsPath, js);
const modules = readdirSync(transpiled).filter((f) => f.endsWith(".wasm")).sort();

const bundle = (entry, outfile, extra = {}) =>
  esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    logLevel: "warning",
    alias: { "edge-llm-component": jsPath },
    // jco's fallback loader for Node.js; never reached, the hosts pass their modules in.
    external: ["node:*", ...(extra.external ?? [])],
    ...extra,
  });
const copyModules = (dir) => {
  for (const m of modules) copyFileSync(join(transpiled, m), join(dir, m));
};

// 3. workerd: every core module is a `wasm` module of the worker.
const workerd = join(out, "workerd");
rmSync(workerd, { recursive: true, force: true });
mkdirSync(workerd, { recursive: true });
const moduleTable = modules
  .map((m) => `import m${modules.indexOf(m)} from ${JSON.stringify(m)};`)
  .join("\n");
writeFileSync(
  join(workerd, "modules.js"),
  `${moduleTable}\nexport default { ${modules.map((m, i) => `${JSON.stringify(m)}: m${i}`).join(", ")} };\n`,
);
await bundle(join(here, "workerd/worker.js"), join(workerd, "worker.js"), {
  alias: { "edge-llm-component": jsPath, "edge-llm-modules": join(workerd, "modules.js") },
  external: ["node:*", "*.wasm"],
});
rmSync(join(workerd, "modules.js"));
copyModules(workerd);
const capnp = (label, flags, bindings) => `# workerd config for edge-llm's HTTP component (${label}), written by edge/build.mjs:
#   workerd serve ${"config" + (flags.length ? "-128mib" : "")}.capnp --socket-addr http=127.0.0.1:8787
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [(name = "main", worker = .worker)],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "main")],
  v8Flags = [${flags.map((f) => JSON.stringify(f)).join(", ")}],
);

const worker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
${modules.map((m) => `    (name = ${JSON.stringify(m)}, wasm = embed ${JSON.stringify(m)}),`).join("\n")}
  ],
  compatibilityDate = "2026-11-01",
  bindings = [${bindings.map(([k, v]) => `(name = ${JSON.stringify(k)}, text = ${JSON.stringify(v)})`).join(", ")}],
);
`;
writeFileSync(join(workerd, "config.capnp"), capnp("no memory cap", [], []));
// Cloudflare caps an isolate at 128 MiB; a linear memory of 2048 pages is that much.
const ctx128 = process.env.EDGE_LLM_WORKERD_128MIB_CTX ?? "512";
writeFileSync(
  join(workerd, "config-128mib.capnp"),
  capnp("128 MiB linear memory", ["--wasm-max-mem-pages=2048"], [["EDGE_LLM_CTX_SIZE", ctx128]]),
);

// 4. Deno.
const deno = join(out, "deno");
rmSync(deno, { recursive: true, force: true });
mkdirSync(deno, { recursive: true });
await bundle(join(here, "deno/serve.js"), join(deno, "serve.js"));
copyModules(deno);

// 5. The web page.
const web = join(out, "web");
rmSync(web, { recursive: true, force: true });
mkdirSync(web, { recursive: true });
await bundle(join(here, "web/worker.js"), join(web, "worker.js"));
for (const f of ["index.html", "app.js", "style.css"]) copyFileSync(join(here, "web", f), join(web, f));
copyModules(web);
// What the page's worker fetches: each module's size (for the progress bar) and sha256 (the
// cache key, so a rebuilt component is fetched again).
const listed = modules.map((m) => {
  const bytes = readFileSync(join(transpiled, m));
  return { name: m, size: bytes.byteLength, sha256: createHash("sha256").update(bytes).digest("hex") };
});
writeFileSync(join(web, "modules.json"), JSON.stringify(listed, null, 1) + "\n");
console.log(`edge: ${modules.length} core modules; ${out}/{workerd,deno,web}`);
