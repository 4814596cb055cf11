"""export/kinds.py: every bundle kind is one entry in one table, chosen by the model's config, with
its spec and its parity gate; an unknown kind never reaches the pipeline."""

import pytest

from edgeformer.export.kinds import KINDS, kind_for
from edgeformer.export.specs import ExportError
from edgeformer.modeling import ModelConfig, Transformer
from edgeformer.modeling.build import build_model
from edgeformer.modeling.training.speech import conformer_config
from edgeformer.runtime.bundle import CACHED_DECODER, PLAIN, SEQ2SEQ

from .conftest import TINY

CASES = [  # (config overrides on TINY, kv_cache, registry entry)
    (dict(), False, "plain"),
    (dict(arch="decoder", positional="learned"), False, "plain"),
    (dict(arch="decoder", positional="learned"), True, "cached-decoder"),
    (dict(vocab_size=1, image_size=8, patch_size=4, num_channels=1, positional="learned", max_len=5, num_labels=2), False, "image"),
    (dict(arch="seq2seq"), False, "seq2seq"),
    (dict(arch="seq2seq"), True, "seq2seq"),
    (dict(arch="decoder", attention_kind="lsh", window=8, lsh_buckets=4), False, "lsh"),
]


@pytest.mark.parametrize("overrides, kv_cache, name", CASES)
def test_each_model_has_one_kind(overrides, kv_cache, name):
    assert kind_for(ModelConfig.from_dict({**TINY, **overrides}), kv_cache).name == name


def test_speech_is_its_own_kind_with_or_without_a_cache():
    cfg = conformer_config("tiny", d_model=32, n_heads=4, n_layers=1, d_ff=64)
    assert kind_for(cfg).name == kind_for(cfg, True).name == "speech"


def test_kind_names_are_unique_and_the_last_takes_every_model():
    assert len({k.name for k in KINDS}) == len(KINDS)
    assert KINDS[-1].takes(ModelConfig.from_dict(TINY), False)


@pytest.mark.parametrize("overrides, kv_cache, manifest_kind", [
    (dict(), False, PLAIN), (dict(arch="decoder", positional="learned"), True, CACHED_DECODER),
    (dict(arch="seq2seq"), False, SEQ2SEQ), (dict(arch="decoder", attention_kind="lsh", window=8, lsh_buckets=4), False, PLAIN)])
def test_each_spec_records_the_runtime_kind(overrides, kv_cache, manifest_kind):
    model = build_model(ModelConfig.from_dict({**TINY, **overrides}))
    assert kind_for(model.cfg, kv_cache).spec(model.eval(), None).kind == manifest_kind


def test_a_cache_for_an_encoder_is_refused_in_one_line():
    model = Transformer(ModelConfig.from_dict(TINY))
    with pytest.raises(ExportError, match="a key/value cache is for decoders; this checkpoint is an encoder"):
        kind_for(model.cfg, True).spec(model, None)
