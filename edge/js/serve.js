// A `fetch(Request) -> Response` handler for a jco-transpiled `wasi:http/incoming-handler`
// component (`jco transpile --instantiation async --async-mode jspi`), for any JavaScript host
// with Web APIs and JSPI: workerd, Deno, a browser or a Web Worker.
//
// WASI itself comes from the preview2-shim's browser build, except the served side of
// `wasi:http/types`: the shim hands a component's response over only once its body is
// finished, where this module answers as soon as the component sets its response and streams
// the body through a `ReadableStream`. Each body flush is an async import (JSPI): the
// component is suspended for one macrotask, so the host sends the chunk as it is generated,
// and a reader that cancels (a client gone, a stop button) closes the stream the component
// writes to, which ends its generation.

import * as cli from "@bytecodealliance/preview2-shim/cli";
import * as clocks from "@bytecodealliance/preview2-shim/clocks";
import * as filesystem from "@bytecodealliance/preview2-shim/filesystem";
import * as http from "@bytecodealliance/preview2-shim/http";
import * as io from "@bytecodealliance/preview2-shim/io";
import * as random from "@bytecodealliance/preview2-shim/random";

const { Fields } = http.types;
const { inputStreamCreate, pollableCreate } = io;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const dispose = Symbol.dispose ?? Symbol.for("dispose");

/**
 * Resolves after one macrotask, so the host can send what the component has written. A
 * message is not clamped to 4 ms as nested timers are in browsers, but workerd sends a
 * response's chunks only on a timer turn.
 */
