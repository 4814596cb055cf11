"""The built-in evaluation and calibration sets for image and speech bundles (quantize, parity of quantized bundles).

An image bundle of the digits task's geometry (8x8, one channel, labels 0-9) is measured on the task's
359 held-out images; a speech bundle over the digits alphabet on 200 held-out audio-digits
utterances. Calibration uses other inputs: training images, and utterances from another seed.
"""

from __future__ import annotations

import numpy as np

from edgeformer import runtime
from edgeformer.runtime.errors import EdgeformerError

EVAL_UTTERANCES = 200
CALIBRATION_SEED = 7


def builtin_eval_set(model: runtime.Bundle):
    """The built-in task's held-out arrays for an image or speech bundle (its manifest says which)."""
    from edgeformer.quantize.media import ArrayEvalSet

    cfg = model.manifest.config
    if cfg.get("image_size") == 8 and cfg.get("num_channels") == 1 and model.manifest.model.labels == [str(i) for i in range(10)]:
        from edgeformer.modeling.vision import digits
        from edgeformer.runtime.images import image_pixel_values

        d = digits()
        pixels = image_pixel_values(model, d.eval_images, layout="CHW")
        batches = [{"pixel_values": pixels[i : i + 64]} for i in range(0, len(pixels), 64)]
        targets = [[str(y) for y in d.eval_labels[i : i + 64]] for i in range(0, len(pixels), 64)]
        calib = image_pixel_values(model, d.train_images[:64], layout="CHW")
        return ArrayEvalSet(batches, targets, [{"pixel_values": calib[i : i + 8]} for i in range(0, 64, 8)])
    if model.manifest.model.task == "speech-recognition" and cfg.get("alphabet") == "0123456789":
        from edgeformer.modeling.speech_data import held_out, utterances
        from edgeformer.runtime.speech import pad_waveforms

        utts = held_out(EVAL_UTTERANCES)
        batches, targets = [], []
        for i in range(0, len(utts), 16):
            waves, lengths = pad_waveforms([u.waveform for u in utts[i : i + 16]])
            batches.append({"waveforms": waves, "lengths": lengths})
            targets.append([u.text for u in utts[i : i + 16]])
        waves, lengths = pad_waveforms([u.waveform for u in utterances(32, CALIBRATION_SEED)])  # one shape for all
        calib = [{"waveforms": waves[i : i + 8], "lengths": lengths[i : i + 8]} for i in range(0, 32, 8)]
        return ArrayEvalSet(batches, targets, calib)
    raise EdgeformerError(f"no built-in evaluation set fits {model.path} (built in: the digits images and "
                          "audio-digits speech); measure it with edgeformer.quantize.quantize_bundle(..., data=ArrayEvalSet(...))")


def eval_set_for(bundle_path: str, eval_data):
    """The evaluation set `edgeformer quantize` uses: the built-in one for image and speech bundles, else text."""
    from edgeformer.quantize.media import is_media_bundle

    bundle = runtime.open_bundle(bundle_path)  # the manifest says which task; quantize_bundle opens the sessions
    if not is_media_bundle(bundle):
        return None
    if eval_data:
        raise EdgeformerError("--eval-data holds texts; image and speech bundles are measured on their built-in task")
    return builtin_eval_set(bundle)
