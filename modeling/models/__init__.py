"""The model definitions: Transformer (encoders, decoders, ViT), the encoder-decoder, the Conformer, and their parts."""
