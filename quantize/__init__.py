"""edgeformer.quantize: quantization recipes for bundles (onnxruntime.quantization; never torch)."""
