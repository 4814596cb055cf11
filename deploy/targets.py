"""The deploy targets: one table, each entry naming the module that builds its folder.

A target module has two functions:
    refuse(bundle, target, manifest, options) -> None
        raise DeployError (one line) for anything it cannot take, before a byte is written: a
        missing tool, a wrong bundle kind. `manifest` is the deployment's (fixed shapes applied).
    build(bundle, target, manifest, work, options, progress) -> Deployment
        write the device's artifact into `work` (a temporary folder) and run the target's checks
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    module: str  # edgeformer.deploy.<module>
    summary: str
    fixed_shape: str = ""  # what --fixed-shape makes of this target's artifact; "" where it is refused
    packed_attention: bool = False  # runs onnxruntime's com.microsoft.Attention (`export --attention packed`)

    def load(self):
        return importlib.import_module(f"edgeformer.deploy.{self.module}")


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("android", "mobile", "ONNX Runtime format (model.ort) for onnxruntime-android, with NNAPI coverage",
           "a graph with static shapes, for NNAPI"),
    Target("ios", "mobile", "ONNX Runtime format (model.ort) for onnxruntime-objc/c, with CoreML coverage",
           "a graph with static shapes, for CoreML"),
    Target("arm64", "arm64", "the bundle for aarch64 CPUs (Raspberry Pi, Jetson CPU, Graviton), checked on aarch64",
           packed_attention=True),
    Target("tensorrt", "tensorrt", "a TensorRT engine for this machine's NVIDIA GPU",
           "an engine whose optimization profile is that one shape"),
    Target("jetson", "tensorrt", "a TensorRT engine built on a Jetson board (JetPack 6: TensorRT 10.3)",
           "an engine whose optimization profile is that one shape"),
    Target("triton", "triton", "a Triton Inference Server model repository (config.pbtxt + model)",
           "config.pbtxt dims of that shape (a fixed batch: no dynamic batching)", packed_attention=True),
    Target("web", "web", "a static folder for the browser (edgeformer.js on onnxruntime-web), checked in Chromium"),
]}


def target_names() -> list[str]:
    return list(TARGETS)


def packed_attention_targets() -> list[str]:
    """The targets whose runtime is onnxruntime's full CPU/CUDA build, which has the packed graph's kernel."""
    return [t.name for t in TARGETS.values() if t.packed_attention]


def fixed_shape_targets() -> list[str]:
    """The targets that take --fixed-shape; arm64 and web run the bundle's graph with its dynamic shapes."""
    return [t.name for t in TARGETS.values() if t.fixed_shape]
