"""Checkpoints crafted to exhaust memory or crash the loader: every field is bounded, the config is
checked against the safetensors header before anything is allocated, and files stay in the folder."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from edgeformer.modeling import load
from edgeformer.modeling.checkpoint import CheckpointError
from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.runtime.errors import EdgeformerError

from .conftest import TINY, make_checkpoint


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "ckpt")[0]


def set_config(path, **fields):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(fields)
    (path / "config.json").write_text(json.dumps(cfg))


CRAFTED = [
    (dict(n_layers=1_000_000), r"n_layers=1000000; expected an integer in \[1, 256\]"),
    (dict(vocab_size=10**12), r"vocab_size=1000000000000; expected an integer in"),
    (dict(vocab_size=12_000_000), r"vocab_size=12000000; expected an integer in"),
    (dict(max_len=10**9), r"max_len=1000000000; expected an integer in"),
    (dict(num_labels=10**9), r"num_labels=1000000000; expected an integer in"),
    (dict(d_model=-32), r"d_model=-32; expected an integer in"),
    (dict(d_ff=-1), r"d_ff=-1"),
    (dict(patch_size=0), r"patch_size=0; expected an integer in \[1, 8192\]"),
    (dict(n_heads="4"), r"n_heads='4'; expected an integer"),
    (dict(n_layers=True), r"n_layers=True; expected an integer"),
    (dict(dropout="x"), r"dropout='x'; expected a number in \[0, 1\)"),
    (dict(layer_norm_eps=float("nan")), r"layer_norm_eps=nan"),
    (dict(layer_norm_eps=0), r"layer_norm_eps=0; expected a small positive number"),
    (dict(pad_id=300), r"pad_id=300; expected a token id below vocab_size 300"),
    (dict(pad_id="0"), r"pad_id='0'; expected an integer"),
    (dict(labels=5), r"labels=5; expected a list of label names"),
    (dict(embedding_norm=1), r"embedding_norm=1; expected true or false"),
    (dict(max_len=1 << 20, d_model=1024, n_heads=4), r"max_len x d_model = 1048576 x 1024 positions"),
    (dict(d_model=32, vocab_size=2_000_000), r"tensor 'embed.tok.weight' has shape \(300, 32\) but the config expects \(2000000, 32\)"),
    (dict(n_layers=3), r"lacks tensor 'blocks.2"),
    (dict(n_layers=1), r"has tensor 'blocks.1.*which the config does not build"),
]


@pytest.mark.parametrize("fields, message", CRAFTED)
def test_a_crafted_config_is_refused_in_one_config_error_line(ckpt, fields, message):
    set_config(ckpt, **fields)
    with pytest.raises(ConfigError, match=message) as e:
        load(ckpt)
    assert "\n" not in str(e.value)


def test_a_deeply_nested_config_is_refused(ckpt):
    (ckpt / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load(ckpt)


def test_truncated_weights_are_refused_before_loading(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeformerError, match="truncated"):
        load(ckpt)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_checkpoint_files_linked_outside_are_refused(tmp_path, tokenizer, name):
    path = make_checkpoint(tmp_path / "ckpt", tokenizer=tokenizer, vocab_size=tokenizer.vocab_size)[0]
    shutil.move(path / name, tmp_path / name)
    os.symlink(tmp_path / name, path / name)
    from edgeformer.modeling.checkpoint import load_tokenizer

    with pytest.raises(CheckpointError, match=f"{name} is a link to .*, outside"):
        load(path)
        load_tokenizer(path)


def test_the_presets_are_within_bounds():
    for preset in ("tiny", "small", "base"):
        for arch in ("encoder", "decoder", "seq2seq"):
            ModelConfig.from_preset(preset, arch=arch)
    ModelConfig.from_dict({**TINY, "image_size": 224, "patch_size": 16, "positional": "learned", "max_len": 197})


def test_crafted_configs_are_refused_under_a_memory_limit(ckpt):
    """Under an address-space limit of what the process holds plus 1.5 GiB, configs that would
    need gigabytes (a vocabulary the weights do not have, a deep stack) are refused, not allocated."""
    script = textwrap.dedent(f"""
        import json, resource, sys
        from pathlib import Path
        from edgeformer.modeling import load
        from edgeformer.runtime.errors import EdgeformerError
        vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 29), vm + (3 << 29)))
        path = Path({str(ckpt)!r})
        base = json.loads((path / "config.json").read_text())
        for fields in ({{"vocab_size": 2_000_000, "d_model": 1024, "n_heads": 4}}, {{"n_layers": 256, "d_model": 4096}},
                       {{"vocab_size": 12_000_000}}, {{"n_layers": 1_000_000}}):
            (path / "config.json").write_text(json.dumps({{**base, **fields}}))
            try:
                load(path)
            except EdgeformerError as e:
                print(type(e).__name__, str(e)[:60])
            else:
                sys.exit("loaded " + repr(fields))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("ConfigError") for line in lines), out.stdout
