"""edgeformer.quantize."""
