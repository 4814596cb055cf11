"""Quantization recipes: one table, each entry a function from a float32 graph to a quantized one.

All of them are onnxruntime.quantization (or onnxruntime's float16 converter) with the settings
that measured well on this project's models; none is hand-rolled.
- int8-dynamic: int8 weights per output channel, activations quantized at run time (MatMul), and
  the token-embedding table (Gather) in int8; by default the one or two FFN output projections the
  calibration set finds most sensitive stay float when it measures a drop over 0.005
  (quantize/sensitive.py, `sensitive_float`).
- int8-static: QDQ (standard-domain QuantizeLinear/DequantizeLinear only, so TensorRT can run it),
  symmetric int8 activations with ranges from calibration (minmax, entropy or percentile) and
  symmetric per-channel int8 weights; the token-embedding table in int8 too.
- Both int8 recipes keep their weights in 7 bits ([-64, 64], `reduce_range`) by default, so that the
  same bundle gives the same outputs on every CPU: x86 CPUs with AVX2 and no VNNI multiply uint8
  activations by int8 weights with vpmaddubsw, which adds each pair of products in 16 bits and
  saturates; 255 * 64 * 2 = 32640 fits, 255 * 127 * 2 does not (see runtime/cpu.py). Zero points
  stay 0 (int8-static remains TensorRT's symmetric QDQ).
- int4: weight-only 4-bit blocks (MatMulNBits), block size and symmetry selectable; the
  token-embedding table in 4-bit blocks too (GatherBlockQuantized).
- int8-weights: the same at 8 bits (GGUF's Q8_0 is such a block). Its activations are quantized per
  block of 32 inside MatMulNBits (accuracy_level 4), not per tensor as int8-dynamic's are, so a
  language model's few huge activations cost one block's precision, not the whole row's: the int8
  for language models (SmolLM2: int8-dynamic +60% perplexity).
- fp16: weights and compute in float16, with LayerNormalization, Softmax and reductions kept in
  float32; inputs and outputs keep their types.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

import onnx

from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.graph_files import keeps_weights_beside, save_options, weight_bytes, weights_file
from edgeformer.runtime.quiet import quiet


class QuantizeError(EdgeformerError):
    pass


@dataclass
class RecipeOptions:
    block_size: int = 32  # int4, int8-weights: weights per quantization block
    symmetric: bool = True  # int4, int8-weights: symmetric (no zero point) or asymmetric blocks
    exclude: list[str] = field(default_factory=list)  # MatMul nodes kept in float
    calibration: str = "percentile"  # int8-static: how activation ranges are chosen
    calibration_batches: list[Mapping[str, np.ndarray]] | None = None  # int8-static: what it observes
    # int8 recipes: 7-bit weights, so no CPU's int8 kernel saturates (AVX2 without VNNI would at 8 bits).
    reduce_range: bool = True
    weight_type: str = "int8"  # int8-dynamic: "int8" or "uint8" (asymmetric) weights; int8-static is int8 only
    per_channel: bool = True  # int8 recipes: one weight scale per output channel (else per tensor)
    # int4: MatMulNBits' compute: 4 quantizes activations to int8 per block (int8 dot products), 0 keeps them
    # float32 (weights dequantized); benchmarks/generation.py measures both
    accuracy_level: int = 4
    # int8-dynamic: with 7-bit weights, the per-tensor activation scale of the FFN output projections (their
    # inputs follow GELU, with rare large values) costs the most (all-MiniLM-L6-v2: first layer's alone
    # 0.0016 of mean cosine). By default, when the calibration set's drop exceeds `sensitive_drop`, up to
    # `sensitive_float` of them, most sensitive first, stay float (quantize/sensitive.py); 0 turns it off.
    sensitive_float: int = 2
    sensitive_drop: float = 0.005


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


WEIGHT_TYPES = ("int8", "uint8")


def int8_dynamic(src: str, dst: str, opt: RecipeOptions) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if opt.weight_type not in WEIGHT_TYPES:
        raise QuantizeError(f"unknown weight type {opt.weight_type!r}; expected one of: {', '.join(WEIGHT_TYPES)}")
    with quiet():
        quantize_dynamic(
            src, dst, weight_type=QuantType.QInt8 if opt.weight_type == "int8" else QuantType.QUInt8,
            per_channel=opt.per_channel, reduce_range=opt.reduce_range,
            # Name the op types: the quantizer would take the standard-domain Attention for its contrib
            # namesake and write an invalid QAttention.
            op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=list(opt.exclude),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


# What each calibration method's histogram looks like. onnxruntime's entropy default (128 bins into
# 128 quantized bins) leaves no threshold to choose and equals minmax; 2048 into 128 is TensorRT's.
CALIBRATORS = {
    "minmax": {"symmetric": True},
    "entropy": {"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128},
    "percentile": {"symmetric": True, "num_bins": 2048, "percentile": 99.999},
}


def int8_static(src: str, dst: str, opt: RecipeOptions) -> None:
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    if opt.weight_type != "int8":
        raise QuantizeError(f"int8-static has int8 weights only (zero points of 0 for TensorRT), not {opt.weight_type}")
    if opt.calibration not in CALIBRATION_METHODS:
        raise QuantizeError(f"unknown calibration {opt.calibration!r}; expected one of: {', '.join(CALIBRATION_METHODS)}")
    if not opt.calibration_batches:
        raise QuantizeError("int8-static needs calibration data; the calibration set is empty")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[opt.calibration]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(opt.calibration_batches)

        def get_next(self):
            return next(self.batches, None)

    ops = ["MatMul", "Gather"]
    with quiet(), tempfile.TemporaryDirectory(prefix="edgeformer-calib-") as tmp:
        # Calibrate here rather than inside quantize_static, which cannot set the histogram's bins;
        # the ranges reach it through its JSON calibration cache.
        calibrator = create_calibrator(src, ops, augmented_model_path=f"{tmp}/augmented.onnx", calibrate_method=method,
                                       extra_options=CALIBRATORS[opt.calibration])
        calibrator.collect_data(Reader())
        save_tensors_data(calibrator.compute_data(), f"{tmp}/ranges.json")
        del calibrator
        quantize_static(
            src, dst, None, quant_format=QuantFormat.QDQ, per_channel=opt.per_channel, calibrate_method=method,
            reduce_range=opt.reduce_range,  # weights only: activations keep the full symmetric int8 range
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibration_cache_path=f"{tmp}/ranges.json",
            op_types_to_quantize=ops, nodes_to_exclude=list(opt.exclude),
            # Zero points of 0 everywhere: TensorRT's explicit quantization accepts nothing else.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "ActivationSymmetric": True,
                           "WeightSymmetric": True, "MatMulConstBOnly": True},
        )


ACCURACY_LEVELS = (0, 1, 2, 3, 4)  # MatMulNBits: unset (float32), float32, float16, bfloat16, int8 activations


def int4(src: str, dst: str, opt: RecipeOptions) -> None:
    weight_blocks(src, dst, opt, bits=4)


def int8_weights(src: str, dst: str, opt: RecipeOptions) -> None:
    weight_blocks(src, dst, opt, bits=8)


def weight_blocks(src: str, dst: str, opt: RecipeOptions, bits: int) -> None:
    """Weight-only blocks of `bits` (MatMulNBits; the token-embedding table as GatherBlockQuantized)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    if opt.accuracy_level not in ACCURACY_LEVELS:
        raise QuantizeError(f"accuracy level {opt.accuracy_level!r}; expected one of: {', '.join(map(str, ACCURACY_LEVELS))}")

    with quiet():
        # onnxruntime quantizes a Gather at 4 bits only (asked at 8 it logs an error and leaves it float); an
        # 8-bit tied lookup reads the head's blocks instead (tied_int4.py)
        gathers = bits == 4
        q = MatMulNBitsQuantizer(onnx.load(src), bits=bits, block_size=opt.block_size, is_symmetric=opt.symmetric,
                                 accuracy_level=opt.accuracy_level, nodes_to_exclude=list(opt.exclude),
                                 op_types_to_quantize=("MatMul", "Gather") if gathers else ("MatMul",),
                                 quant_axes=(("MatMul", 0), ("Gather", 1)) if gathers else (("MatMul", 0),))
        q.process()
        q.model.save_model_to_file(dst)


