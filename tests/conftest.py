"""Shared fixtures: tiny random-weight checkpoints and bundles exported once per session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from edgeformer import runtime
from edgeformer.modeling import ModelConfig, Transformer, save
from edgeformer.modeling.training.tokenizer import train_tokenizer

TINY = dict(vocab_size=300, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=64, dropout=0.0)


def make_checkpoint(path, seed: int = 0, tokenizer=None, **overrides):
    """A randomly initialised model saved as a checkpoint; returns (path, model)."""
    torch.manual_seed(seed)
    model = Transformer(ModelConfig.from_dict({**TINY, **overrides})).eval()
    save(model, path, tokenizer=tokenizer)
    return path, model


@pytest.fixture(scope="session")
def tokenizer():
    texts = ["the quick brown fox jumps over the lazy dog", "edge devices run small transformers"] * 50
    return train_tokenizer(texts, vocab_size=300)


@pytest.fixture(scope="session")
def encoder_ckpt(tmp_path_factory, tokenizer):
    path, _ = make_checkpoint(tmp_path_factory.mktemp("enc") / "ckpt", tokenizer=tokenizer, num_labels=3,
                              labels=["a", "b", "c"], vocab_size=tokenizer.vocab_size)
    return path


@pytest.fixture(scope="session")
def decoder_ckpt(tmp_path_factory):
    path, _ = make_checkpoint(tmp_path_factory.mktemp("dec") / "ckpt", seed=1, arch="decoder", positional="learned")
    return path


@pytest.fixture(scope="session")
def encoder_bundle(tmp_path_factory, encoder_ckpt):
    from edgeformer.export import export_bundle

    return export_bundle(encoder_ckpt, tmp_path_factory.mktemp("encb") / "bundle")


@pytest.fixture(scope="session")
def decoder_bundle(tmp_path_factory, decoder_ckpt):
    from edgeformer.export import export_bundle

    return export_bundle(decoder_ckpt, tmp_path_factory.mktemp("decb") / "bundle")


@pytest.fixture(scope="session")
def cached_decoder(tmp_path_factory):
    """(checkpoint, bundle exported with --kv-cache): a decoder with room for 64-token generations, no tokenizer."""
    from edgeformer.export import export_bundle

    root = tmp_path_factory.mktemp("cached")
    path, _ = make_checkpoint(root / "ckpt", seed=2, arch="decoder", positional="learned", max_len=128)
    return path, export_bundle(path, root / "bundle", kv_cache=True)


@pytest.fixture(scope="session")
def cached_text_decoder(tmp_path_factory, tokenizer):
    """A cached decoder bundle that reads text (the session tokenizer, whose <eos> stops generation)."""
    from edgeformer.export import export_bundle

    root = tmp_path_factory.mktemp("cachedtext")
    path, _ = make_checkpoint(root / "ckpt", seed=3, tokenizer=tokenizer, arch="decoder", positional="learned",
                              vocab_size=tokenizer.vocab_size)
    return path, export_bundle(path, root / "bundle", kv_cache=True)


@pytest.fixture(scope="session")
def plain():
    """The golden format-1 plain bundle, loaded once: a fixed target for bad-input and fuzz tests."""
    return runtime.load(Path(__file__).parent / "golden" / "v1" / "plain")


@pytest.fixture(scope="session")
def cached():
    """The golden format-1 key/value-cache bundle, loaded once."""
    return runtime.load(Path(__file__).parent / "golden" / "v1" / "cached")


def cli_in_process(*args) -> subprocess.CompletedProcess:
    """The CLI run in this process (no interpreter start and torch import per call: seconds each), read as a
    subprocess's result. Bad-input tests use it; the entry point itself is run as a subprocess elsewhere."""
    from click.testing import CliRunner

    from edgeformer.cli.main import cli

    r = CliRunner().invoke(cli, [str(a) for a in args])
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, r.stderr)
