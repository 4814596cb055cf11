"""edgeformer.deploy: a checked bundle -> a folder for one kind of device.

    from edgeformer.deploy import DeployOptions, deploy
    result = deploy("bundle/", "android", "bundle-android/", DeployOptions(fixed_shape={"batch": 1, "seq": 128}))

Targets (`TARGETS`): android and ios (ONNX Runtime format), arm64 (the bundle, checked on aarch64),
tensorrt and jetson (a TensorRT engine), triton (a Triton Inference Server model repository).
Each folder holds the artifact the device's runtime loads, a manifest that records what was
checked, on what and with which versions, and a README.md with the commands to run it there.
"""

from .folder import Check, Deployment, DeployCheckFailed, DeployError, DeployOptions, DeployResult, deploy
from .targets import TARGETS, target_names

__all__ = ["Check", "Deployment", "DeployCheckFailed", "DeployError", "DeployOptions", "DeployResult", "TARGETS",
           "deploy", "target_names"]
