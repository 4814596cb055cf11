"""Training memory of reversible blocks against plain ones, as the model gets deeper.

A plain block keeps its activations for the backward pass, so a training step's memory grows with
depth; a reversible block (modeling/models/reversible.py) keeps only the stack's last output and
recomputes the rest backwards. Each (depth, kind) runs one warm-up and one measured training step
(forward, backward, optimizer step) of an encoder in a fresh process; the figure is the rise of the
process's high-water resident set during the measured step (reset through /proc/self/clear_refs
after the warm-up, so weights, gradients and optimizer state are not counted), in MB. The children run
with glibc's mmap threshold fixed at 64 KiB, so a freed activation goes back to the system at once
instead of staying in the heap for the next step to reuse unseen.

    python benchmarks/reversible_memory.py [--depths 2 4 8 12] [--seq 1024] [--batch 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from process_memory import reset_peak, status_mb


def child(depth: int, reversible: bool, seq: int, batch: int, preset: str) -> None:
    import torch

    from edgeformer.modeling import ModelConfig, Transformer

    torch.manual_seed(0)
    torch.set_num_threads(2)
    cfg = ModelConfig.from_preset(preset, n_layers=depth, max_len=seq, vocab_size=4096, num_labels=4, dropout=0.0,
                                  attention_kind="local", window=128, positional="rotary", reversible=reversible)
    model = Transformer(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, 4096, (batch, seq))
    labels = torch.randint(0, 4, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(ids)["logits"], labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)  # keep the gradient buffers: the measured step allocates none

    step()
    before = reset_peak()
    step()
    print(json.dumps({"step_mb": status_mb("VmHWM") - before}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--depths", nargs="+", type=int, default=[2, 4, 8, 12])
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    if args.child:
        depth, reversible, seq, batch, preset = args.child
        return child(int(depth), reversible == "1", int(seq), int(batch), preset)
    from edgeformer.runtime.cpu import cpu_model

    results = {}
    for depth in args.depths:
        for reversible in (False, True):
            proc = subprocess.run([sys.executable, __file__, "--child", str(depth), "1" if reversible else "0",
                                   str(args.seq), str(args.batch), args.preset], capture_output=True, text=True, check=True,
                                  env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
            mb = json.loads(proc.stdout.strip().splitlines()[-1])["step_mb"]
            results.setdefault(depth, {})["reversible" if reversible else "plain"] = mb
            print(f"  {depth} layers, {'reversible' if reversible else 'plain'}: {mb:.0f} MB", flush=True)
    print(f"\n{args.preset} encoder, local attention (window 128), batch {args.batch} x {args.seq} tokens, "
          f"one training step, float32, CPU {cpu_model()}")
    print("| layers | plain MB | reversible MB | plain / reversible |\n| ---: | ---: | ---: | ---: |")
    for depth, r in results.items():
        print(f"| {depth} | {r['plain']:.0f} | {r['reversible']:.0f} | {r['plain'] / max(r['reversible'], 1.0):.1f}x |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": cpu_model(), "preset": args.preset, "seq": args.seq,
                                                   "batch": args.batch, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
