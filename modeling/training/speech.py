"""Conformer training: CTC on a built-in speech task (edgeformer.tasks.speech_tasks: `audio-digits`, `spoken-digits`),
`edgeformer train --arch conformer [--task NAME]`.

Every batch is fresh synthesised audio (drawn a few batches at a time and cut by length, so little of a
batch is padding); features come from the model's own front end (the one in
the exported graph), then SpecAugment masks them (training only). The held-out character error
rate is measured with greedy CTC decoding, the decoder the torch-free runtime uses
(runtime/speech.py): a model that outputs only blanks scores 1.0. Where the held-out set records
whether training heard the voice (spoken-digits), the rate is also given for heard and unheard voices.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgeformer.runtime.artifacts import check_output_dir
from edgeformer.runtime.speech import character_error_rate, ctc_greedy, ids_to_text, pad_waveforms

from edgeformer.modeling.models.audio import spec_augment
from edgeformer.modeling.checkpoint import TRAINING_FILE, save
from edgeformer.modeling.config import ModelConfig
from edgeformer.modeling.models.conformer import Conformer, random_context
from edgeformer.modeling.training.data import DataError
from edgeformer.modeling.training.distributed import current as distributed_context
from edgeformer.modeling.training.loop import TrainConfig, TrainResult, echo_metrics, fit
from edgeformer.tasks.speech import ALPHABET, SAMPLE_RATE, Utterance
from edgeformer.tasks.defaults import task_defaults
from edgeformer.tasks.speech_tasks import SpeechTask as TaskData, speech_task
from edgeformer.tasks.spoken import SpokenUtterance, report_groups

# Sizes for boards and phones (parameters measured with this module): tiny 0.5 M, small 4.5 M, base 26 M.
CONFORMER_PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=64, n_heads=4, n_layers=4, d_ff=256, conv_kernel=15),
    "small": dict(d_model=144, n_heads=4, n_layers=8, d_ff=576, conv_kernel=15),  # Conformer-S's width, half its depth
    "base": dict(d_model=256, n_heads=4, n_layers=16, d_ff=1024, conv_kernel=31),  # Conformer-M
}
MAX_FRAMES = 1000  # the longest input: 10 s of audio (10 ms frames)
STEPS_PER_EPOCH = 50
BUCKET = 8  # batches drawn together and cut by length
EVAL_UTTERANCES = 200


def conformer_config(preset: str, alphabet: str | None = ALPHABET, labels: Sequence[str] | None = None,
                     **overrides: Any) -> ModelConfig:
    """A Conformer preset that transcribes `alphabet` by CTC, or labels clips with `labels` (a keyword spotter)."""
    if preset not in CONFORMER_PRESETS:
        raise DataError(f"unknown conformer preset {preset!r}; expected one of: {', '.join(CONFORMER_PRESETS)}")
    fields = dict(arch="conformer", max_len=MAX_FRAMES, pad_id=0)
    if labels:
        fields.update(alphabet=None, vocab_size=len(labels), num_labels=len(labels), labels=list(labels))
    else:
        fields.update(alphabet=alphabet, vocab_size=len(alphabet) + 1)
    return ModelConfig.from_dict({**CONFORMER_PRESETS[preset], **fields, **overrides})


def encode_texts(texts: list[str], alphabet: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (B, S) int64 targets (id = alphabet index + 1, padded with the blank) and (B,) lengths."""
    ids = [[alphabet.index(ch) + 1 for ch in t] for t in texts]
    out = torch.zeros(len(ids), max(len(i) for i in ids), dtype=torch.long)
    for row, i in enumerate(ids):
        out[row, : len(i)] = torch.tensor(i)
    return out, torch.tensor([len(i) for i in ids])


def batch_of(utts: list[Utterance], alphabet: str) -> tuple[torch.Tensor, ...]:
    waves, lengths = pad_waveforms([u.waveform for u in utts])
    targets, target_lengths = encode_texts([u.text for u in utts], alphabet)
    return torch.from_numpy(waves), torch.from_numpy(lengths), targets, target_lengths