function nextTask(viaTimer) {
  if (!viaTimer && typeof MessageChannel === "function") {
    return new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        channel.port1.close();
        resolve();
      };
      channel.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** The request the component reads: method, path, headers and the whole (buffered) body. */
class IncomingRequest {
  #method;
  #url;
  #headers;
  #body;

  static _create(request, bytes) {
    const incoming = new IncomingRequest();
    incoming.#method = request.method.toLowerCase();
    incoming.#url = new URL(request.url);
    // The shim's Fields refuses hop-by-hop headers (`host`, `connection`, ...): those are
    // left out, as a wasi:http host does.
    incoming.#headers = new Fields();
    for (const [name, value] of request.headers) {
      try {
        incoming.#headers.append(name, encoder.encode(value));
      } catch {
        // a forbidden or malformed header
      }
    }
    incoming.#body = IncomingBody._create(bytes);
    return incoming;
  }
  method() {
    const known = ["get", "head", "post", "put", "delete", "connect", "options", "trace", "patch"];
    return known.includes(this.#method) ? { tag: this.#method } : { tag: "other", val: this.#method.toUpperCase() };
  }
  pathWithQuery() {
    return this.#url.pathname + this.#url.search;
  }
  scheme() {
    return this.#url.protocol === "https:" ? { tag: "HTTPS" } : { tag: "HTTP" };
  }
  authority() {
    return this.#url.host;
  }
  headers() {
    return this.#headers;
  }
  consume() {
    if (!this.#body) throw undefined; // `result<incoming-body>`'s error case
    const body = this.#body;
    this.#body = null;
    return body;
  }
  [dispose]() {}
}

class IncomingBody {
  #stream;

  static _create(bytes) {
    const body = new IncomingBody();
    let offset = 0;
    const read = (len) => {
      if (offset >= bytes.byteLength) throw { tag: "closed" };
      const end = Math.min(bytes.byteLength, offset + Number(len));
      const chunk = bytes.slice(offset, end);
      offset = end;
      return chunk;
    };
    body.#stream = inputStreamCreate({ read, blockingRead: read, subscribe: () => pollableCreate() });
    return body;
  }
  stream() {
    if (!this.#stream) throw undefined;
    const stream = this.#stream;
    this.#stream = null;
    return stream;
  }
  static finish() {
    return new http.types.FutureTrailers();
  }
  [dispose]() {}
}

/**
 * The response body's output stream: the shim's `OutputStream` (the class jco checks handles
 * against), whose `blockingFlush` returns the handler's promise, where the shim's drops it. That
 * promise is what suspends the component (jco's async import) while the host sends the chunk.
 */
class BodyStream extends io.streams.OutputStream {
  static create(handler) {
    const stream = new BodyStream();
    stream.open = true;
    stream.handler = handler;
    return stream;
  }
  blockingFlush() {
    if (!this.open) throw { tag: "closed" };
    return this.handler.blockingFlush();
  }
}

/** The response body: each write becomes a chunk of a `ReadableStream`. */
class OutgoingBody {
  static current = null;
  #controller = null;
  #closed = false;
  #written = false;
  #yieldViaTimer;
  readable;

  constructor(yieldViaTimer) {
    this.#yieldViaTimer = yieldViaTimer;
    this.readable = new ReadableStream({
      start: (controller) => {
        this.#controller = controller;
      },
      cancel: () => {
        this.#closed = true;
      },
    });
  }
  write() {
    if (this.#written) throw undefined;
    this.#written = true;
    const body = this;
    return BodyStream.create({
      checkWrite() {
        if (body.#closed) throw { tag: "closed" };
        return 1n << 20n;
      },
      write(bytes) {
        if (body.#closed) throw { tag: "closed" };
        body.#controller.enqueue(new Uint8Array(bytes));
      },
      blockingFlush() {
        if (body.#closed) throw { tag: "closed" };
        return nextTask(body.#yieldViaTimer);
      },
      subscribe: () => pollableCreate(),
    });
  }
  static finish(body, trailers) {
    if (trailers) throw { tag: "internal-error", val: "trailers are not supported" };
    if (!body.#closed) {
      body.#closed = true;
      body.#controller.close();
    }
  }
  /** The body being written when the component traps: its reader sees an error, not a hang. */
  static _abortCurrent(error) {
    const body = OutgoingBody.current;
    OutgoingBody.current = null;
    if (body && !body.#closed) {
      body.#closed = true;
      body.#controller.error(error);
    }
  }
  [dispose]() {
    // Dropped without `finish`: the response is cut short.
    if (!this.#closed) {
      this.#closed = true;
      this.#controller.error(new Error("the component dropped the response body unfinished"));
    }
  }
}

let yieldViaTimer = false;

class OutgoingResponse {
  #status = 200;
  #headers;
  #body = null;

  constructor(headers) {
    this.#headers = headers;
  }
  statusCode() {
    return this.#status;
  }
  setStatusCode(status) {
    if (!Number.isInteger(status) || status < 100 || status > 999) throw undefined;
    this.#status = status;
  }
  headers() {
    return this.#headers;
  }
  body() {
    if (this.#body) throw undefined;
    this.#body = new OutgoingBody(yieldViaTimer);
    OutgoingBody.current = this.#body;
    return this.#body;
  }
  static _toResponse(response) {
    const headers = new Headers();
    for (const [name, value] of response.#headers.entries()) headers.append(name, decoder.decode(value));
    const nullBody = [101, 204, 205, 304].includes(response.#status);
    const body = response.#body && !nullBody ? response.#body.readable : null;
    return new Response(body, { status: response.#status, headers });
  }
  [dispose]() {}
}

class ResponseOutparam {
  #settle;

  static _create(settle) {
    const out = new ResponseOutparam();
    out.#settle = settle;
    return out;
  }
  static set(out, result) {
    if (!out.#settle) throw new Error("the response was already set");
    const settle = out.#settle;
    out.#settle = null;
    settle(result);
  }
  [dispose]() {}
}

/** The request's body, or its first `limit` bytes when it is longer. */
async function readBody(request, limit) {
  if (!request.body) return new Uint8Array();
  const chunks = [];
  let length = 0;
  const reader = request.body.getReader();
  while (length < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.byteLength;
  }
  if (length >= limit) await reader.cancel();
  const bytes = new Uint8Array(Math.min(length, limit));
  let offset = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, bytes.byteLength - offset);
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return bytes;
}

/** The import object for the transpiled component. `env`: its environment variables. */
export function wasiImports(env = {}) {
  return {
    "wasi:cli/environment": cli.createCli({ environment: env }).environment,
    "wasi:cli/exit": cli.exit,
    "wasi:cli/stderr": cli.stderr,
    "wasi:cli/stdin": cli.stdin,
    "wasi:cli/stdout": cli.stdout,
    "wasi:cli/terminal-input": cli.terminalInput,
    "wasi:cli/terminal-output": cli.terminalOutput,
    "wasi:cli/terminal-stderr": cli.terminalStderr,
    "wasi:cli/terminal-stdin": cli.terminalStdin,
    "wasi:cli/terminal-stdout": cli.terminalStdout,
    "wasi:clocks/monotonic-clock": clocks.monotonicClock,
    "wasi:clocks/wall-clock": clocks.wallClock,
    "wasi:filesystem/preopens": filesystem.preopens,
    "wasi:filesystem/types": filesystem.types,
    "wasi:http/types": {
      ...http.types,
      IncomingRequest,
      IncomingBody,
      OutgoingBody,
      OutgoingResponse,
      ResponseOutparam,
    },
    "wasi:io/error": io.error,
    "wasi:io/poll": io.poll,
    "wasi:io/streams": io.streams,
    "wasi:random/insecure-seed": random.insecureSeed,
    "wasi:random/random": random.random,
  };
}

/**
 * Instantiates the component and returns its fetch handler.
 * `instantiate`: the transpiled module's export; `getCoreModule(name)`: a compiled
 * `WebAssembly.Module` (or a promise of one) for each `*.core*.wasm` file it names.
 * `yieldTo`: "message" (a MessageChannel turn) or "timer" (`setTimeout(0)`) between chunks.
 */
export async function serveComponent({ instantiate, getCoreModule, env = {}, yieldTo = "message" }) {
  yieldViaTimer = yieldTo === "timer";
  // The component refuses bodies over its limit with 413; it needs to see no more than one
  // byte past it to do so.
  const bodyLimit = (Number(env.EDGE_LLM_MAX_BODY_BYTES) || 1 << 20) + 1;
  const start = async () => (await instantiate(getCoreModule, wasiImports(env))).incomingHandler;
  let handler = await start();
  // One request at a time: the component's instance is not re-entrant.
  let queue = Promise.resolve();

  async function handle(request) {
    const bytes = await readBody(request, bodyLimit);
    // A trap (out of memory, ...) leaves the instance unusable: the next request gets a new one.
    handler ??= await start();
    let settle;
    const result = new Promise((resolve) => (settle = resolve));
    const out = ResponseOutparam._create(settle);
    const done = Promise.resolve(handler.handle(IncomingRequest._create(request, bytes), out)).then(
      () => null,
      (error) => {
        handler = null;
        OutgoingBody._abortCurrent(error);
        return error;
      },
    );
    // The response is there once the component sets it (it may still be writing the body),
    // or when `handle` returns or traps without setting one.
    const finished = done.then((error) => ({
      tag: "err",
      val: error ? `the component trapped: ${error}` : "the component set no response",
    }));
    const outcome = await Promise.race([result, finished]);
    const response =
      outcome.tag === "ok"
        ? OutgoingResponse._toResponse(outcome.val)
        : new Response(JSON.stringify({ error: { message: typeof outcome.val === "string" ? outcome.val : JSON.stringify(outcome.val), type: "server_error" } }) + "\n", {
            status: 500,
            headers: { "content-type": "application/json" },
          });
    return { response, done };
  }

  return {
    /** Answers one request; requests queue while one is being generated. */
    fetch(request) {
      const turn = queue.then(() => handle(request));
      queue = turn.then(({ done }) => done, () => {});
      return turn.then(({ response }) => response);
    },
  };
}
