"""Tiny random-weight image and speech bundles, exported once per test process and shared by the
modules that attack the media entry points (test_hardening_runtime, test_fuzz)."""

from __future__ import annotations

from pathlib import Path

_BUILT: dict[str, Path] = {}


def vit_bundle(root: Path) -> Path:
    """A one-channel ViT for 8x8 images (3 labels), exported under `root` on first use."""
    if "vit" not in _BUILT:
        import torch

        from edgeformer.export import export_bundle
        from edgeformer.modeling import ModelConfig, save
        from edgeformer.modeling.build import build_model

        torch.manual_seed(0)
        cfg = ModelConfig.from_dict(dict(arch="encoder", vocab_size=1, image_size=8, patch_size=4, num_channels=1,
                                         positional="learned", max_len=5, pooling="cls", num_labels=3,
                                         labels=["a", "b", "c"], d_model=32, n_heads=4, n_layers=1, d_ff=64, dropout=0.0))
        save(build_model(cfg).eval(), root / "vit-ckpt")
        export_bundle(root / "vit-ckpt", root / "vit-bundle")
        _BUILT["vit"] = root / "vit-bundle"
    return _BUILT["vit"]


def speech_bundle(root: Path) -> Path:
    """A one-block Conformer speech recogniser, exported under `root` on first use."""
    if "speech" not in _BUILT:
        import torch

        from edgeformer.export import export_bundle
        from edgeformer.modeling import save
        from edgeformer.modeling.models.conformer import Conformer
        from edgeformer.modeling.training.speech import conformer_config

        torch.manual_seed(0)
        save(Conformer(conformer_config("tiny", d_model=32, n_heads=4, n_layers=1, d_ff=64)).eval(), root / "asr-ckpt")
        export_bundle(root / "asr-ckpt", root / "asr-bundle")
        _BUILT["speech"] = root / "asr-bundle"
    return _BUILT["speech"]
