"""edgeformer.runtime: run an edgeformer bundle with numpy and ONNX Runtime, without PyTorch.

    from edgeformer import runtime
    model = runtime.load("bundle/")
    out = model({"input_ids": ids, "attention_mask": mask})   # dict of numpy arrays
"""

from .bundle import Bundle, Manifest, TensorSpec, open_bundle
from .errors import BundleError, EdgeformerError, InputError
from .facade import BundleModel
from .model import Model, load

__all__ = ["Bundle", "BundleError", "BundleModel", "EdgeformerError", "InputError", "Manifest", "Model", "TensorSpec", "load", "open_bundle"]
