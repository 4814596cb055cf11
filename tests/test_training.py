"""Training for real on the built-in tasks: the model must learn, and runs must repeat exactly."""

from collections import Counter

import pytest
import torch

from edgeformer.modeling import ModelConfig, Transformer
from edgeformer.modeling.data import ClassificationData, load_task
from edgeformer.modeling.tokenizer import train_tokenizer
from edgeformer.modeling.train import TrainConfig, lr_lambda, train, train_checkpoint


@pytest.mark.slow
def test_classifier_reaches_accuracy_far_above_chance(tmp_path):
    result = train_checkpoint(tmp_path / "ckpt", "encoder", "tiny", task="stdlib-topics", tc=TrainConfig(epochs=5),
                              progress=False)
    data = load_task("stdlib-topics", "encoder")
    majority = Counter(y for _, y in data.eval).most_common(1)[0][1] / len(data.eval)
    accuracy = result.final["eval_accuracy"]
    assert majority < 0.35  # six classes; the largest holds about a third of the held-out set
    assert accuracy >= 0.6 and accuracy >= 2 * majority, (accuracy, majority)
    assert (tmp_path / "ckpt" / "training.json").is_file()


@pytest.mark.slow
def test_language_model_learns(tmp_path):
    tc = TrainConfig(epochs=2, steps_per_epoch=60, lr=2e-3, seq_len=64)
    result = train_checkpoint(tmp_path / "lm", "decoder", "tiny", task="pydoc-lm", tc=tc, vocab_size=1024, progress=False)
    first, last = result.history[0]["eval_perplexity"], result.history[-1]["eval_perplexity"]
    assert last < first and last < 1024 / 4, (first, last)


def test_training_is_repeatable():
    data = load_task("stdlib-topics", "encoder")
    small = ClassificationData(data.labels, data.train[:128], data.eval[:32])
    tok = train_tokenizer(small.texts, 400)

    def run():
        torch.manual_seed(0)
        model = Transformer(ModelConfig.from_preset("tiny", vocab_size=tok.vocab_size, num_labels=6))
        hist = train(model, small, tok, TrainConfig(epochs=1, batch_size=16, seed=3), progress=False).history
        return model.state_dict(), hist

    (a, ha), (b, hb) = run(), run()
    assert ha == hb
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_schedule_warms_up_then_decays_to_zero():
    f = lr_lambda(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5, abs=0.01)
    assert f(100) == pytest.approx(0.0, abs=1e-9)
    assert all(f(i) >= f(i + 1) for i in range(10, 100))
