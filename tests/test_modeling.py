import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeformer.modeling import PRESETS, ModelConfig, Transformer, load, save
from edgeformer.modeling.checkpoint import CheckpointError
from edgeformer.modeling.config import AttentionConfig, ConfigError, SpeechConfig, VisionConfig
from edgeformer.modeling.models.transformer import attention_keep_mask, sinusoidal_table

from .conftest import TINY, make_checkpoint


def test_sinusoidal_table_follows_the_paper():
    d = 16
    pe = sinusoidal_table(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_position_tables_are_the_float64_values_rounded_once():
    """Long tables in float32 arithmetic drift by 1e-4 at the far positions, and by a different amount
    depending on which vectorized kernel ran: every process must build exactly the same table."""
    from edgeformer.modeling.models.rotary import rotary_tables

    n, d = 4096, 64
    angle = np.arange(n, dtype=np.float64)[:, None] / 10000.0 ** (np.arange(0, d, 2) / d)  # (n, d/2)
    pe = sinusoidal_table(n, d).numpy()
    np.testing.assert_allclose(pe[:, 0::2], np.sin(angle), rtol=0, atol=1e-7)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(angle), rtol=0, atol=1e-7)
    cos, sin = rotary_tables(n, d)
    np.testing.assert_allclose(cos.numpy(), np.cos(np.concatenate([angle, angle], 1)), rtol=0, atol=1e-7)
    np.testing.assert_allclose(sin.numpy(), np.sin(np.concatenate([angle, angle], 1)), rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build(name):
    cfg = ModelConfig.from_preset(name, vocab_size=100)
    assert cfg.d_model % cfg.n_heads == 0
    assert Transformer(cfg).num_parameters() > 0


@pytest.mark.parametrize("bad, msg", [
    (dict(arch="rnn"), "arch='rnn' is not supported"),
    (dict(d_model=30, n_heads=4), "not divisible"),
    (dict(activation="swish"), "activation"),
    (dict(dropout=1.5), "dropout"),
    (dict(n_layers=0), "n_layers"),
    (dict(arch="decoder", num_labels=2), "decoder predicts tokens"),
])
def test_bad_config_is_refused(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        ModelConfig.from_dict({**TINY, **bad})


def test_unknown_preset_and_unknown_field():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        ModelConfig.from_preset("huge")
    with pytest.raises(ConfigError, match="unknown config field"):
        ModelConfig.from_dict({**TINY, "n_experts": 8})
    # An older config lacking newer fields still loads with defaults.
    assert ModelConfig.from_dict({"arch": "decoder", "vocab_size": 10}).pooling == "mean"


GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("v*/*checkpoint/config.json")), ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_written_config_reads_into_its_parts_and_is_stored_unchanged(path):
    stored = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("format", "format_version")}
    cfg = ModelConfig.from_dict(stored)
    written = cfg.to_dict()
    assert {k: written[k] for k in stored} == stored  # a version 1 file lacks the fields added since: their defaults
    if path.parent.parent.name != "v1":
        assert json.dumps(written) == json.dumps(stored)  # same keys, same order, same values
    assert (cfg.vision is not None) == bool(stored.get("image_size")) and (cfg.speech is not None) == (cfg.arch == "conformer")
    assert cfg.attention.kind == stored.get("attention_kind", "full")


def test_parts_are_what_the_model_has():
    text = ModelConfig.from_dict({**TINY, "attention_kind": "local", "window": 8})
    assert text.attention == AttentionConfig(kind="local", window=8) and text.vision is None and text.speech is None
    vit = ModelConfig(**{**TINY, "positional": "learned", "max_len": 5}, vision=VisionConfig(image_size=8, patch_size=4))
    assert vit.input_names == ["pixel_values"] and vit.to_dict()["image_size"] == 8 and vit.vision.num_patches == 4
    assert vit.with_fields(num_channels=1).vision == VisionConfig(8, 4, 1)
    asr = ModelConfig.from_dict({**TINY, "arch": "conformer", "vocab_size": 4, "alphabet": "abc", "n_mels": 16})
    assert asr.speech == SpeechConfig(alphabet="abc", n_mels=16) and asr.input_names == ["waveforms", "lengths"]
    for bad, message in ((dict(attention={"kind": "local"}), "attention=.*expected a AttentionConfig"),
                         (dict(speech=SpeechConfig("abc")), "a encoder has no speech part"),
                         (dict(vision=VisionConfig(0)), "image_size=0; a vision part needs image_size > 0")):
        with pytest.raises(ConfigError, match=message):
            ModelConfig(**TINY, **bad)
    with pytest.raises(ConfigError, match="a conformer needs its speech part"):
        ModelConfig(**{**TINY, "arch": "conformer"})