def fp16(src: str, dst: str, opt: RecipeOptions) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet():
        model = convert_float_to_float16(
            onnx.load(src), keep_io_types=True,
            op_block_list=["LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Div", "Range", "Gather"],
            node_block_list=list(opt.exclude),
        )
    onnx.save(model, dst)


RECIPES: dict[str, Callable[[str, str, RecipeOptions], None]] = {
    "int8-dynamic": int8_dynamic,
    "int8-static": int8_static,
    "int4": int4,
    "int8-weights": int8_weights,
    "fp16": fp16,
}


def check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise QuantizeError(f"unknown recipe {recipe!r}; expected one of: {', '.join(RECIPES)}")


def settle_graph_file(path: str | os.PathLike) -> None:
    """Rewrite the graph file at `path` with its weights beside it when they are large, inside it when they
    are not (runtime/graph_files.py), when it is not already so."""
    path = Path(path)
    beside = path.with_name(weights_file(path))
    if not beside.exists() and not keeps_weights_beside(path.stat().st_size):  # small, one file: as it should be
        return
    model = onnx.load(str(path))
    if keeps_weights_beside(weight_bytes(model)) != beside.exists():
        onnx.save(model, str(path), **save_options(model, path))


def apply_recipe(recipe: str, src: str | os.PathLike, dst: str | os.PathLike, opt: RecipeOptions | None = None) -> None:
    """Quantize the graph at `src` into `dst` (its weights beside it when they are large: runtime/graph_files.py)."""
    check_recipe(recipe)
    try:
        RECIPES[recipe](str(src), str(dst), opt or RecipeOptions())
        settle_graph_file(dst)
    except EdgeformerError:
        raise
    except Exception as e:  # onnxruntime.quantization raises many kinds of errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise QuantizeError(f"recipe {recipe} failed: {first}") from e


def activation_fed_matmuls(model: onnx.ModelProto) -> list[str]:
    """Weight MatMuls whose input is an activation function's output: the FFN output projections.

    int8-static keeps these in float. Their GELU inputs sit mostly in [-0.17, 1] with rare values
    tens of times larger; no single calibrated int8 scale covers both (all-MiniLM-L6-v2: mean
    embedding cosine 0.81 with them quantized, 0.997 without).
    """
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    activations = {"Gelu", "FastGelu", "BiasGelu", "Relu", "Erf", "Tanh", "Sigmoid"}
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in weights and producers.get(n.input[0]) in activations]


def quantizable_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes whose second input is a float32 weight: the nodes a recipe quantizes."""
    weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
