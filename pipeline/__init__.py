"""edgeformer.pipeline: the joins between stages that no single stage may hold, so every CLI verb is one call.

- quantize.py: `edgeformer quantize` with the evaluation and calibration sets that fit the bundle
  (the user's files, or the built-in tasks); torch-free, like the quantizer itself;
- parity.py: `edgeformer parity` of a quantized bundle against the PyTorch checkpoint it came from
  (modeling's eager model as the reference, quantize's budget as the gate); needs torch.

This folder sits under the CLI and above every other: it may import any of them, never the CLI.
Import its modules directly; this file imports nothing, so the torch-free half stays torch-free.
"""
