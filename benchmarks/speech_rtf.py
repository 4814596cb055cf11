"""Real-time factor of speech bundles (float32 and int8) at 1 and 2 threads, held-out CER, and bundle sizes.

    python benchmarks/speech_rtf.py FLOAT32_BUNDLE INT8_BUNDLE [--seconds 2] [--json FILE]

Real-time factor = seconds of compute / seconds of audio, batch 1, on held-out audio-digits
utterances concatenated to about 10 s (one call per utterance set, median of many). The four
sessions (float32/int8 x 1/2 threads) are timed in alternating blocks in one process
(runtime.bench.time_alternating) with intra-op spinning off, so they compare within this run only.
The CPU model and load average are printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgeformer import runtime
from edgeformer.runtime.bench import time_alternating
from edgeformer.runtime.cpu import cpu_model, load_average
from edgeformer.runtime.speech import character_error_rate


def bundle_mb(path: str) -> float:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file()) / 1e6


def main() -> None:
    from edgeformer.tasks.speech import held_out

    ap = argparse.ArgumentParser()
    ap.add_argument("float32")
    ap.add_argument("int8")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    utts = held_out(300)
    audio = np.concatenate([u.waveform for u in utts[:8]])  # about 10 s
    seconds = len(audio) / 16000
    result = {"cpu": cpu_model(), "load_average_before": load_average(), "audio_seconds": seconds, "bundles": {}}
    fns = {}
    for name, path in (("float32", args.float32), ("int8", args.int8)):
        model = runtime.load(path)
        texts = model.transcribe([u.waveform for u in utts])
        result["bundles"][name] = {"path": path, "mb": bundle_mb(path),
                                   "cer": character_error_rate(texts, [u.text for u in utts]), "utterances": len(utts)}
        for threads in (1, 2):
            m = runtime.load(path, threads=threads)
            fns[f"{name} {threads} thread{'s' if threads > 1 else ''}"] = lambda m=m: m.transcribe(audio)
    stats = time_alternating(fns, rounds=3, min_seconds=args.seconds)
    result["load_average_after"] = load_average()
    result["rtf"] = {k: {"median_ms": s.median_ms, "rtf": s.median_ms / 1000 / seconds, "spread": s.spread} for k, s in stats.items()}
    print(f"CPU: {result['cpu']}; load average {result['load_average_before']} -> {result['load_average_after']}")
    for name, b in result["bundles"].items():
        print(f"{name}: CER {b['cer']:.4f} on {b['utterances']} held-out utterances, bundle {b['mb']:.2f} MB")
    for k, r in result["rtf"].items():
        print(f"{k}: real-time factor {r['rtf']:.4f} ({r['median_ms']:.1f} ms for {seconds:.1f} s of audio, spread {r['spread']:.0%})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
