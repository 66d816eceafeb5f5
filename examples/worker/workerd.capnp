# Serves the example with workerd alone (no Cloudflare account): node examples/worker/build.mjs, then
#   npx workerd serve examples/worker/workerd.capnp --directory-path models=/path/to/folder/with/ggufs
# and open http://127.0.0.1:8787/?prompt=Once%20upon%20a%20time
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "models", disk = (path = "models", writable = false)),
  ],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "main")],
);

const worker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "build/worker.js"),
    (name = "kernels-relaxed.wasm", wasm = embed "build/kernels-relaxed.wasm"),
  ],
  compatibilityDate = "2025-01-01",
  bindings = [
    (name = "MODELS", service = "models"),
    (name = "MODEL_FILE", text = "stories260K.gguf"),
  ],
);
