"""Quality of each attention kind on a long-input task, trained at the same budget.

The task is a long-input version of the built-in `stdlib-topics`: instead of a docstring's first
paragraph, the text is a 3,000-character excerpt of the source of the same standard-library
modules (code, comments and docstrings; 512 tokens and more with the task's BPE tokenizer),
labelled by the same six areas (math, files, network, text, time, concurrency), held out by hash
of the text as the built-in tasks are. Every kind trains the same encoder (the `small` preset,
max_len 512, sequences of 512 tokens) with the same positions (rotary by default: at small budgets
the sinusoidal encoders stayed at the majority class, whatever their attention), seed, batches,
steps and learning rate; the table gives held-out accuracy after the last epoch, the share of the
largest class (what a model that learned nothing scores), and the training time.

    python benchmarks/long_quality.py [--epochs 2] [--kinds full local ...] [--positional rotary] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
import warnings
from pathlib import Path

KINDS = {
    "full": {},
    "local": {"attention_kind": "local", "window": 64},
    "longformer": {"attention_kind": "longformer", "window": 64, "global_tokens": 1},
    "linformer": {"attention_kind": "linformer", "linformer_k": 64},
    "lsh": {"attention_kind": "lsh", "window": 64, "lsh_buckets": 8, "lsh_rounds": 2},
    "local+reversible": {"attention_kind": "local", "window": 64, "reversible": True},
}
EXCERPT = 3000


def module_files(name: str) -> list[Path]:
    """The .py files of a standard-library module or package (none for modules written in C)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    origin = Path(spec.origin)
    return sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" else [origin]


def stdlib_source_task():
    from edgeformer.modeling.training.data import STDLIB_AREAS, split_classification

    labels, rows, seen = list(STDLIB_AREAS), [], set()
    for label, modules in STDLIB_AREAS.items():
        for name in modules:
            for path in module_files(name):
                if path in seen:
                    continue
                seen.add(path)
                text = path.read_text(encoding="utf-8", errors="replace")
                for start in range(0, len(text) - EXCERPT // 2, EXCERPT):
                    rows.append((text[start:start + EXCERPT], labels.index(label)))
    return split_classification(labels, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--positional", default="rotary", choices=["rotary", "sinusoidal", "learned"])
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    import torch

    from edgeformer.modeling import ModelConfig
    from edgeformer.modeling.training.tokenizer import train_tokenizer
    from edgeformer.modeling.training.train import TrainConfig, train
    from edgeformer.modeling.models.transformer import Transformer
    from edgeformer.runtime.cpu import cpu_model, load_average

    data = stdlib_source_task()
    tok = train_tokenizer(data.texts, 4096)
    lengths = sorted(len(tok.encode(t)) for t, _ in data.eval[:200])
    print(f"stdlib source excerpts: {len(data.train)} training, {len(data.eval)} held out; "
          f"median {lengths[len(lengths) // 2]} tokens; CPU {cpu_model()}, load {load_average()}", flush=True)
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, seq_len=args.max_len, seed=0)
    results = {}
    for kind in args.kinds:
        torch.manual_seed(0)
        cfg = ModelConfig.from_preset(args.preset, vocab_size=tok.vocab_size, pad_id=tok.pad_id, num_labels=len(data.labels),
                                      labels=list(data.labels), max_len=args.max_len,
                                      positional=args.positional, **KINDS[kind])
        model = Transformer(cfg)
        start = time.perf_counter()
        run = train(model, data, tok, tc, progress=False)
        results[kind] = {"eval_accuracy": run.final["eval_accuracy"], "seconds": time.perf_counter() - start,
                         "settings": KINDS[kind]}
        print(f"  {kind}: held-out accuracy {results[kind]['eval_accuracy']:.3f} ({results[kind]['seconds']:.0f} s)", flush=True)
    counts = [sum(1 for _, y in data.eval if y == i) for i in range(len(data.labels))]
    majority = max(counts) / len(data.eval)
    print(f"\n{args.preset} encoder, {args.positional} positions, max_len {args.max_len}, {args.epochs} epochs x "
          f"{len(data.train)} excerpts, batch {args.batch_size}, same seed; largest class {majority:.3f} of the held-out set; "
          f"CPU {cpu_model()}; load average after: {load_average()}")
    print("| attention | settings | held-out accuracy | training s |\n| --- | --- | ---: | ---: |")
    for kind, r in results.items():
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items() if k != "attention_kind") or "-"
        print(f"| {kind} | {settings} | {r['eval_accuracy']:.3f} | {r['seconds']:.0f} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": cpu_model(), "load_average": load_average(), "epochs": args.epochs,
                                                   "preset": args.preset, "positional": args.positional,
                                                   "majority_class": majority, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
