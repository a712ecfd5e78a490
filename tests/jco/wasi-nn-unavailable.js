// wasi:nn@0.2.0-rc-2024-10-28 for a JavaScript host with no inference backend: every graph
// load fails with `not-found`, so the edge-llm guest falls back to its own kernel. (jco maps
// the component's wasi:nn imports here: `just jco`.)

class NnError {
  constructor(code, data) {
    this.errorCode = code;
    this.message = data;
  }
  code() {
    return this.errorCode;
  }
  data() {
    return this.message;
  }
}

const unavailable = (what) => {
  // jco turns a thrown non-Error value into the function's `err` result.
  throw new NnError("not-found", `${what}: this host offers no wasi:nn backend`);
};

class Graph {
  initExecutionContext() {
    unavailable("init-execution-context");
  }
}

class GraphExecutionContext {
  compute() {
    unavailable("compute");
  }
}

class Tensor {
  constructor() {
    unavailable("tensor");
  }
}

export const errors = { Error: NnError };
export const graph = {
  Graph,
  load: () => unavailable("load"),
  loadByName: (name) => unavailable(`load-by-name ${name}`),
};
export const inference = { GraphExecutionContext };
export const tensor = { Tensor };
