"""The training loop every job runs through (`train`, `distill`, and future model families).

`fit` owns the epochs: AdamW with warm-up then cosine decay, sharding under torchrun, backward,
gradient clipping, the optimizer and schedule steps, the progress bar, and an evaluation after
every epoch. A job describes only what is its own: the module to train, the batches, a step that
computes the losses, the evaluation, and what to do after each epoch (print, write a checkpoint).

Under torchrun (modeling/training/distributed.py) every process draws the same global batch and computes on
its share of the rows; each rank's mean loss is weighted by its share, so DistributedDataParallel's
averaged gradients are the single-process update on the whole batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from edgeformer.modeling.training.distributed import current as distributed_context

# (runner, *rows of the batch) -> {"loss": what to minimise, **other parts to log}; runner is the
# trained module, under DistributedDataParallel when distributed
Step = Callable[..., dict[str, torch.Tensor]]
Echo = Callable[..., None]  # prints under the progress bar (rank 0, progress on); a no-op otherwise


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
    history: list[dict[str, float]] = field(default_factory=list)  # one entry of metrics per epoch
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


def optimizer(module: torch.nn.Module, tc: TrainConfig, total_steps: int):
    """AdamW (no weight decay on biases and norms) and its warm-up + cosine schedule."""
    decay = [p for n, p in module.named_parameters() if p.dim() >= 2 and p.requires_grad]
    no_decay = [p for n, p in module.named_parameters() if p.dim() < 2 and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total_steps, max(1, int(tc.warmup * total_steps))))
    return opt, sched


def echo_metrics(run: TrainResult, echo: Echo) -> None:
    """The default end of an epoch: one line of its metrics."""
    metrics = run.history[-1]
    shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch")
    echo(f"epoch {metrics['epoch']}: {shown}")


def fit(
    module: torch.nn.Module,
    step: Step,
    batches: Callable[[torch.Generator], Iterable[tuple]],
    steps: int,
    tc: TrainConfig,
    *,
    evaluate: Callable[[], dict[str, float]],
    on_epoch: Callable[[TrainResult, Echo], None] = echo_metrics,
    progress: bool = True,
    label: str = "training",
) -> TrainResult:
    """Train `module` in place for `tc.epochs` epochs of at most `steps` batches each.

    `batches(generator)` yields one epoch's global batches (tuples of tensors, rows first, None
    allowed), drawn from the generator seeded with `tc.seed`; `step(runner, *rows)` returns the
    losses on this process's rows, "loss" the one minimised, every entry logged as `train_<name>`
    (the mean over the epoch's global batches). After each epoch the history gets
    {"epoch", train_*, **evaluate()}, then `on_epoch(result, echo)` runs (printing, checkpoints).
    """
    ddp = distributed_context()
    module.to(ddp.device)
    runner = ddp.wrap(module)
    total = steps * tc.epochs
    opt, sched = optimizer(module, tc, total)
    g = torch.Generator().manual_seed(tc.seed)
    result, start = TrainResult(), time.perf_counter()
    show = progress and ddp.is_main
    bar = _progress(show)
    echo: Echo = bar.console.print if show else _silent
    with bar:
        job = bar.add_task(label, total=total)
        for epoch in range(1, tc.epochs + 1):
            module.train()
            running, count = {"loss": 0.0}, 0
            for _, batch in zip(range(steps), batches(g)):
                rows, share = ddp.shard(*batch)
                losses = step(runner, *rows)
                opt.zero_grad(set_to_none=True)
                (losses["loss"] * share).backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), tc.grad_clip)
                opt.step()
                sched.step()
                count += 1
                for k, v in losses.items():  # the global batch's mean: the ranks' weighted means summed
                    running[k] = running.get(k, 0.0) + ddp.global_sum(v.item() * share / ddp.world_size)
                bar.update(job, advance=1, description=f"epoch {epoch}/{tc.epochs} loss {running['loss'] / count:.4f}")
            result.history.append({"epoch": epoch, **{f"train_{k}": v / max(1, count) for k, v in running.items()},
                                   **evaluate()})
            result.seconds = time.perf_counter() - start
            on_epoch(result, echo)
    module.eval()
    result.seconds = time.perf_counter() - start
    return result


def _silent(*args, **kwargs) -> None:
    pass


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )
