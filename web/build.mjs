// Bundles the web UI: src/ -> static/dist/ (committed; web.go embeds it, so
// `go build` needs no Node). Usage: node build.mjs [--outdir DIR]
// make web runs it; web_test.go runs it into a temporary directory and fails
// when the committed bundle differs from what the sources give.
import * as esbuild from "esbuild";
import {copyFileSync, mkdirSync} from "node:fs";
import {createRequire} from "node:module";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const i = process.argv.indexOf("--outdir");
const outdir = i > 0 ? process.argv[i + 1] : join(here, "static", "dist");
mkdirSync(outdir, {recursive: true});

const common = {
  absWorkingDir: here,
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
  outdir,
};
// The client module other pages can import from the hub (/ui/dist/framesync.js).
await esbuild.build({...common, entryPoints: ["src/framesync.js"]});
// The page: the client stays a separate module, shared with other pages.
await esbuild.build({...common, entryPoints: ["src/app.js"], external: ["./framesync.js"]});
// Automerge's core, loaded by the client with WebAssembly.instantiateStreaming.
const require = createRequire(import.meta.url);
const wasm = require.resolve("@automerge/automerge/automerge.wasm");
copyFileSync(wasm, join(outdir, "automerge.wasm"));
