"""modeling/build.py: every architecture is built from one table, and a checkpoint loads through a
single build on the meta device: weights, tied heads and the buffers derived from the config come
back exactly, and outputs equal the saved model's on padded batches of several shapes."""

import pytest
import torch
import torch.nn as nn

from edgeformer.modeling import ModelConfig, load, save
from edgeformer.modeling.build import ARCHITECTURES, build_model, materialize
from edgeformer.modeling.config import ARCHS
from edgeformer.modeling.models.conformer import Conformer
from edgeformer.modeling.models.transformer import Transformer
from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer
from edgeformer.modeling.training.speech import conformer_config

from .conftest import TINY

VARIANTS = {  # name: config overrides on TINY
    "encoder-sinusoidal": dict(num_labels=3),
    "encoder-learned-segments": dict(positional="learned", type_vocab_size=2, embedding_norm=True),
    "decoder-tied": dict(arch="decoder", positional="learned", tie_embeddings=True),
    "decoder-rotary": dict(arch="decoder", positional="rotary"),
    "decoder-lsh": dict(arch="decoder", attention_kind="lsh", window=8, lsh_buckets=4),
    "encoder-longformer": dict(attention_kind="longformer", window=8, global_tokens=2),
    "encoder-linformer": dict(attention_kind="linformer", linformer_k=16),
    "encoder-reversible": dict(reversible=True, norm="pre"),
    "seq2seq-tied": dict(arch="seq2seq", tie_embeddings=True),
    "vit": dict(vocab_size=1, image_size=8, patch_size=4, num_channels=1, positional="learned", max_len=5,
                pooling="cls", num_labels=4),
}


def config(name: str) -> ModelConfig:
    if name == "conformer":
        return conformer_config("tiny", d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)
    return ModelConfig.from_dict({**TINY, **VARIANTS[name]})


def outputs(model, cfg: ModelConfig, batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """The model's outputs on a random batch whose rows after the first are right-padded."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if cfg.arch == "conformer":
            n = 4000 + 97 * length
            lengths = torch.randint(2000, n + 1, (batch,), generator=g)
            lengths[0] = n
            return model(torch.randn(batch, n, generator=g) * 0.1, lengths)
        if cfg.vision:
            return model(pixel_values=torch.randn(batch, 1, 8, 8, generator=g))
        ids = torch.randint(1, cfg.vocab_size, (batch, length), generator=g)
        mask = torch.ones(batch, length, dtype=torch.long)
        for row in range(1, batch):
            mask[row, int(torch.randint(1, length + 1, (1,), generator=g)):] = 0
        if cfg.arch == "seq2seq":
            return model(ids, mask, decoder_input_ids=ids[:, : max(1, length // 2)])
        return model(ids, mask)


def test_every_architecture_has_one_class():
    assert set(ARCHITECTURES) == set(ARCHS)
    assert type(build_model(config("seq2seq-tied"))) is Seq2SeqTransformer
    assert type(build_model(config("conformer"))) is Conformer
    assert type(build_model(config("vit"))) is Transformer


@pytest.mark.parametrize("name", [*VARIANTS, "conformer"])
def test_a_loaded_checkpoint_equals_the_saved_model(tmp_path, name):
    cfg = config(name)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if name == "conformer":  # statistics that differ from a fresh build's, so loading them is checked
        for block in model.blocks:
            block.conv.batch_norm.running_mean.normal_(0, 0.5)
    save(model, tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt")
    assert type(loaded) is type(model) and not loaded.training
    saved_buffers = dict(model.named_buffers())
    loaded_buffers = dict(loaded.named_buffers())  # derived ones (position tables, log-mel) included
    assert saved_buffers.keys() == loaded_buffers.keys()
    for key, value in {**dict(model.named_parameters()), **saved_buffers}.items():
        got = dict(loaded.named_parameters()).get(key, loaded_buffers.get(key))
        assert got.device.type == "cpu" and got.dtype == value.dtype and torch.equal(got, value), key
    if cfg.tie_embeddings and cfg.arch in ("decoder", "seq2seq"):
        assert loaded.lm_head.weight is loaded.embed.tok.weight
    for seed, (batch, length) in enumerate([(1, 5), (3, 17), (2, 64)]):
        want, got = outputs(model, cfg, batch, length, seed), outputs(loaded, cfg, batch, length, seed)
        for key in want:
            assert torch.allclose(got[key], want[key], atol=0, rtol=0), (key, batch, length)


def test_materialize_refuses_a_derived_buffer_it_cannot_compute_again():
    class Table(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("steps", torch.arange(4.0), persistent=False)

    with torch.device("meta"):
        model = nn.Sequential(Table())
    with pytest.raises(TypeError, match="Table.steps is an unsaved buffer"):
        materialize(model)


def test_materialize_keeps_tied_weights_tied():
    model = materialize(build_model(config("decoder-tied"), meta=True))
    assert model.lm_head.weight is model.embed.tok.weight and model.lm_head.weight.device.type == "cpu"


def test_a_meta_build_allocates_nothing():
    model = build_model(ModelConfig.from_preset("base", arch="decoder"), meta=True)
    assert {t.device.type for t in model.parameters()} == {"meta"}
