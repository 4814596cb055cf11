"""The built-in evaluation and calibration sets, chosen by what the bundle's manifest says it is; no PyTorch.

- image bundles of the digits task's geometry (8x8, one channel, labels 0-9): the task's 359
  held-out images; calibration on 64 training images;
- speech bundles: 200 held-out utterances of the speech task the bundle records (audio-digits for
  bundles made before tasks were recorded, spoken-digits, ...); calibration on utterances of another seed;
  a streaming bundle streams each utterance and calibrates on the steps of streamed utterances;
- seq2seq bundles: the reverse task's held-out pairs (what `edgeformer train --arch seq2seq` trains
  on), calibrating int8-static on pairs from its training split;
- cached decoders and single-graph text bundles: the quantizer's built-in English text
  (evaluate.default_eval_texts), unless the user gives texts.
The data itself comes from edgeformer.tasks.
"""

from __future__ import annotations

import os

from edgeformer import runtime
from edgeformer.runtime.bundle import AUDIO, SEQ2SEQ, STREAMING_SPEECH, Bundle
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.images import image_pixel_values
from edgeformer.runtime.speech import pad_waveforms
from edgeformer.tasks.images import digits
from edgeformer.tasks.speech_tasks import DEFAULT_SPEECH_TASK, SPEECH_TASKS, SpeechTask
from edgeformer.tasks.text import reverse_words

from .evaluate import EvaluationData, read_eval_file
from .generation_eval import GenerationData, read_generation_data
from .media import ArrayEvalSet, StreamEvalSet, step_feeds

EVAL_UTTERANCES = 200
CALIBRATION_SEED = 7
BUILTIN_EVAL_PAIRS, BUILTIN_CALIB_PAIRS = 100, 64


def digits_eval_set(model: Bundle) -> ArrayEvalSet:
    """The digits task's held-out images as pixel_values, 64 a batch; 64 training images to calibrate on."""
    d = digits()
    pixels = image_pixel_values(model, d.eval_images, layout="CHW")
    batches = [{"pixel_values": pixels[i : i + 64]} for i in range(0, len(pixels), 64)]
    targets = [[str(y) for y in d.eval_labels[i : i + 64]] for i in range(0, len(pixels), 64)]
    calib = image_pixel_values(model, d.train_images[:64], layout="CHW")
    return ArrayEvalSet(batches, targets, [{"pixel_values": calib[i : i + 8]} for i in range(0, 64, 8)])


def speech_eval_set(task: SpeechTask) -> ArrayEvalSet:
    """The task's held-out utterances, 16 a batch, with their texts (a keyword spotter's: labels); 32 utterances of
    another seed, of one shape, to calibrate on."""
    utts = task.held_out(EVAL_UTTERANCES)
    batches, targets = [], []
    for i in range(0, len(utts), 16):
        waves, lengths = pad_waveforms([u.waveform for u in utts[i : i + 16]])
        batches.append({"waveforms": waves, "lengths": lengths})
        targets.append([u.text for u in utts[i : i + 16]])
    waves, lengths = pad_waveforms([u.waveform for u in task.utterances(32, CALIBRATION_SEED)])  # one shape for all
    calib = [{"waveforms": waves[i : i + 8], "lengths": lengths[i : i + 8]} for i in range(0, 32, 8)]
    return ArrayEvalSet(batches, targets, calib)


def stream_eval_set(task: SpeechTask, model: Bundle) -> StreamEvalSet:
    """The task's held-out utterances, one stream each; the steps of 8 utterances of another seed to calibrate on."""
    utts = task.held_out(EVAL_UTTERANCES)
    bundle = runtime.load(model.path)
    calib = step_feeds(bundle, [u.waveform for u in task.utterances(8, CALIBRATION_SEED)])
    return StreamEvalSet([{"audio": u.waveform} for u in utts], [[u.text] for u in utts], calib, bundle)


def media_eval_set(model: Bundle) -> ArrayEvalSet:
    """The built-in task's held-out arrays for an image or speech bundle (its manifest says which)."""
    cfg = model.manifest.config
    if cfg.get("image_size") == 8 and cfg.get("num_channels") == 1 and model.manifest.model.labels == [str(i) for i in range(10)]:
        return digits_eval_set(model)
    task = SPEECH_TASKS.get((model.manifest.model.checkpoint or {}).get("task") or DEFAULT_SPEECH_TASK)
    if (model.manifest.modality == AUDIO and task is not None and cfg.get("alphabet") == task.alphabet
            and list(model.manifest.model.labels or []) == list(task.labels or [])):
        return stream_eval_set(task, model) if model.manifest.kind == STREAMING_SPEECH else speech_eval_set(task)
    raise EdgeformerError(f"no built-in evaluation set fits {model.path} (built in: the digits images and the "
                          f"{', '.join(SPEECH_TASKS)} speech tasks); measure it with "
                          "edgeformer.quantize.quantize_bundle(..., data=ArrayEvalSet(...))")


def generation_sets(kind: str, eval_data: str | os.PathLike | None, calib_data: str | os.PathLike | None
                    ) -> tuple[GenerationData | None, GenerationData | None]:
    """(evaluation set, calibration set) of a generation bundle of `kind`: the user's files, else the built-in ones."""
    data = read_generation_data(eval_data) if eval_data else None
    calib = read_generation_data(calib_data, "calibration") if calib_data else None
    if kind == SEQ2SEQ and (data is None or calib is None):
        task = reverse_words()
        data = data or GenerationData(pairs=task.eval[:BUILTIN_EVAL_PAIRS])
        calib = calib or GenerationData(pairs=task.train[:BUILTIN_CALIB_PAIRS])
    return data, calib


def text_sets(model: Bundle, eval_data: str | os.PathLike | None, calib_data: str | os.PathLike | None
              ) -> tuple[EvaluationData | None, str | os.PathLike | None]:
    """A text bundle: the user's texts, else the quantizer's built-in English text (None); calibration as given."""
    return (read_eval_file(eval_data) if eval_data else None), calib_data


def array_sets(model: Bundle, eval_data: str | os.PathLike | None, calib_data: str | os.PathLike | None
               ) -> tuple[ArrayEvalSet, str | os.PathLike | None]:
    """An image or speech bundle: its built-in task's held-out arrays (texts do not fit it)."""
    if eval_data:
        raise EdgeformerError("--eval-data holds texts; image and speech bundles are measured on their built-in task")
    return media_eval_set(model), calib_data


def generation_bundle_sets(model: Bundle, eval_data: str | os.PathLike | None, calib_data: str | os.PathLike | None
                           ) -> tuple[GenerationData | None, GenerationData | None]:
    return generation_sets(model.manifest.kind, eval_data, calib_data)
