"""The demo's vision stage: a ViT trained on the digits images, exported behind the parity gate, and
held-out images classified through the torch-free runtime (`Model.classify_images`)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.modeling.training.train import TrainConfig, train_checkpoint

# Full and --quick training: 20 epochs of the tiny preset take about 10 s on two idle cores.
VISION = (TrainConfig(epochs=20, lr=3e-3), TrainConfig(epochs=1, lr=3e-3))


def vision_example(out: Path, quick: bool) -> dict:
    from edgeformer.modeling.training.vision import digits

    trained = train_checkpoint(out / "vit-ckpt", "vit", "tiny", "digits", tc=VISION[quick], overwrite=True, progress=False)
    exported = export_bundle(out / "vit-ckpt", out / "vit-bundle", overwrite=True)
    data = digits()
    result = runtime.load(out / "vit-bundle").classify_images(data.eval_images, layout="CHW")
    accuracy = float(np.mean(np.array(result.labels) == data.eval_labels.astype(str)))
    shown = " ".join(f"{p}/{t}" for p, t in zip(result.labels[:12], data.eval_labels[:12]))
    worst = max(o.max_abs for o in exported.report.worst.values())
    click.echo(f"  ViT tiny on 8x8 digits: runtime accuracy {accuracy:.3f} on {len(data.eval_labels)} held-out images "
               f"({exported.manifest.attention.count} x Attention, parity max abs {worst:.1e}); predicted/true: {shown}")
    return {"checkpoint": str(out / "vit-ckpt"), "bundle": str(out / "vit-bundle"), "train_accuracy_eval": trained.final["eval_accuracy"],
            "runtime_accuracy": accuracy, "held_out_images": len(data.eval_labels), "parity_max_abs": worst,
            "train_seconds": trained.seconds}
