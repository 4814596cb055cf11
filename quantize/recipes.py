"""Quantization recipes: one table, each entry a function from a float32 graph to a quantized one.

All of them are onnxruntime.quantization (or onnxruntime's float16 converter) with the settings
that measured well on this project's models; none is hand-rolled.
- int8-dynamic: int8 weights per output channel, activations quantized at run time (MatMul), and
  the token-embedding table (Gather) in int8.
- int4: weight-only 4-bit blocks (MatMulNBits), block size and symmetry selectable; the
  token-embedding table in 4-bit blocks too (GatherBlockQuantized).
- fp16: weights and compute in float16, with LayerNormalization, Softmax and reductions kept in
  float32; inputs and outputs keep their types.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import onnx

from edgeformer.runtime.errors import EdgeformerError


class QuantizeError(EdgeformerError):
    pass


@dataclass
class RecipeOptions:
    block_size: int = 32  # int4: weights per quantization block
    symmetric: bool = True  # int4: symmetric (no zero point) or asymmetric blocks
    exclude: list[str] = field(default_factory=list)  # MatMul nodes kept in float


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs a line per node and advises pre-processing; keep it off the terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def int8_dynamic(src: str, dst: str, opt: RecipeOptions) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            src, dst, weight_type=QuantType.QInt8, per_channel=True,
            # Name the op types: the quantizer would take the standard-domain Attention for its contrib
            # namesake and write an invalid QAttention.
            op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=list(opt.exclude),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def int4(src: str, dst: str, opt: RecipeOptions) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with _quiet():
        q = MatMulNBitsQuantizer(onnx.load(src), block_size=opt.block_size, is_symmetric=opt.symmetric,
                                 accuracy_level=4, nodes_to_exclude=list(opt.exclude),
                                 op_types_to_quantize=("MatMul", "Gather"), quant_axes=(("MatMul", 0), ("Gather", 1)))
        q.process()
        q.model.save_model_to_file(dst)


def fp16(src: str, dst: str, opt: RecipeOptions) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet():
        model = convert_float_to_float16(
            onnx.load(src), keep_io_types=True,
            op_block_list=["LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Div", "Range", "Gather"],
            node_block_list=list(opt.exclude),
        )
    onnx.save(model, dst)


RECIPES: dict[str, Callable[[str, str, RecipeOptions], None]] = {
    "int8-dynamic": int8_dynamic,
    "int4": int4,
    "fp16": fp16,
}


def apply_recipe(recipe: str, src: str | os.PathLike, dst: str | os.PathLike, opt: RecipeOptions | None = None) -> None:
    if recipe not in RECIPES:
        raise QuantizeError(f"unknown recipe {recipe!r}; expected one of: {', '.join(RECIPES)}")
    try:
        RECIPES[recipe](str(src), str(dst), opt or RecipeOptions())
    except EdgeformerError:
        raise
    except Exception as e:  # onnxruntime.quantization raises many kinds of errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise QuantizeError(f"recipe {recipe} failed: {first}") from e


def quantizable_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes whose second input is a weight: the nodes a recipe quantizes."""
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
