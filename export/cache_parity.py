"""The parity gate for a decoder exported with a key/value cache: a prompt, then decode steps.

Each case feeds a left-padded prompt (rows after the first shortened by random amounts) with an
empty past, then several single-token steps that feed each side its own present keys/values
back as the past. PyTorch runs the same steps with its own cache (`Transformer(cache=...)`).
Logits and present keys/values are compared at real (unpadded) positions after every step.

The context's end is reached without a prompt that long: a case may start from a past of P tokens
(a short prompt's keys and values, repeated; the same tensors on both sides, the second row's oldest
tokens masked as a shorter history), then a short prompt at positions P.. and steps to the last position. A prompt of
max_len - 3 tokens ran PyTorch and the graph through four full prefills: minutes for an 8192-token
model; the longest real prompt is LONG_PROMPT tokens, which every small model's context still covers.

`logits_to_keep` is exercised both ways: the prompt runs with 0 (every position's logits, as
teacher-forced evaluation reads them) and again with 1 (the last row, as generation reads it:
"logits[-1:]" in the report), on both sides; decode steps alternate 1 and 0.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from edgeformer.modeling.models.transformer import LayerCache, Transformer
from edgeformer.runtime.bundle import LOGITS_TO_KEEP
from edgeformer.runtime.inputs import left_pad, next_positions

from .specs import cache_names
from .parity import FLOAT32_ATOL, CaseParity, ParityReport, compare


LONG_PROMPT = 512
PAST_SOURCE = 64  # the prompt whose keys and values, repeated, make a long past


def default_cache_cases(max_len: int) -> list[tuple[int, ...]]:
    """(batch, prompt length, decode steps[, past]): a one-token prompt, a long one, padded batches, and the
    context's end (by a long prompt where the context is short, else after a past of P tokens)."""
    cases = [(1, 1, 3), (1, 16, 2), (3, 7, 4), (2, 33, 2), (2, min(max_len - 3, LONG_PROMPT), 3)]
    cases = [(b, max(1, min(t, max_len - s)), s) for b, t, s in cases]
    if max_len - 3 > LONG_PROMPT:
        cases.append((2, 4, 3, max_len - 7))
    return cases


def check_cache_parity(
    model: Transformer,
    run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
    cases: list[tuple[int, int, int]] | None = None,
    atol: float = FLOAT32_ATOL,
    seed: int = 0,
) -> ParityReport:
    """Prompt then decode steps through `model` (PyTorch, cached) and `run` (the cached bundle)."""
    model = model.eval()
    cfg = model.cfg
    rng = np.random.default_rng(seed)
    past_names, present_names = cache_names(cfg.n_layers)
    report = ParityReport(atol)
    for batch, prompt_len, steps, *rest in cases or default_cache_cases(cfg.max_len):
        P = rest[0] if rest else 0
        lengths = [prompt_len] * batch if P else [prompt_len] + [int(n) for n in rng.integers(1, prompt_len + 1, size=batch - 1)]
        prompts = [rng.integers(0, cfg.vocab_size, size=n).tolist() for n in lengths]
        ids, mask = left_pad(prompts, cfg.pad_id)
        past, history = long_past(model, batch, P, rng)
        cache = torch_cache(past)
        mask = np.concatenate([history, mask], axis=1)
        positions = next_positions(mask, ids.shape[1])
        for step in range(steps + 1):
            keep = 0 if step % 2 == 0 else 1
            feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **past,
                     LOGITS_TO_KEEP: np.array([keep], dtype=np.int64)}
            ref = _torch_logits(model, feeds, cache, keep)
            got = run(feeds)
            T = ids.shape[1]
            valid_new = mask[:, -T:].astype(bool)  # (B, T)
            valid_all = mask.astype(bool)[:, None, :]  # (B, 1, S): broadcast over heads
            valid_all = np.broadcast_to(valid_all, (batch, cfg.kv_heads, mask.shape[1]))
            results = [compare("logits", ref, np.asarray(got["logits"]), valid_new[:, -ref.shape[1]:])]
            if step == 0:  # the prompt again, asking for the last position only (a prompt's last token is real)
                last = _torch_logits(model, feeds, torch_cache(past), 1)
                got_last = run({**feeds, LOGITS_TO_KEEP: np.array([1], dtype=np.int64)})
                results.append(compare("logits[-1:]", last, np.asarray(got_last["logits"]), None))
            for i, layer in enumerate(cache):
                for kv, tensor in (("key", layer.key), ("value", layer.value)):
                    name = f"present.{i}.{kv}"
                    results.append(compare(name, tensor.numpy(), np.asarray(got[name]), valid_all))
            report.cases.append(CaseParity(batch, T, batch > 1 and (min(lengths) < prompt_len or not history.all()),
                                           results, past=mask.shape[1] - T))
            # The next step: one random token per row, after everything so far.
            past = {p: np.asarray(got[q]) for p, q in zip(past_names, present_names)}
            ids = rng.integers(0, cfg.vocab_size, size=(batch, 1))
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=mask.dtype)], axis=1)
            positions = next_positions(mask, 1)
    return report


def long_past(model: Transformer, batch: int, P: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A past of P tokens, {past name: (B, Hkv, P, hd)}, and its (B, P) mask, whose second row's oldest tokens are
    masked (a shorter history). P = 0: an empty past.

    The keys and values are PyTorch's own for a random prompt of up to PAST_SOURCE tokens, repeated to P: real
    magnitudes and means. Random normal ones averaged over thousands of keys cancel to near zero, and float32's
    summation order then decides more of the result than it ever does on a real cache."""
    cfg = model.cfg
    past_names, _ = cache_names(cfg.n_layers)
    n = min(P, PAST_SOURCE)
    cache = model.empty_cache(1)
    if n:
        _torch_logits(model, {"input_ids": rng.integers(0, cfg.vocab_size, size=(1, n)),
                              "attention_mask": np.ones((1, n), np.int64), "position_ids": np.arange(n)[None]}, cache, 1)
    repeat = np.arange(P) % max(n, 1)
    tensors = [t.numpy()[:, :, repeat] for layer in cache for t in (layer.key, layer.value)]  # (1, Hkv, P, hd)
    past = {name: np.ascontiguousarray(np.broadcast_to(t, (batch,) + t.shape[1:])) for name, t in zip(past_names, tensors)}
    history = np.ones((batch, P), dtype=np.int64)
    if batch > 1 and P > 1:
        history[1, : int(rng.integers(1, P))] = 0
    return past, history


def torch_cache(past: dict[str, np.ndarray]) -> list[LayerCache]:
    """PyTorch's cache holding copies of the past tensors (layer by layer, key before value, as cache_names)."""
    tensors = [torch.from_numpy(a.copy()) for a in past.values()]
    return [LayerCache(k, v) for k, v in zip(tensors[0::2], tensors[1::2])]


def _torch_logits(model: Transformer, feeds: Mapping[str, np.ndarray], cache, keep: int) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]),
                     position_ids=torch.from_numpy(feeds["position_ids"]), cache=cache,
                     logits_to_keep=keep)["logits"].numpy()
