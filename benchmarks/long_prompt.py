"""Long prompts on a cached decoder: memory and time of the prompt step, full against local attention.

A decoder exported with --kv-cache runs the prompt in one step over an empty cache. With full
attention that step scores every prompt token against every other; with local attention each block
of W new tokens gathers only its window's keys from the cache. A base-size decoder (6 x 384, 6
heads; random weights, seed 0) is exported per kind through the real pipeline (parity gate
included); then each (kind, prompt length) runs in a fresh process: load with edgeformer.runtime,
reset the high-water mark, generate one token after the prompt, report the rise of the resident
set (MB) and the prompt step's time. Then the prompt step's logits as the graph returns them: every
position's (what a bundle of format 2 returned, B x T x V float32) against the last one's (format 3:
`logits_to_keep` 1, as generation asks), measured on the arrays the graph hands back.

    python benchmarks/long_prompt.py [--lengths 1024 4096] [--window 128] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from process_memory import reset_peak, status_mb


def child(bundle: str, length: int) -> None:
    import numpy as np

    from edgeformer import runtime

    model = runtime.load(bundle, threads=2)
    prompt = np.random.default_rng(0).integers(5, 8000, size=length).tolist()
    model.generate([prompt[:16]], max_new_tokens=1)  # warm-up: sessions and arena
    before = reset_peak()
    g = model.generate([prompt], max_new_tokens=1)
    out = {"prompt_mb": status_mb("VmHWM") - before, "prompt_ms": g.prompt_ms}
    cache = model.manifest.cache
    if cache.logits_to_keep is not None:  # after the memory reading: the every-position call allocates T x V
        ids = np.array([prompt], dtype=np.int64)
        step = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(length)[None],
                **{n: np.zeros((1, cache.heads, 0, cache.head_dim), np.float32) for n in cache.past}}
        for name, k in (("logits_every_bytes", 0), ("logits_last_bytes", 1)):
            out[name] = int(model({**step, cache.logits_to_keep: np.array([k])})["logits"].nbytes)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--dir", default="bench-out/long-prompt")
    ap.add_argument("--lengths", nargs="+", type=int, default=[1024, 4096])
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    import torch

    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save
    from edgeformer.runtime.cpu import cpu_model

    root, max_len = Path(args.dir), max(args.lengths) + 8
    kinds = {"full": {}, "local": {"attention_kind": "local", "window": args.window}}
    results = {}
    for kind, settings in kinds.items():
        bundle = root / f"{kind}-bundle"
        if not (bundle / "manifest.json").is_file():
            torch.manual_seed(0)
            cfg = ModelConfig.from_preset("base", arch="decoder", max_len=max_len, vocab_size=8192, dropout=0.0,
                                          positional="rotary", **settings)
            save(Transformer(cfg).eval(), root / f"{kind}-ckpt", overwrite=True)
            result = export_bundle(root / f"{kind}-ckpt", bundle, kv_cache=True, overwrite=True,
                                   cases=[(1, 64, 2), (2, 300, 2)])
            print(f"exported {kind}: parity max abs {max(o.max_abs for o in result.report.worst.values()):.2g}", flush=True)
        for length in args.lengths:
            proc = subprocess.run([sys.executable, __file__, "--child", str(bundle), str(length)],
                                  capture_output=True, text=True, check=True)
            results.setdefault(length, {})[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {kind}, {length}-token prompt: {results[length][kind]}", flush=True)
    print(f"\nbase-size decoder (6 x 384, 6 heads), rotary, window {args.window}, batch 1, 2 threads; CPU {cpu_model()}")
    print("| prompt tokens | full MB | local MB | memory | full ms | local ms | speed |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for length, r in results.items():
        f, lo = r["full"], r["local"]
        mem, speed = f["prompt_mb"] / max(lo["prompt_mb"], 1.0), f["prompt_ms"] / lo["prompt_ms"]
        print(f"| {length} | {f['prompt_mb']:.0f} | {lo['prompt_mb']:.0f} | "
              f"{f'{mem:.1f}x less' if mem >= 1 else f'{1 / mem:.1f}x more'} | {f['prompt_ms']:.0f} | {lo['prompt_ms']:.0f} | "
              f"{f'{speed:.2f}x faster' if speed >= 1 else f'{1 / speed:.2f}x slower'} |")
    for length, r in results.items():
        if "logits_every_bytes" in r["full"]:
            every, last = r["full"]["logits_every_bytes"], r["full"]["logits_last_bytes"]
            print(f"prompt step's logits at {length} tokens: {every / 1e6:.1f} MB for every position (format 2) -> "
                  f"{last / 1e3:.1f} KB for the last (format 3, logits_to_keep 1)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": cpu_model(), "window": args.window, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
