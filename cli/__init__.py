"""edgeformer.cli."""
