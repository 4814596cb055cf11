"""Train a byte-level BPE tokenizer (Hugging Face `tokenizers`) on the training texts."""

from __future__ import annotations

from typing import Iterable

from edgeformer.runtime.tokenizer import SPECIAL_TOKENS, TextTokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> TextTokenizer:
    """Byte-level BPE: any text encodes (no unknown characters); <pad> is id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tok)
