"""Streaming speech on spoken digits: the same checkpoint offline and streamed, float32 and int8, on the held-out
voices by group, and the compute per chunk at 1 thread.

    python benchmarks/speech_stream.py CHECKPOINT WORK_DIR [--chunk-ms 160] [--left-chunks 16] [--json FILE]

CHECKPOINT is a Conformer trained to stream on spoken-digits (`edgeformer train --arch conformer --task
spoken-digits`: its recipe streams). The script exports it twice (offline, and `--streaming` with the
given cut), quantizes the streaming bundle with the default int8 recipe (its CER measured on streams),
then transcribes the task's 200 held-out utterances with all three, fed to the streams a chunk at a
time as a microphone would. CER is reported over all utterances, heard and unheard voices, by SNR
bucket, and at 10-30 dB (the range the target is set for). Latency: each step's compute (window in,
logits out) at 1 thread, median and 90th percentile over every step of the held-out streams, for
float32 and int8; a partial transcript also waits for the 45 ms the front end and the subsampling
read past a chunk's end. CPU and load average are printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgeformer import runtime
from edgeformer.runtime.cpu import cpu_model, load_average
from edgeformer.runtime.speech import character_error_rate
from edgeformer.runtime.speech_stream import AudioStream, GreedyText


def groups_cer(texts: list[str], utts) -> dict[str, float]:
    from edgeformer.tasks.spoken import report_groups

    out = {"all": character_error_rate(texts, [u.text for u in utts])}
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(utts):
        for g in report_groups(u):
            groups.setdefault(g, []).append(i)
    for g, rows in sorted(groups.items()):
        out[g] = character_error_rate([texts[i] for i in rows], [utts[i].text for i in rows])
    return out


def stream_texts(model, utts) -> tuple[list[str], list[float]]:
    """Each utterance fed a chunk at a time; the transcripts and every step's milliseconds."""
    hop, step_ms, texts = model.manifest.model.stream.hop_samples, [], []
    for u in utts:
        stream, text = AudioStream(model), GreedyText(model.manifest.config["alphabet"])
        run = stream.run

        def timed(feeds):
            start = time.perf_counter()
            out = run(feeds)
            step_ms.append((time.perf_counter() - start) * 1000)
            return out
        stream.run = timed
        for i in range(0, len(u.waveform), hop):
            text.add(stream.feed(u.waveform[i : i + hop]))
        texts.append(text.add(stream.finish()))
    return texts, step_ms


def main() -> None:
    from edgeformer.export import export_bundle
    from edgeformer.modeling.models.conformer_stream import StreamGeometry
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.builtin import media_eval_set
    from edgeformer.tasks.spoken import held_out

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("work")
    ap.add_argument("--chunk-ms", type=int, default=160)
    ap.add_argument("--left-chunks", type=int, default=16)
    ap.add_argument("--json")
    args = ap.parse_args()
    work = Path(args.work)
    geometry = StreamGeometry(args.chunk_ms // 40, args.left_chunks)
    export_bundle(args.checkpoint, work / "offline", overwrite=True)
    export_bundle(args.checkpoint, work / "stream", stream=geometry, overwrite=True)
    stream32 = runtime.load(work / "stream")
    q = quantize_bundle(work / "stream", work / "stream-int8", "int8-dynamic", data=media_eval_set(stream32.bundle),
                        overwrite=True)
    utts = held_out(200)
    offline = runtime.load(work / "offline")
    results = {"cpu": cpu_model(), "chunk_ms": args.chunk_ms, "left_chunks": args.left_chunks,
               "int8_kept_float": q.kept_float, "int8_size_ratio": q.size_ratio}
    results["offline"] = groups_cer(offline.transcribe([u.waveform for u in utts]), utts)
    for name in ("stream", "stream-int8"):
        texts, ms = stream_texts(runtime.load(work / name, threads=1), utts)
        results[name] = groups_cer(texts, utts)
        results[name + " step ms"] = {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
                                      "steps": len(ms)}
    results["load_average"] = load_average()
    print(f"CPU {results['cpu']}, load average {results['load_average']}; chunks of {args.chunk_ms} ms, "
          f"{args.left_chunks} chunks of attention past; 200 held-out utterances")
    names = list(results["offline"])
    print("| CER | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for name in ("offline", "stream", "stream-int8"):
        print(f"| {name} | " + " | ".join(f"{results[name][g]:.4f}" for g in names) + " |")
    for name in ("stream", "stream-int8"):
        s = results[name + " step ms"]
        print(f"{name}: compute per {args.chunk_ms} ms chunk at 1 thread: median {s['median']:.2f} ms, "
              f"p90 {s['p90']:.2f} ms over {s['steps']} steps")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
