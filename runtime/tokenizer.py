"""Text to token ids and back, through a Hugging Face `tokenizers` tokenizer.json.

`tokenizers` is an optional dependency of the runtime (`pip install edgeformer[text]`); the rest
of the runtime works on token ids without it.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .errors import EdgeformerError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # ids 0..3 in tokenizers edgeformer trains


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise EdgeformerError("text input needs the 'tokenizers' package; install edgeformer[text]") from None
    return tokenizers


class TextTokenizer:
    def __init__(self, tok):
        self.tok = tok
        self.pad_id = tok.token_to_id(PAD) or 0
        self.eos_id = tok.token_to_id(EOS)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TextTokenizer":
        try:
            return cls(_tokenizers().Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises a plain Exception for a bad file
            raise EdgeformerError(f"cannot read tokenizer {path}: {e}") from None

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))

    def encode_batch(
        self, texts: Sequence[str], max_length: int, truncation: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), right-padded to the longest text, each (B, T) int64.

        Texts longer than `max_length` tokens are cut to it when `truncation` is true; otherwise
        they are refused with an error naming the text and its length.
        """
        if not texts:
            raise EdgeformerError("no texts given; expected at least one")
        encoded = [self.encode(t) for t in texts]
        for i, ids in enumerate(encoded):
            if len(ids) > max_length and not truncation:
                raise EdgeformerError(f"text {i} is {len(ids)} tokens; the model accepts at most {max_length}")
        encoded = [ids[:max_length] or [self.pad_id] for ids in encoded]
        T = max(len(e) for e in encoded)
        ids = np.full((len(encoded), T), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encoded), T), dtype=np.int64)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = e
            mask[i, : len(e)] = 1
        return ids, mask

    def save(self, path: str | os.PathLike) -> None:
        self.tok.save(str(path))
