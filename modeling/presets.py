"""Named model sizes: the one table of presets. Each entry overrides ModelConfig's defaults."""

PRESETS: dict[str, dict] = {
    # A few hundred thousand parameters: unit tests and the quickest demo.
    "tiny": dict(d_model=64, n_heads=2, n_layers=2, d_ff=256, max_len=128),
    # About a million parameters: trains in a minute or two on two CPU cores.
    "small": dict(d_model=128, n_heads=4, n_layers=4, d_ff=512, max_len=256),
    # MiniLM-L6's shape (6 layers, 384 wide): the size the performance yardsticks are quoted at.
    "base": dict(d_model=384, n_heads=6, n_layers=6, d_ff=1536, max_len=512),
}
