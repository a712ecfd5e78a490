// A small static file server for the chat page (`just web`): node static.mjs DIR [ADDR]
// Also used by the tests, which read how often each file was requested.

import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
};

/** Serves DIR on HOST:PORT (0: any free port); resolves with {server, url, requests}. */
export function serveStatic(dir, host = "127.0.0.1", port = 0) {
  const root = resolve(dir);
  const requests = new Map();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const file = normalize(join(root, path === "/" ? "index.html" : path));
    requests.set(path, (requests.get(path) ?? 0) + 1);
    let size;
    try {
      if (!file.startsWith(root + "/")) throw new Error("outside");
      size = statSync(file).size;
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "content-length": size,
      "cache-control": "no-cache",
    });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, () => {
      const { port } = server.address();
      ok({ server, url: `http://${host}:${port}/`, requests });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, addr = "127.0.0.1:8080"] = process.argv.slice(2);
  if (!dir) {
    console.error("usage: node static.mjs DIR [HOST:PORT]");
    process.exit(2);
  }
  const [host, port] = addr.split(":");
  const { url } = await serveStatic(dir, host, Number(port));
  console.log(`edge-llm chat page: ${url}`);
}