def label_batch(utts: list[Utterance], labels: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """A keyword spotter's batch: waveforms, lengths, each clip's label index (B,), and ones for target lengths."""
    waves, lengths = pad_waveforms([u.waveform for u in utts])
    targets = torch.tensor([list(labels).index(u.text) for u in utts])
    return torch.from_numpy(waves), torch.from_numpy(lengths), targets, torch.ones_like(targets)


def task_batch(cfg: ModelConfig) -> Callable[[list[Utterance]], tuple[torch.Tensor, ...]]:
    """Utterances -> the model's batch: CTC targets for a recogniser, label indices for a keyword spotter."""
    if cfg.num_labels:
        return lambda utts: label_batch(utts, cfg.labels)
    return lambda utts: batch_of(utts, cfg.speech.alphabet)


def ctc_loss(out: dict[str, torch.Tensor], targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    log_probs = F.log_softmax(out["logits"].float(), dim=-1).transpose(0, 1)  # (T, B, V)
    return F.ctc_loss(log_probs, targets, out["logit_lengths"], target_lengths, blank=0, zero_infinity=True)


class SpeechTask:
    """Fresh synthesised utterances every batch; CTC loss with SpecAugment; held-out CER by greedy CTC."""

    def __init__(self, cfg: ModelConfig, tc: TrainConfig, eval_utterances: int = EVAL_UTTERANCES,
                 data: TaskData | None = None):
        self.cfg, self.tc, self.data = cfg, tc, data or speech_task(None)
        if self.data.alphabet != cfg.speech.alphabet or list(self.data.labels or []) != list(cfg.labels or []):
            raise DataError(f"task {self.data.name} writes {self.data.alphabet or self.data.labels!r}; the model's "
                            f"{'labels are' if cfg.labels else 'alphabet is'} {cfg.labels or cfg.speech.alphabet!r}")
        self.batch = task_batch(cfg)
        self.steps = tc.steps_per_epoch or STEPS_PER_EPOCH
        self.eval_set = self.data.held_out(eval_utterances)

    def batches(self, g: torch.Generator):
        """Fresh utterances, BUCKET batches' worth at a time sorted by length, so a batch pads little
        (clips run from 0.4 to 6 s: a random batch of 16 was about half padding); the batches of a bucket
        come in random order."""
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        size = self.tc.batch_size
        for start in range(0, self.steps, BUCKET):
            n = min(BUCKET, self.steps - start)
            utts = sorted((self.data.synthesize(rng) for _ in range(n * size)), key=lambda u: len(u.waveform))
            for i in rng.permutation(n):
                yield self.batch(utts[i * size : (i + 1) * size])

    @staticmethod
    def loss(model, waves, lengths, targets, target_lengths) -> torch.Tensor:
        features, frames = model.features(waves, lengths)
        context = random_context() if model.cfg.speech.streaming else None  # chunked attention half the time
        out = model.encode(spec_augment(features, frames, None), frames, context)
        if model.cfg.num_labels:
            return F.cross_entropy(out["logits"], targets)
        return ctc_loss(out, targets, target_lengths)

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        return (evaluate_accuracy if model.cfg.num_labels else evaluate_cer)(model, self.eval_set)


@torch.no_grad()
def evaluate_cer(model: Conformer, utts: list[Utterance], batch_size: int = 32) -> dict[str, float]:
    model.eval()
    dev = next(model.parameters()).device
    hyps, loss = [], 0.0
    for i in range(0, len(utts), batch_size):
        waves, lengths, targets, target_lengths = (t.to(dev) for t in batch_of(utts[i : i + batch_size], model.cfg.speech.alphabet))
        out = model(waves, lengths)
        loss += ctc_loss(out, targets, target_lengths).item() * len(lengths)
        hyps += [ids_to_text(ids, model.cfg.speech.alphabet) for ids in ctc_greedy(out["logits"].cpu().numpy(), out["logit_lengths"].cpu().numpy())]
    metrics = {"eval_loss": loss / len(utts), "eval_cer": character_error_rate(hyps, [u.text for u in utts])}
    for group, rows in report_rows(utts).items():
        metrics["eval_cer_" + group] = character_error_rate([hyps[i] for i in rows], [utts[i].text for i in rows])
    return metrics


@torch.no_grad()
def evaluate_accuracy(model: Conformer, utts: list[Utterance], batch_size: int = 32) -> dict[str, float]:
    """A keyword spotter on held-out clips: loss, accuracy, and accuracy by voice and SNR group."""
    model.eval()
    dev = next(model.parameters()).device
    right, loss = [], 0.0
    for i in range(0, len(utts), batch_size):
        waves, lengths, targets, _ = (t.to(dev) for t in label_batch(utts[i : i + batch_size], model.cfg.labels))
        logits = model(waves, lengths)["logits"]
        loss += F.cross_entropy(logits, targets).item() * len(lengths)
        right += (logits.argmax(-1) == targets).cpu().tolist()
    metrics = {"eval_loss": loss / len(utts), "eval_accuracy": float(np.mean(right))}
    for group, rows in report_rows(utts).items():
        metrics["eval_accuracy_" + group] = float(np.mean([right[i] for i in rows]))
    return metrics


def report_rows(utts: list[Utterance]) -> dict[str, list[int]]:
    """The spoken tasks' report groups (heard and unheard voices, SNR buckets) -> their utterances' indices."""
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(utts):
        for group in report_groups(u) if isinstance(u, SpokenUtterance) else ():
            groups.setdefault(group.replace(" ", "_"), []).append(i)
    return dict(sorted(groups.items()))


def train_speech(model: Conformer, tc: TrainConfig, progress: bool = True, eval_utterances: int = EVAL_UTTERANCES) -> TrainResult:
    torch.manual_seed(tc.seed)
    task = SpeechTask(model.cfg, tc, eval_utterances)
    return fit(model, lambda runner, w, n, y, m: {"loss": task.loss(_unwrapped(runner), w, n, y, m)}, task.batches,
               task.steps, tc, evaluate=lambda: task.evaluate(model), progress=progress)


def _unwrapped(runner):
    """The Conformer under DistributedDataParallel (its features and encode are called separately)."""
    return getattr(runner, "module", runner)


def train_conformer_checkpoint(out, preset: str = "tiny", task: str | None = None, data_file=None,
                               tc: TrainConfig | None = None, overrides: dict[str, Any] | None = None,
                               overwrite: bool = False, progress: bool = True,
                               eval_utterances: int = EVAL_UTTERANCES) -> TrainResult:
    """`edgeformer train --arch conformer`: a Conformer on the built-in speech task, written as a checkpoint."""
    if data_file:
        raise DataError("--arch conformer trains on a built-in speech task (--task audio-digits, spoken-digits or spoken-commands); "
                        "--data is for text models")
    data = speech_task(task)
    tc = tc or TrainConfig(**task_defaults("conformer", data.name).train_fields())  # the task's recipe
    check_output_dir(out, overwrite)
    cfg = conformer_config(preset, data.alphabet, data.labels, **(overrides or {}))
    torch.manual_seed(tc.seed)
    model = Conformer(cfg)

    def write(result: TrainResult, echo=None) -> None:
        """After every epoch (and at the end): a long run that is stopped keeps its last finished epoch."""
        if echo is not None:
            echo_metrics(result, echo)
        meta = {"task": data.name, "arch": "conformer", "preset": preset, "train_config": asdict(tc),
                "history": result.history, "seconds": round(result.seconds, 1), "parameters": model.num_parameters(),
                "sample_rate": SAMPLE_RATE, "max_task_seconds": data.max_seconds}
        if distributed_context().is_main:
            training = model.training
            save(model.eval(), out, records={TRAINING_FILE: meta}, overwrite=True)
            model.train(training)

    torch.manual_seed(tc.seed)
    task = SpeechTask(cfg, tc, eval_utterances, data)
    result = fit(model, lambda runner, w, n, y, m: {"loss": task.loss(_unwrapped(runner), w, n, y, m)}, task.batches,
                 task.steps, tc, evaluate=lambda: task.evaluate(model), on_epoch=write, progress=progress)
    write(result)
    distributed_context().barrier()
    return result
