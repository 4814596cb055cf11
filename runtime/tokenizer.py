"""Text to token ids and back, through a Hugging Face `tokenizers` tokenizer.json.

`tokenizers` is an optional dependency of the runtime (`pip install edgeformer[text]`); the rest
of the runtime works on token ids without it. The tokenizer's own special-token template (BERT's
[CLS] ... [SEP]) is applied; its saved padding and truncation settings are not: padding is to the
longest text of a batch, and truncation is to the model's maximum length, reported, never silent.

Thread safety: one TextTokenizer serves many threads. Its `tokenizers.Tokenizer` is configured once
(no padding, no truncation) and never changed afterwards; truncation to a length uses a second,
private copy made once per length under a lock, so no call can see another call's setting.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import EdgeformerError, InputError
from .inputs import GLOBAL_MASK, first_positions

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # ids 0..3 in tokenizers edgeformer trains


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise EdgeformerError("text input needs the 'tokenizers' package; install edgeformer[text]") from None
    return tokenizers


@dataclass
class Batch:
    """Right-padded (B, T) int64 arrays ready to feed, and which texts were cut to fit."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: list[int] = field(default_factory=list)

    def feeds(self, names: Sequence[str], global_tokens: int | None = None) -> dict[str, np.ndarray]:
        """The arrays of `names` this batch holds. A Longformer's global_attention_mask marks the first
        `global_tokens` positions when that is given, and is otherwise left to the runtime's default
        (the same positions; a raw onnxruntime session needs it given)."""
        out = {}
        for name in names:
            if name in ("input_ids", "attention_mask", "token_type_ids"):
                out[name] = getattr(self, name)
            elif name == GLOBAL_MASK:
                if global_tokens is not None:
                    out[name] = first_positions(self.input_ids.shape, global_tokens)
            else:
                raise InputError(f"a text batch has no {name!r}; it holds input_ids, attention_mask and token_type_ids")
        return out

    def rows(self, n: int) -> "Batch":
        """The first `n` rows (a fixed-batch deployment's padding rows dropped)."""
        return Batch(self.input_ids[:n], self.attention_mask[:n], self.token_type_ids[:n],
                     [i for i in self.truncated if i < n])


class TextTokenizer:
    def __init__(self, tok):
        self.tok = tok
        padding = tok.padding or {}
        self.pad_id = padding.get("pad_id", self._first_id(PAD, "[PAD]") or 0)
        self.eos_id = self._first_id(EOS, "[SEP]", "<|endoftext|>")
        tok.no_padding()
        tok.no_truncation()
        self._truncating: dict[int, object] = {}  # max_length -> a copy that truncates to it
        self._lock = threading.Lock()

    def truncating(self, max_length: int):
        """A copy of the tokenizer that truncates to `max_length` (made once, then shared read-only)."""
        with self._lock:
            tok = self._truncating.get(max_length)
            if tok is None:
                tok = _tokenizers().Tokenizer.from_str(self.tok.to_str())
                tok.enable_truncation(max_length)
                self._truncating[max_length] = tok
            return tok

    def _first_id(self, *tokens: str) -> int | None:
        for t in tokens:
            i = self.tok.token_to_id(t)
            if i is not None:
                return i
        return None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TextTokenizer":
        try:
            return cls(_tokenizers().Tokenizer.from_file(str(path)))
        except EdgeformerError:
            raise
        except Exception as e:  # tokenizers raises a plain Exception for a bad file
            raise EdgeformerError(f"cannot read tokenizer {path}: {e}") from None

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids of `text`; `special=False` leaves out the tokens the tokenizer's template adds
        (a rendered chat template writes its own)."""
        return self.tok.encode(text, add_special_tokens=special).ids

    def token(self, id: int) -> str | None:
        return self.tok.id_to_token(int(id))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))

    def encode_batch(self, texts: Sequence[str], max_length: int, truncation: bool = True,
                     pad_to: int | None = None) -> Batch:
        """Tokenize `texts` into a padded batch (to the longest text, or to `pad_to` tokens).

        A text longer than `max_length` tokens is cut to it (special tokens kept) and listed in
        `Batch.truncated` when `truncation` is true; otherwise it is refused with an error.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise InputError("no texts given; expected at least one")
        encodings = self.tok.encode_batch(list(texts))
        too_long = [i for i, e in enumerate(encodings) if len(e.ids) > max_length]
        if too_long and not truncation:
            i = too_long[0]
            raise InputError(f"text {i} is {len(encodings[i].ids)} tokens; the model accepts at most {max_length} "
                             "(allow truncation or shorten it)")
        if too_long:
            for i, e in zip(too_long, self.truncating(max_length).encode_batch([texts[i] for i in too_long])):
                encodings[i] = e
        T = pad_to or max(1, max(len(e.ids) for e in encodings))
        ids = np.full((len(encodings), T), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), T), dtype=np.int64)
        types = np.zeros((len(encodings), T), dtype=np.int64)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            if n == 0:  # an empty string with no special tokens: one pad token, masked in
                ids[i, 0], mask[i, 0] = self.pad_id, 1
                continue
            ids[i, :n], mask[i, :n], types[i, :n] = e.ids, 1, e.type_ids
        return Batch(ids, mask, types, too_long)

    def save(self, path: str | os.PathLike) -> None:
        self.tok.save(str(path))
