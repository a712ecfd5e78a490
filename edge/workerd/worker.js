// The Cloudflare Workers entry point (workerd): edge-llm's OpenAI-compatible HTTP component,
// instantiated on the first request from the core modules the config lists as `wasm` modules
// (workerd compiles them when it loads the worker; compiling at run time is refused).
// Text bindings become the component's environment (EDGE_LLM_CTX_SIZE, ...).

import { instantiate } from "edge-llm-component";
import modules from "edge-llm-modules";
import { serveComponent } from "../js/serve.js";

let served = null;

export default {
  async fetch(request, env) {
    if (!served) {
      const vars = Object.fromEntries(Object.entries(env).filter(([, v]) => typeof v === "string"));
      served = serveComponent({ instantiate, getCoreModule: (name) => modules[name], env: vars, yieldTo: "timer" });
      served.catch(() => (served = null));
    }
    try {
      return await (await served).fetch(request);
    } catch (error) {
      const message = error instanceof Error ? error.stack : JSON.stringify(error);
      console.error("edge-llm:", message);
      return new Response(JSON.stringify({ error: { message: String(message), type: "server_error" } }) + "\n", {
        status: 500,
        headers: { "content-type": "application/json" },
      });
    }
  },
};
