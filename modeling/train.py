"""Training: AdamW, linear warm-up then cosine decay, gradient clipping, evaluation every epoch.

`train` works on a model and prepared data; `train_checkpoint` is the whole `edgeformer train`
job (data, tokenizer, model, training, atomic checkpoint).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgeformer.runtime.tokenizer import TextTokenizer

from .checkpoint import TRAINING_FILE, save
from .config import ConfigError, ModelConfig
from .distributed import current as distributed_context
from .data import DEFAULT_TASK, ClassificationData, CorpusData, PairData, load_data_file, load_task
from .model import Transformer
from .seq2seq import build_model
from .seq2seq_task import Seq2SeqTask
from .tokenizer import train_tokenizer


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of all steps spent warming up
    grad_clip: float = 1.0
    seq_len: int = 128  # longest training sequence (capped by the model's max_len)
    seed: int = 0
    steps_per_epoch: int | None = None  # language modelling: windows sampled per epoch (default: one pass)


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def lr_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def _batches_classification(ids: list[list[int]], labels: list[int], batch_size: int, pad_id: int, g: torch.Generator | None):
    order = torch.randperm(len(ids), generator=g).tolist() if g is not None else list(range(len(ids)))
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        T = max(len(ids[j]) for j in chunk)
        x = torch.full((len(chunk), T), pad_id, dtype=torch.long)
        m = torch.zeros((len(chunk), T), dtype=torch.long)
        for r, j in enumerate(chunk):
            x[r, : len(ids[j])] = torch.tensor(ids[j])
            m[r, : len(ids[j])] = 1
        yield x, m, torch.tensor([labels[j] for j in chunk])


class _Task:
    """Turns prepared data into batches, a loss and an evaluation metric for one architecture."""

    def __init__(self, data, tok: TextTokenizer, cfg: ModelConfig, tc: TrainConfig):
        self.tc, self.cfg = tc, cfg
        self.seq = min(tc.seq_len, cfg.max_len)
        if isinstance(data, ClassificationData):
            enc = lambda rows: [tok.encode(t)[: self.seq] or [tok.pad_id] for t, _ in rows]  # noqa: E731
            self.train_ids, self.train_y = enc(data.train), [y for _, y in data.train]
            self.eval_ids, self.eval_y = enc(data.eval), [y for _, y in data.eval]
            self.steps = math.ceil(len(self.train_ids) / tc.batch_size)
        else:
            self.train_stream = torch.tensor(tok.encode(data.train), dtype=torch.long)
            self.eval_stream = torch.tensor(tok.encode(data.eval), dtype=torch.long)
            if len(self.train_stream) <= self.seq + 1 or len(self.eval_stream) <= self.seq + 1:
                raise ConfigError(f"the corpus is shorter than one training window of {self.seq + 1} tokens")
            self.steps = tc.steps_per_epoch or max(1, len(self.train_stream) // (tc.batch_size * self.seq))

    def batches(self, g: torch.Generator):
        if self.cfg.arch == "encoder":
            yield from _batches_classification(self.train_ids, self.train_y, self.tc.batch_size, self.cfg.pad_id, g)
            return
        for _ in range(self.steps):
            starts = torch.randint(0, len(self.train_stream) - self.seq - 1, (self.tc.batch_size,), generator=g)
            x = torch.stack([self.train_stream[s : s + self.seq + 1] for s in starts.tolist()])
            yield x[:, :-1], torch.ones_like(x[:, :-1]), x[:, 1:]

    def loss(self, model: Transformer, x, m, y) -> torch.Tensor:
        logits = model(x, m)["logits"]
        if self.cfg.arch == "encoder":
            return F.cross_entropy(logits, y)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model: Transformer) -> dict[str, float]:
        model.eval()
        dev = next(model.parameters()).device
        if self.cfg.arch == "encoder":
            correct, total, loss = 0, 0, 0.0
            for x, m, y in _batches_classification(self.eval_ids, self.eval_y, 64, self.cfg.pad_id, None):
                x, m, y = x.to(dev), m.to(dev), y.to(dev)
                logits = model(x, m)["logits"]
                loss += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(-1) == y).sum().item()
                total += len(y)
            return {"eval_loss": loss / total, "eval_accuracy": correct / total}
        # Non-overlapping windows over the held-out text: mean token loss and perplexity.
        n = (len(self.eval_stream) - 1) // self.seq
        x = self.eval_stream[: n * self.seq].view(n, self.seq).to(dev)
        y = self.eval_stream[1 : n * self.seq + 1].view(n, self.seq).to(dev)
        total = 0.0
        for i in range(0, n, 16):
            logits = model(x[i : i + 16])["logits"]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i : i + 16].reshape(-1), reduction="sum").item()
        loss = total / (n * self.seq)
        return {"eval_loss": loss, "eval_perplexity": math.exp(loss)}


def optimizer(module: torch.nn.Module, tc: TrainConfig, total_steps: int):
    """AdamW (no weight decay on biases and norms) and its warm-up + cosine schedule."""
    decay = [p for n, p in module.named_parameters() if p.dim() >= 2 and p.requires_grad]
    no_decay = [p for n, p in module.named_parameters() if p.dim() < 2 and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total_steps, max(1, int(tc.warmup * total_steps))))
    return opt, sched


def train(model: Transformer, data, tok: TextTokenizer, tc: TrainConfig, progress: bool = True) -> TrainResult:
    """Train `model` in place on `data`; evaluate on its held-out part after every epoch.

    Under torchrun the model runs under DistributedDataParallel (modeling/distributed.py): each
    rank computes on its rows of the same global batch.
    """
    torch.manual_seed(tc.seed)
    ddp = distributed_context()
    task = (Seq2SeqTask if isinstance(data, PairData) else _Task)(data, tok, model.cfg, tc)
    g = torch.Generator().manual_seed(tc.seed)
    model.to(ddp.device)
    runner = ddp.wrap(model)
    total = task.steps * tc.epochs
    opt, sched = optimizer(model, tc, total)
    result, start = TrainResult(), time.perf_counter()
    progress = progress and ddp.is_main
    bar = _progress(progress)
    with bar:
        job = bar.add_task("training", total=total)
        for epoch in range(1, tc.epochs + 1):
            model.train()
            running, count = 0.0, 0
            for batch in task.batches(g):
                (x, m, y), weight = ddp.shard(*batch)
                loss = task.loss(runner, x, m, y)
                opt.zero_grad(set_to_none=True)
                (loss * weight).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                opt.step()
                sched.step()
                running, count = running + ddp.global_sum(loss.item() * weight / ddp.world_size), count + 1
                bar.update(job, advance=1, description=f"epoch {epoch}/{tc.epochs} loss {running / count:.3f}")
            metrics = {"epoch": epoch, "train_loss": running / max(1, count), **task.evaluate(model)}
            result.history.append(metrics)
            shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch")
            if progress:
                bar.console.print(f"epoch {epoch}: {shown}")
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )


def prepare(arch: str, task: str | None, data_file: str | os.PathLike | None):
    if task and data_file:
        raise ConfigError("give --task or --data, not both")
    if data_file:
        return load_data_file(data_file, arch), f"file:{Path(data_file).name}"
    name = task or DEFAULT_TASK[arch]
    return load_task(name, arch), name


def train_checkpoint(
    out: str | os.PathLike,
    arch: str,
    preset: str = "tiny",
    task: str | None = None,
    data_file: str | os.PathLike | None = None,
    tc: TrainConfig | None = None,
    vocab_size: int = 2048,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """The `edgeformer train` job: build data, tokenizer and model, train, write the checkpoint."""
    tc = tc or TrainConfig()
    if Path(out).exists() and not overwrite:  # fail before spending minutes on training
        raise ConfigError(f"{out} already exists; choose another --out or pass --overwrite")
    data, task_name = prepare(arch, task, data_file)
    tok = train_tokenizer(data.texts, vocab_size)
    extra: dict[str, Any] = {"arch": arch, "vocab_size": tok.vocab_size, "pad_id": tok.pad_id}
    if isinstance(data, ClassificationData):
        extra.update(num_labels=len(data.labels), labels=list(data.labels))
    cfg = ModelConfig.from_preset(preset, **{**extra, **(overrides or {})})
    torch.manual_seed(tc.seed)
    model = build_model(cfg)
    result = train(model, data, tok, tc, progress=progress)
    meta = {"task": task_name, "preset": preset, "train_config": asdict(tc), "history": result.history,
            "seconds": round(result.seconds, 1), "parameters": model.num_parameters()}
    if distributed_context().is_main:
        save(model.cpu(), out, tokenizer=tok, records={TRAINING_FILE: meta}, overwrite=overwrite)
    distributed_context().barrier()
    return result
