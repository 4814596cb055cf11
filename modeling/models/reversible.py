"""Reversible residual blocks (RevNet, as in the Reformer): training memory that does not grow with depth.

The activation is carried as two halves, both starting as the embeddings. Block i computes

    y1 = x1 + Attention(LN1(x2))        x1 = y1 - Attention(LN1(x2))
    y2 = x2 + FeedForward(LN2(y1))      x2 = y2 - FeedForward(LN2(y1))

and the right-hand column recovers its inputs from its outputs, so training keeps only the last
block's output and recomputes each block's activations in the backward pass (`ReversibleStack`,
with each block's dropout replayed from the random state saved in the forward pass). At inference
(and on export) the same function runs as the plain loop `reversible_forward`; the model's output
is the mean of the two halves.
"""

from __future__ import annotations

import torch


def _attn(block, x, keep, cache=None, rope=None):
    return block.attn(block.ln1(x), keep, cache, rope)


def _ff(block, x):
    return block.ff(block.ln2(x))


class _RandomState:
    """The CPU (and CUDA) random state before a sublayer runs, to replay its dropout when recomputing."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.device)


class ReversibleStack(torch.autograd.Function):
    """All blocks at once; saves only the final halves and rebuilds the rest in backward."""

    @staticmethod
    def forward(ctx, x1, x2, blocks, keep, rope):
        ctx.blocks, ctx.keep, ctx.rope, ctx.states = blocks, keep, rope, []
        with torch.no_grad():
            for block in blocks:
                s_attn = _RandomState(x1.device)
                x1 = x1 + _attn(block, x2, keep, rope=rope)
                s_ff = _RandomState(x1.device)
                x2 = x2 + _ff(block, x1)
                ctx.states.append((s_attn, s_ff))
        ctx.save_for_backward(x1, x2)
        return x1, x2

    @staticmethod
    def backward(ctx, dy1, dy2):
        y1, y2 = ctx.saved_tensors
        devices = [y1.device] if y1.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # replaying dropout leaves the caller's random state alone
            return ReversibleStack._rebuild(ctx, y1, y2, dy1, dy2)

    @staticmethod
    def _rebuild(ctx, y1, y2, dy1, dy2):
        for block, (s_attn, s_ff) in zip(reversed(ctx.blocks), reversed(ctx.states)):
            with torch.enable_grad():
                y1 = y1.detach().requires_grad_()
                s_ff.restore()
                g = _ff(block, y1)
                torch.autograd.backward(g, dy2)  # parameter gradients accumulate here
            with torch.no_grad():
                x2 = y2 - g
                dx1 = dy1 + y1.grad
            with torch.enable_grad():
                x2 = x2.detach().requires_grad_()
                s_attn.restore()
                f = _attn(block, x2, ctx.keep, rope=ctx.rope)
                torch.autograd.backward(f, dx1)
            with torch.no_grad():
                x1 = y1 - f
                dx2 = dy2 + x2.grad
            y1, y2, dy1, dy2 = x1, x2, dx1, dx2
        return dy1, dy2, None, None, None


def reversible_forward(blocks, x: torch.Tensor, keep, caches=None, rope=None) -> torch.Tensor:
    """(B, T, C) through reversible `blocks` -> (B, T, C); recomputing in backward when training."""
    if torch.is_grad_enabled() and x.requires_grad and caches is None:
        x1, x2 = ReversibleStack.apply(x, x, list(blocks), keep, rope)
        return (x1 + x2) / 2
    x1 = x2 = x
    for i, block in enumerate(blocks):
        x1 = x1 + _attn(block, x2, keep, caches[i] if caches is not None else None, rope)
        x2 = x2 + _ff(block, x1)
    return (x1 + x2) / 2
