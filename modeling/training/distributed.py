"""Data-parallel training under `torchrun`: DistributedDataParallel, one process per device.

`torchrun --nproc_per_node N edgeformer train ...` (or `... distill ...`) runs the same command
line in N processes. Each sees the same global batch (same seed, same order) and computes on its
own contiguous slice of the rows; DistributedDataParallel averages the gradients, and each rank's
loss is weighted by its share of the rows, so the update is the one a single process makes on
the whole batch. gloo on CPU, nccl on GPUs. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from edgeformer.modeling.config import ConfigError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` under DistributedDataParallel (which broadcasts rank 0's weights), or as is."""
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def shard(self, *tensors: torch.Tensor | None) -> tuple[list[torch.Tensor | None], float]:
        """This rank's rows of a global batch, and the weight for its mean loss.

        Weight = world_size * local rows / global rows: DDP averages gradients over ranks, so the
        weighted per-rank means add up to the global batch's mean. A rank left without rows (a
        last batch smaller than the world) computes on the whole batch with weight 0, so that it
        still takes part in the gradient exchange.
        """
        n = tensors[0].shape[0]
        if not self.enabled:
            return [t.to(self.device) if t is not None else None for t in tensors], 1.0
        lo, hi = n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size
        if hi == lo:
            return [t.to(self.device) if t is not None else None for t in tensors], 0.0
        return [t[lo:hi].to(self.device) if t is not None else None for t in tensors], self.world_size * (hi - lo) / n

    def global_sum(self, value: float) -> float:
        """The sum of `value` over ranks (for logging the global batch's loss)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def current() -> Distributed:
    """The process's place in a `torchrun` job, joining the process group on first use.

    Without torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) this is one process on the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                              "expected one process per GPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
        atexit.register(_leave)
    return Distributed(rank, world, device)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
