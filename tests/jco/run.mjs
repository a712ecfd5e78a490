// Runs a jco-transpiled edge-llm CLI component under Node.js with the model directory
// preopened at /models:  node run.mjs TRANSPILED_JS MODEL_DIR -- CLI ARGS...
import { _setPreopens } from "@bytecodealliance/preview2-shim/filesystem";
import { _setArgs } from "@bytecodealliance/preview2-shim/cli";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const [transpiled, modelDir, separator, ...args] = process.argv.slice(2);
if (!transpiled || !modelDir || separator !== "--") {
  console.error("usage: node run.mjs TRANSPILED_JS MODEL_DIR -- ARGS...");
  process.exit(2);
}
_setPreopens({ "/models": resolve(modelDir) });
_setArgs(["edge-llm", ...args]);
const { run } = await import(pathToFileURL(resolve(transpiled)).href);
run.run();
