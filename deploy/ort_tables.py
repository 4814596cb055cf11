"""4-bit embedding tables in the form the ONNX Runtime (ORT) format can store.

The int4 recipe quantizes an embedding table into a GatherBlockQuantized over an INT4 table (symmetric
blocks) or a UINT4 table with UINT4 zero points (asymmetric blocks). The ORT format has no 4-bit tensor
type: onnxruntime's converter writes a model.ort that no onnxruntime loads ("Unsupported tensor data
type"), and reports success. GatherBlockQuantized also reads a uint8 table holding two 4-bit values per
byte, low nibble first (`bits=4`, the layout MatMulNBits uses), whose zero point is 8 when none is given:

    INT4  values v in [-8, 7], no zero points  ─► uint8 nibbles v + 8, no zero points
    UINT4 values v in [0, 15], zero points z   ─► uint8 nibbles v, and z packed two per byte along each row

Only the storage changes: (v + 8) - 8 = v, so every gathered row is the same float as before, and the
table keeps its size. deploy checks the converted model.ort against the bundle's own graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

FOUR_BIT = {onnx.TensorProto.INT4: "int4", onnx.TensorProto.UINT4: "uint4"}
FOUR_BIT_TYPES = {**FOUR_BIT, getattr(onnx.TensorProto, "FLOAT4E2M1", -1): "float4e2m1"}
MIN_ORT = "1.23"  # GatherBlockQuantized's `bits` attribute and uint8 zero points arrived in onnxruntime 1.23
# Measured on .ort files of one such Gather: onnxruntime 1.23 to 1.26 read packed zero points wrongly when a row
# has an odd number of blocks (max abs 1.7 and 2.0 off at 1 and 3 blocks; right at 2 and 8); 1.27 to 1.32 agree.
ODD_ZERO_POINTS_MIN_ORT = "1.27"


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _four_bit_gathers(model: onnx.ModelProto, initializers: dict) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "GatherBlockQuantized" and n.input[0] in initializers
            and initializers[n.input[0]].data_type in FOUR_BIT]


def _zero_points(node: onnx.NodeProto) -> str:
    return node.input[3] if len(node.input) > 3 else ""


def unstorable(model: onnx.ModelProto) -> str | None:
    """Why the ORT format cannot hold this graph even after repack_tables, as a clause; None when it can.

    Reads only the graph's structure (initializers' types and shapes), so it works on a graph loaded
    without its external data.
    """
    initializers = {i.name: i for i in model.graph.initializer}
    for node in _four_bit_gathers(model, initializers):
        table = initializers[node.input[0]]
        gather_axis, quantize_axis = _attr(node, "gather_axis", 0), _attr(node, "quantize_axis", 1)
        if gather_axis != 0 or quantize_axis not in (len(table.dims) - 1, -1) or table.dims[-1] % 2:
            return (f"its 4-bit table {table.name!r} (node {node.name!r}) is gathered along axis {gather_axis} and "
                    f"quantized along axis {quantize_axis} with {table.dims[-1]} values a row, where the uint8 form "
                    "needs axis 0, the last axis and an even row")
        for name in (node.input[2], _zero_points(node)):
            if name and name not in initializers:
                return f"the scales or zero points of its 4-bit table {table.name!r} are computed in the graph"
    # Every 4-bit tensor must be a table (or zero points) that only such Gathers read, or it stays 4-bit.
    repackable = {id(n) for n in _four_bit_gathers(model, initializers)}
    for init in model.graph.initializer:
        if init.data_type not in FOUR_BIT_TYPES:
            continue
        readers = [(n, i) for n in model.graph.node for i, name in enumerate(n.input) if name == init.name]
        if not readers or any(id(n) not in repackable or i not in (0, 3) for n, i in readers):
            kinds = ", ".join(sorted({n.op_type for n, _ in readers})) or "no node"
            return (f"its {FOUR_BIT_TYPES[init.data_type]} tensor {init.name!r} is read by {kinds}, "
                    "not only as a GatherBlockQuantized table deploy can store as uint8")
    return None


def pack_nibbles(values: np.ndarray) -> np.ndarray:
    """(..., K) integers in [0, 15] as (..., ceil(K / 2)) uint8, the first of each pair in the low nibble."""
    values = values.astype(np.uint8)
    if values.shape[-1] % 2:  # zero points of an odd number of blocks: each row's last byte holds one value
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), np.uint8)], axis=-1)
    return values[..., 0::2] | (values[..., 1::2] << 4)


def repack_tables(model: onnx.ModelProto) -> list[dict]:
    """Rewrite every GatherBlockQuantized over an INT4/UINT4 table as one over uint8 nibbles (`bits=4`), in place.

    Returns one {"table", "from", "to", "shape", "min_onnxruntime"} per table rewritten. The caller checks
    `unstorable` first; a graph it refuses is left as it is.
    """
    if unstorable(model):
        return []
    initializers = {i.name: i for i in model.graph.initializer}
    done, made = [], set()
    for node in _four_bit_gathers(model, initializers):
        table = initializers[node.input[0]]
        # uint8 nibbles are read with zero point 8 when none is given; int4 with 0, uint4 with 0.
        offset = 8 if table.data_type == onnx.TensorProto.INT4 else 0
        if _zero_points(node):
            zero_points = numpy_helper.to_array(initializers[_zero_points(node)]).astype(np.int16) + offset
        elif offset == 0:  # uint4 without zero points: write its implicit zeros, or the nibbles would read 8
            zero_points = np.zeros(tuple(initializers[node.input[2]].dims), np.int16)
        else:
            zero_points = None
        while len(node.input) < 4:
            node.input.append("")
        for index, values in ((0, numpy_helper.to_array(table).astype(np.int16) + offset), (3, zero_points)):
            if values is not None:
                name = f"{node.input[index] or table.name + '.zero_points'}.uint8"
                if name not in made:  # a table that two Gathers read is stored once
                    model.graph.initializer.append(numpy_helper.from_array(pack_nibbles(values), name))
                    made.add(name)
                node.input[index] = name
        if not node.input[3]:
            del node.input[3:]
        node.attribute.append(helper.make_attribute("bits", 4))
        odd_zero_points = zero_points is not None and zero_points.shape[-1] % 2
        done.append({"table": table.name, "from": FOUR_BIT[table.data_type], "to": "uint8, two 4-bit values a byte",
                     "shape": list(table.dims), "min_onnxruntime": ODD_ZERO_POINTS_MIN_ORT if odd_zero_points else MIN_ORT})
    still_read = {i for n in model.graph.node for i in n.input}
    for init in [i for i in model.graph.initializer if i.data_type in FOUR_BIT and i.name not in still_read]:
        model.graph.initializer.remove(init)
    return done
