"""`make board-check`: deploy the demo's bundles with `--target arm64 --check` and print how far
emulated aarch64 is from x86 (float32 and int8).

Bundles: the demo's (`make demo` writes demo-out/encoder-bundle and demo-out/decoder-bundle); the
int8 one is the demo encoder quantized with int8-dynamic. Without demo-out/, small-preset
random-weight bundles are built instead (seconds, not the demo's minutes of training): the
numerics of the kernels do not depend on the weights having been trained.
Everything is cached under .cache/board/ (the aarch64 root, the bundles, the deployment folders).

    python benchmarks/board_check.py [--demo demo-out] [--cache .cache/board] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stamp_ok(path: Path, key: str) -> bool:
    return (path / "manifest.json").is_file() and (path / ".board-source").is_file() \
        and (path / ".board-source").read_text() == key


def _mark(path: Path, key: str) -> None:
    (path / ".board-source").write_text(key)  # outside the manifest's files: a cache tag, not bundle content


def board_bundles(cache: Path, demo: Path, say=print) -> dict[str, Path]:
    """{"encoder": fp32, "decoder": fp32, "int8": int8-dynamic encoder}: the demo's, else small random ones."""
    from edgeformer.quantize import quantize_bundle
    from edgeformer.runtime.artifacts import sha256_file

    cache.mkdir(parents=True, exist_ok=True)
    if (demo / "encoder-bundle" / "manifest.json").is_file() and (demo / "decoder-bundle" / "manifest.json").is_file():
        out = {"encoder": demo / "encoder-bundle", "decoder": demo / "decoder-bundle", "source": "demo"}
    else:
        say(f"no demo bundles in {demo}/ ('make demo' writes them): building small-preset random-weight bundles")
        out = {**small_bundles(cache / "bundles", say), "source": "small-random"}
    int8 = cache / "bundles" / f"{out['source']}-encoder-int8"
    key = sha256_file(out["encoder"] / "manifest.json")
    if not _stamp_ok(int8, key):
        say(f"quantizing {out['encoder']} with int8-dynamic -> {int8}")
        start = time.perf_counter()
        quantize_bundle(out["encoder"], int8, "int8-dynamic", overwrite=True, bench_seconds=0.2)
        _mark(int8, key)
        say(f"  {time.perf_counter() - start:.0f} s")
    out["int8"] = int8
    return out


def small_bundles(where: Path, say=print) -> dict[str, Path]:
    """A small-preset encoder (classifier with a tokenizer) and decoder, random weights, exported."""
    import torch

    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save
    from edgeformer.modeling.training.data import stdlib_topics
    from edgeformer.modeling.training.tokenizer import train_tokenizer

    out = {"encoder": where / "small-encoder", "decoder": where / "small-decoder"}
    if all(_stamp_ok(p, "small-random-v1") for p in out.values()):
        return out
    start = time.perf_counter()
    data = stdlib_topics()
    tok = train_tokenizer([t for t, _ in data.train], vocab_size=2048)
    for arch, path in out.items():
        torch.manual_seed(0)
        extra = dict(num_labels=len(data.labels), labels=list(data.labels)) if arch == "encoder" else {}
        cfg = ModelConfig.from_preset("small", arch=arch, vocab_size=tok.vocab_size, **extra)
        model = Transformer(cfg).eval()
        save(model, where / f"{path.name}-ckpt", tokenizer=tok, overwrite=True)
        export_bundle(where / f"{path.name}-ckpt", path, overwrite=True)
        _mark(path, "small-random-v1")
    say(f"  built {', '.join(out)} in {time.perf_counter() - start:.0f} s")
    return out


def quantization_error(float_bundle: Path, int8_bundle: Path, seed: int) -> float:
    """max |int8 - float32| on x86 over the check's own inputs: what int8 costs, to size its aarch64 difference."""
    from edgeformer.deploy import arm64
    from edgeformer.runtime import open_bundle

    q = open_bundle(int8_bundle)
    cases = arm64.check_inputs(q.manifest, seed)
    ref, got = arm64.run_host(open_bundle(float_bundle).model_path, cases), arm64.run_host(q.model_path, cases)
    return max(arm64.max_abs(a[k], b[k]) for a, b in zip(ref, got) for k in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default=str(ROOT / "demo-out"))
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "board"))
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    from edgeformer.deploy import DeployCheckFailed, DeployError, DeployOptions, deploy

    cache = Path(args.cache)
    bundles = board_bundles(cache, Path(args.demo))
    opt = DeployOptions(check=True, emulator_root=str(cache / "arm64-root"))
    summary, failed = {"source": bundles["source"], "bundles": {}}, False
    for name in ("encoder", "decoder", "int8"):
        print(f"\n== {name}: edgeformer deploy {bundles[name]} --target arm64 --check")
        start = time.perf_counter()
        try:
            result = deploy(bundles[name], "arm64", cache / "deploy" / name, opt, overwrite=True,
                            progress=lambda m: print("  " + m))
        except DeployCheckFailed as e:
            print(f"error: {e}")
            for line in e.report_lines():
                print("  " + line)
            failed = True
            continue
        except DeployError as e:
            sys.exit(f"error: {e}")
        seconds = time.perf_counter() - start
        for title, columns, rows in result.deployment.tables:
            print(title)
            print("| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns))
            for row in rows:
                print("| " + " | ".join(str(v) for v in row) + " |")
        rec = result.manifest.deploy.extra["arm64"]
        worst = {c["values"]["cpu"]: max(c["values"]["max_abs"].values()) for c in result.manifest.deploy.checks}
        summary["bundles"][name] = {"bundle": str(bundles[name]), "folder": str(result.path),
                                    "quantization": (result.manifest.quantization.recipe if result.manifest.quantization else None),
                                    "max_abs": worst, "tolerance": rec["tolerance"], "root_built_s": rec["root_built_s"],
                                    "emulated_run_s": rec["run_s"], "deploy_s": round(seconds, 1),
                                    "onnxruntime": rec["onnxruntime"], "numpy": rec["numpy"], "python": rec["python"],
                                    "qemu": rec["qemu"]}
        for line in (c.line() for c in result.deployment.checks):
            print("  " + line)
        print(f"  deploy + check: {seconds:.1f} s" + (f" (of which building the aarch64 root: {rec['root_built_s']:.0f} s)"
                                                    if rec["root_built_s"] else ""))
    if "int8" in summary["bundles"]:
        summary["bundles"]["int8"]["int8_vs_float32_x86"] = quantization_error(bundles["encoder"], bundles["int8"], opt.seed)
    print("\n== aarch64 (emulated) vs x86, max abs difference over all outputs and input sets")
    for name, s in summary["bundles"].items():
        kind = s["quantization"] or "float32"
        print(f"  {name:<8} {kind:<13} " + ", ".join(f"{cpu} {d:.2e}" for cpu, d in s["max_abs"].items())
              + f"  (tolerance {s['tolerance']['value']:g} x max(1, |output|))")
    if "int8" in summary["bundles"]:
        print(f"  for scale: int8 vs float32, both on x86, same inputs: {summary['bundles']['int8']['int8_vs_float32_x86']:.2e}")
    if summary["bundles"]:
        any_ = next(iter(summary["bundles"].values()))
        print(f"  onnxruntime {any_['onnxruntime']}, numpy {any_['numpy']}, Python {any_['python']} (aarch64); {any_['qemu']}")
        print("  emulated: numerics only, no timings")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2) + "\n")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
