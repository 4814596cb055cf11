"""int4 for another CPU: MatMulNBits at accuracy_level 0 in the folder's graph.

Our int4 recipe writes `MatMulNBits` with `accuracy_level=4`: onnxruntime's native kernel then
quantizes each block of activations to int8 before the product. Each CPU family's kernel does that
its own way, and WASM's ignores the level and multiplies float32. On a tiny decoder the ARM and x86
answers differ by 7e-3, but on SmolLM2-135M, whose activations are large, the logits of emulated
Cortex-A76 and A72 differed from x86's by up to 24.9 at level 4 and by 2.4e-3 at level 0. The web,
arm64, android and ios targets therefore ship their int4 graphs at level 0: every runtime multiplies
float32 activations by the same 4-bit weights, so the checks made here hold there.

An 8-bit MatMulNBits (a GGUF's Q8_0 head, kept as it was) has no fast float32 kernel in onnxruntime's
CPU build: at level 0 it dequantizes its whole table on every call (SmolLM2's 49,152 x 576 head: a
decode step went from 14 to 177 ms on x86). CPU targets therefore set level 0 on the 4-bit nodes only
(`bits=4`), where the large activations are; the browser, whose WASM kernel ignores the level, gets
every node at 0 so that Python computes what it computes. The weights are untouched; the level only says how activations are
multiplied. Prefill on the device gives up the int8 kernel's speed; decode, which reads weights, much less.
"""

from __future__ import annotations

from typing import Any

WHY = ("the int8 activations of accuracy_level 4 are quantized differently by each CPU's kernel (WASM's computes "
       "in float32); at 0 every runtime multiplies float32 activations, as checked here")


def float32_activation_levels(model: Any, why: str = WHY, bits: int | None = 4) -> dict[str, Any] | None:
    """Set the MatMulNBits nodes of an onnx.ModelProto with `bits`-bit weights (None: every one) to
    accuracy_level 0, in place; what changed (levels and node counts), or None where no node said otherwise."""
    levels: dict[int, int] = {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        if bits is not None and any(a.name == "bits" and a.i != bits for a in node.attribute):
            continue
        for attr in node.attribute:
            if attr.name == "accuracy_level" and attr.i != 0:
                levels[attr.i] = levels.get(attr.i, 0) + 1
                attr.i = 0
    if not levels:
        return None
    return {"from": {str(k): v for k, v in sorted(levels.items())}, "to": 0, "why": why,
            "nodes": f"{bits}-bit" if bits is not None else "all"}
