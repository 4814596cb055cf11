"""What `edgeformer demo` trains, and for how long: shared with the benchmarks that measure the demo's models."""

from __future__ import annotations

from edgeformer.modeling.training.train import TrainConfig

# arch -> (preset, full training, --quick training)
PLAN = {
    "encoder": ("small", TrainConfig(epochs=3, lr=2e-3), TrainConfig(epochs=2, lr=2e-3)),
    "decoder": ("tiny", TrainConfig(epochs=4, lr=3e-3, steps_per_epoch=80), TrainConfig(epochs=1, lr=3e-3, steps_per_epoch=20)),
}
