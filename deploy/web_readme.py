"""The web folder's README section: serving it, importing the module in an app, what was checked."""

from __future__ import annotations

from typing import Any

from edgeformer.runtime.bundle import Manifest

from .folder import Check
from .kinds import deploy_kind


def usage(manifest: Manifest) -> str:
    """A few lines of JavaScript for the bundle's task."""
    return deploy_kind(manifest).web_usage(manifest)  # deploy/kinds.py


def web_readme(manifest: Manifest, record: dict[str, Any], checks: list[Check]) -> str:
    versions = record["versions"]
    graphs = record["graphs"]
    level = next((g["matmulnbits_accuracy_level"] for g in graphs.values() if g.get("matmulnbits_accuracy_level")), None)
    lines = ["## In the browser", "",
             "A static folder: any web server can serve it. Multi-threaded WASM needs the page *cross-origin "
             "isolated*, so serve it with these headers (without them it runs on one thread):", "",
             "    Cross-Origin-Opener-Policy: same-origin",
             "    Cross-Origin-Embedder-Policy: require-corp", "",
             "and `.mjs`/`.js` as `text/javascript`, `.wasm` as `application/wasm`. To try it here:", "",
             "    edgeformer serve DIR            # http://127.0.0.1:8000/ (loopback only; --host/--port to change)", "",
             "and open the URL: `index.html` is a demo of the bundle's task that shows its load time and threads "
             "(`?threads=N` picks the threads). nginx: `add_header Cross-Origin-Opener-Policy same-origin; add_header "
             "Cross-Origin-Embedder-Policy require-corp;` (and `types { application/wasm wasm; text/javascript mjs; }`).", "",
             "### In an app", "",
             "Copy the folder (or serve it) and import the module; `load` checks every file's sha256 against "
             "`manifest.json`, as the Python runtime does:", "", "```js",
             "import * as edgeformer from './DIR/edgeformer.js';",
             "import * as ort from './DIR/ort.wasm.min.mjs';            // onnxruntime-web's WASM build",
             "import * as tokenizers from './DIR/tokenizers.min.mjs';   // @huggingface/tokenizers",
             "const model = await edgeformer.load('./DIR/', { threads: 2, ort, tokenizers });",
             usage(manifest),
             "const report = await model.verify();   // reruns vectors.json here: report.passed", "```", "",
             "With a bundler, import `onnxruntime-web` and `@huggingface/tokenizers` from npm at the versions below "
             "and pass them the same way; set `ort.env.wasm.wasmPaths` to where `ort-wasm-simd-threaded.wasm` is served. "
             "Bad input throws an `Error` with a one-line message, worded as the Python runtime words it.", "",
             f"Pinned: onnxruntime-web {versions['onnxruntime-web']}, @huggingface/tokenizers {versions['tokenizers']} "
             "(`web/package-lock.json`).", ""]
    if level:
        lines += [f"int4: this folder's graph runs `MatMulNBits` at `accuracy_level` 0 (the bundle said "
                  f"{', '.join(level['from'])}): onnxruntime-web's WASM kernel computes in float32 whatever the level, "
                  "and at 0 the Python runtime computes the same, so the checks below hold at the float32 tolerance "
                  "and `vectors.json` (recorded on this graph) holds in the browser. Only how activations are "
                  "multiplied changed; the 4-bit weights are the bundle's.", ""]
    if not record["checked"]:
        lines += ["**This folder was not checked in a browser (`--no-check`).** Check it with "
                  "`edgeformer deploy BUNDLE --target web --out DIR` on a machine with Chromium and Node.js, or open "
                  "the page and run `await model.verify()` in the console.", ""]
        return "\n".join(lines)
    lines += [f"Checked in headless {record['browser']} on this folder's own page, served on 127.0.0.1 with the "
              f"headers above, at {', '.join(str(p['threads']) for p in record['pages'])} threads (the checks are listed "
              "above):", "", "| threads | page load ms | model.run ms (browser) | model.run ms (Python, same graph) |",
              "| --- | --- | --- | --- |"]
    for p in record["pages"]:
        lines.append(f"| {p['threads']} | {p['load_ms']:.0f} | {p['run_ms']:.2f} | {record['python_run_ms']:.2f} |")
    lines += ["", f"model.run on {record['run_input']} (the check's first random input set), median of 5 calls, "
              "in the same run on the host named above; page load covers fetching and hashing the files, compiling "
              "the WASM and creating the session(s)."]
    return "\n".join(lines)
