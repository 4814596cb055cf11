"""edgeformer.export."""
