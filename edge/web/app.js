// The chat page: a Web Worker runs the component (worker.js); this file only draws. Each turn
// is an OpenAI chat request with `stream: true`, answered by the component's own HTTP front,
// whose server-sent events are parsed here as they arrive.

const $ = (id) => document.getElementById(id);
const worker = new Worker("worker.js", { type: "module" });
const history = [];
let nextId = 1;
let current = null; // the request being answered: {id, onData, onEnd}

// What a test (or a curious reader) can inspect.
const state = { ready: false, loadMs: null, fromCache: null, turns: [] };
window.edgeLLM = state;

worker.onmessage = ({ data }) => {
  switch (data.type) {
    case "progress": {
      $("progress").value = data.loaded / data.total;
      $("progress-text").textContent = `${(data.loaded / 1e6).toFixed(1)} / ${(data.total / 1e6).toFixed(1)} MB`;
      break;
    }
    case "ready": {
      Object.assign(state, { ready: true, loadMs: data.ms, fromCache: data.fromCache });
      $("loading").classList.add("done");
      $("send").disabled = false;
      $("stats").textContent = `Model ready in ${(data.ms / 1000).toFixed(1)} s${data.fromCache ? " (from the browser's cache)" : ""}.`;
      break;
    }
    case "failed": {
      state.error = data.error;
      $("progress-text").textContent = `failed: ${data.error}`;
      break;
    }
    case "status":
    case "data":
    case "end":
      if (current && current.id === data.id) current.on(data);
      break;
  }
};

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  div.textContent = text;
  $("log").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

/** Sends one chat turn; resolves with the assistant's text once the stream ends or is stopped. */
function ask(messages, { temperature, maxTokens }) {
  return new Promise((resolve) => {
    const id = nextId++;
    const decoder = new TextDecoder();
    const out = bubble("assistant", "");
    const started = performance.now();
    let buffer = "";
    let text = "";
    let tokens = 0;
    let firstAt = null;
    let finishReason = null; // "stop" or "length"; none when the stop button cut the answer
    const arrivals = new Set(); // distinct moments chunks arrived at: streamed, not buffered
    let failed = null;
    current = {
      id,
      on(msg) {
        if (msg.type === "status" && msg.status !== 200) failed = `HTTP ${msg.status}`;
        if (msg.type === "data") {
          buffer += decoder.decode(msg.bytes, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const event = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            if (failed) {
              failed += ` ${event}`;
              continue;
            }
            if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
            const choice = JSON.parse(event.slice(6)).choices?.[0];
            finishReason = choice?.finish_reason ?? finishReason;
            const delta = choice?.delta?.content;
            if (delta) {
              firstAt ??= performance.now();
              arrivals.add(Math.round(performance.now()));
              tokens += 1;
              text += delta;
              out.textContent = text;
            }
          }
          if (failed && buffer) failed += ` ${buffer}`;
        }
        if (msg.type === "end") {
          current = null;
          const ms = performance.now() - started;
          const error = failed ?? msg.error ?? null;
          if (error) {
            out.classList.add("error");
            out.textContent = `${text}\n[${error}]`;
          } else if (!finishReason) {
            out.textContent = `${text} [stopped]`;
          }
          const decodeMs = firstAt ? performance.now() - firstAt : 0;
          const rate = tokens > 1 && decodeMs > 0 ? ((tokens - 1) * 1000) / decodeMs : 0;
          $("stats").textContent = `${tokens} chunks in ${(ms / 1000).toFixed(2)} s` + (rate ? `, ${rate.toFixed(1)} tokens/s after the first` : "");
          const turn = { text, chunks: tokens, chunkArrivals: arrivals.size, finishReason, ms, ttftMs: firstAt ? firstAt - started : null, decodeTokensPerS: rate, error };
          state.turns.push(turn);
          resolve(turn);
        }
      },
    };
    const body = { messages, temperature, max_tokens: maxTokens, stream: true };
    worker.postMessage({ type: "request", id, path: "/v1/chat/completions", body });
  });
}

$("chat").addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt || current) return;
  const temperature = Number($("temperature").value);
  const maxTokens = Math.max(1, Math.floor(Number($("max-tokens").value)));
  $("prompt").value = "";
  bubble("user", prompt);
  history.push({ role: "user", content: prompt });
  $("send").disabled = true;
  $("stop").disabled = false;
  const turn = await ask([...history], { temperature, maxTokens });
  history.push({ role: "assistant", content: turn.text });
  $("send").disabled = false;
  $("stop").disabled = true;
});

$("clear").addEventListener("click", () => {
  if (current) return;
  history.length = 0;
  $("log").replaceChildren();
});

$("stop").addEventListener("click", () => {
  if (current) worker.postMessage({ type: "stop", id: current.id });
});
