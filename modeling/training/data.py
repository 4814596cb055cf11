"""Training batches in PyTorch: rows of token ids -> padded tensors (`padded_batches`) and batches of
rows of similar length (`similar_length_chunks`).

The data itself (the built-in tasks and the user's files) is torch-free and lives in
edgeformer.tasks.text; its names are re-exported here for the training code that reads them.
"""

from __future__ import annotations

from typing import Iterator

import torch

from edgeformer.tasks.text import (DEFAULT_TASK, STDLIB_AREAS, TASKS, ClassificationData, CorpusData, DataError,  # noqa: F401
                                   PairData, TextData, load_data_file, load_task, load_texts, pydoc_corpus,
                                   python_paragraphs, read_data_text, reverse_words, sentences, split_classification,
                                   split_corpus, split_texts, stdlib_topics)


def padded_batches(ids: list[list[int]], labels: list[int] | None, batch_size: int, pad_id: int,
                   g: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(ids, mask, labels) batches of rows padded to their longest: shuffled by `g`, in order without it.

    Without `labels` the third item is None.
    """
    order = torch.randperm(len(ids), generator=g).tolist() if g is not None else list(range(len(ids)))
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        T = max(len(ids[j]) for j in chunk)
        x = torch.full((len(chunk), T), pad_id, dtype=torch.long)
        m = torch.zeros((len(chunk), T), dtype=torch.long)
        for r, j in enumerate(chunk):
            x[r, : len(ids[j])] = torch.tensor(ids[j])
            m[r, : len(ids[j])] = 1
        yield x, m, torch.tensor([labels[j] for j in chunk]) if labels is not None else None


def similar_length_chunks(lengths: list[int], batch_size: int, g: torch.Generator) -> list[list[int]]:
    """Random batches (row indices) of rows of similar length, in random order.

    Rows are shuffled, sorted by length within pools of 16 batches (so batches stay random samples),
    cut into batches, and the batches shuffled: texts of 5 to 100 tokens padded to the longest of
    random batches spend most of the compute on pad tokens.
    """
    order = torch.randperm(len(lengths), generator=g).tolist()
    pool = 16 * batch_size
    chunks = []
    for i in range(0, len(order), pool):
        by_len = sorted(order[i : i + pool], key=lambda j: lengths[j])
        chunks += [by_len[k : k + batch_size] for k in range(0, len(by_len), batch_size)]
    return [chunks[c] for c in torch.randperm(len(chunks), generator=g).tolist()]
