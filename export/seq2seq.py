"""The parity gate of a seq2seq bundle (export.specs: encoder.onnx and the cached decoder model.onnx).

Random right-padded sources go through both encoders and their cross-attention keys/values are
compared at real positions; then decoder steps from the start token, each side fed its own
present keys/values as the next past.
"""

from __future__ import annotations

import numpy as np
import torch

from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer
from edgeformer.runtime.inputs import right_pad

from .parity import FLOAT32_ATOL, CaseParity, ParityReport, compare
from .specs import cache_names, cross_names


def default_seq2seq_cases(max_len: int) -> list[tuple[int, int, int]]:
    """(batch, source length, decoder steps): a one-token source, padded batches, the longest source."""
    return [(1, 1, 3), (3, min(9, max_len), 4), (2, min(33, max_len), 3), (2, max_len, 2)]


def check_seq2seq_parity(model: Seq2SeqTransformer, encoder, decoder, cases=None, atol: float = FLOAT32_ATOL,
                         seed: int = 0) -> ParityReport:
    """Random padded sources through both encoders, then decoder steps, each side fed its own outputs."""
    model = model.eval()
    cfg = model.cfg
    L = cfg.n_layers
    past_names, present_names = cache_names(L)
    cross = cross_names(L)
    rng = np.random.default_rng(seed)
    report = ParityReport(atol)
    for batch, src_len, steps in cases or default_seq2seq_cases(cfg.max_len):
        lengths = [src_len] + [int(n) for n in rng.integers(1, src_len + 1, size=batch - 1)]
        ids, mask = right_pad([rng.integers(0, cfg.vocab_size, size=n).tolist() for n in lengths], cfg.pad_id)
        with torch.no_grad():
            memory = model.cross_cache(model.encode(torch.from_numpy(ids), torch.from_numpy(mask)))
        got_cross = encoder({"input_ids": ids, "attention_mask": mask})
        valid = np.broadcast_to(mask.astype(bool)[:, None, :], (batch, cfg.n_heads, ids.shape[1]))
        results = [compare(f"cross.{i}.{kv}", getattr(layer, kv).numpy(), np.asarray(got_cross[f"cross.{i}.{kv}"]), valid)
                   for i, layer in enumerate(memory) for kv in ("key", "value")]
        report.cases.append(CaseParity(batch, ids.shape[1], min(lengths) < src_len, results))
        cache = model.empty_cache(batch)
        hd = cfg.head_dim
        past = {n: np.zeros((batch, cfg.n_heads, 0, hd), np.float32) for n in past_names}
        tokens = np.full((batch, 1), cfg.pad_id, dtype=np.int64)  # the start token
        for step in range(steps):
            with torch.no_grad():
                ref = model.decode(torch.from_numpy(tokens), memory, torch.from_numpy(mask), cache).numpy()
            got = decoder({"input_ids": tokens, "encoder_attention_mask": mask, **past,
                           **{n: got_cross[n] for n in cross}})
            results = [compare("logits", ref, np.asarray(got["logits"]), None)]
            results += [compare(f"present.{i}.{kv}", getattr(layer, kv).numpy(), np.asarray(got[f"present.{i}.{kv}"]), None)
                        for i, layer in enumerate(cache) for kv in ("key", "value")]
            report.cases.append(CaseParity(batch, 1, min(lengths) < src_len, results, past=step))
            past = {p: np.asarray(got[q]) for p, q in zip(past_names, present_names)}
            tokens = rng.integers(0, cfg.vocab_size, size=(batch, 1))
    return report