def test_keep_mask_never_leaves_a_row_empty():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])  # left- and right-padded
    for causal in (False, True):
        keep = attention_keep_mask(mask, causal)
        assert keep.shape == (2, 1, 4, 4)
        assert keep.any(-1).all()
    keep = attention_keep_mask(mask, causal=True)
    assert not keep[1, 0, 1, 2]  # no peeking at the future
    assert keep[1, 0, 2, 0] and not keep[1, 0, 1, 3]


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_padding_does_not_change_real_positions(arch):
    """Outputs at real tokens must not depend on what sits in the padded positions."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict(dict(**TINY, arch=arch, num_labels=0 if arch == "decoder" else 3))).eval()
    ids = torch.randint(0, TINY["vocab_size"], (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    other = ids.clone()
    other[1, 6:] = torch.randint(0, TINY["vocab_size"], (4,))
    a, b = model(ids, mask), model(other, mask)
    key = "logits" if arch == "decoder" else "last_hidden_state"
    assert torch.allclose(a[key][1, :6], b[key][1, :6], atol=1e-6)
    assert torch.isfinite(a[key]).all()
    if arch == "encoder":
        assert torch.allclose(a["logits"], b["logits"], atol=1e-6)
        # and a padded row equals the same sequence without padding
        alone = model(ids[1:, :6], mask[1:, :6])
        assert torch.allclose(alone["logits"][0], a["logits"][1], atol=1e-5)


def test_decoder_is_causal():
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict(dict(**TINY, arch="decoder"))).eval()
    ids = torch.randint(0, 300, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 300
    a, b = model(ids)["logits"], model(changed)["logits"]
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:])


def test_too_long_sequence_is_refused():
    model = Transformer(ModelConfig.from_dict(TINY))
    with pytest.raises(ConfigError, match="at most 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(arch="decoder", tie_embeddings=True),
    dict(arch="decoder", tie_embeddings=False, positional="learned", norm="post", activation="relu"),
    dict(num_labels=4, pooling="cls"),
])
def test_checkpoint_round_trip(tmp_path, overrides):
    path, model = make_checkpoint(tmp_path / "ckpt", **overrides)
    loaded = load(path)
    ids = torch.randint(0, 300, (2, 9))
    for k, v in model(ids).items():
        assert torch.equal(v, loaded(ids)[k])
    if overrides.get("tie_embeddings"):
        assert loaded.lm_head.weight.data_ptr() == loaded.embed.tok.weight.data_ptr()


def test_bad_checkpoints_are_refused_by_name(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="has no config.json"):
        load(empty)
    path, _ = make_checkpoint(tmp_path / "ckpt")
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load(path)
    weights.unlink()
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="pickle and is never loaded"):
        load(path)


def test_config_and_weights_that_disagree_name_the_tensor(tmp_path):
    path, _ = make_checkpoint(tmp_path / "ckpt")
    cfg = (path / "config.json").read_text().replace('"d_ff": 64', '"d_ff": 96')
    (path / "config.json").write_text(cfg)
    with pytest.raises(ConfigError, match=r"tensor 'blocks.0.ff.fc1.bias' has shape \(64,\) but the config expects \(96,\)"):
        load(path)


def test_save_refuses_to_clobber_and_leaves_nothing_on_failure(tmp_path):
    path, model = make_checkpoint(tmp_path / "ckpt")
    with pytest.raises(Exception, match="already exists"):
        save(model, path)

    class Boom(Exception):
        pass

    from edgeformer.runtime.artifacts import atomic_directory
    with pytest.raises(Boom):
        with atomic_directory(tmp_path / "half") as tmp:
            (tmp / "config.json").write_text("{}")
            raise Boom()
    assert not (tmp_path / "half").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
