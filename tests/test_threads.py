"""One loaded model serves many threads: every text and generation entry point (run, embed,
classify, generate, stream), called from eight threads at once in a shuffled mix, gives each call
exactly what it gives alone, truncation reports included."""

import random
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgeformer import runtime
from edgeformer.runtime.inputs import manifest_inputs

LONG = "the quick brown fox jumps over the lazy dog " * 30  # past the 64-token context: truncated
SHORT = ["edge devices run small transformers", "the lazy dog", "quick"]
THREADS, ROUNDS = 8, 12


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and np.array_equal(a, b)
    return a == b


def run_concurrently(jobs):
    """Each job alone first (the reference), then all of them ROUNDS times in a shuffled order on THREADS threads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # truncation warnings: the results say which texts
        expected = {name: job() for name, job in jobs.items()}
        order = [name for name in jobs for _ in range(ROUNDS)]
        random.Random(0).shuffle(order)
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda name: (name, jobs[name]()), order))
    wrong = [name for name, got in results if not same(got, expected[name])]
    assert not wrong, f"{len(wrong)} of {len(results)} concurrent calls differed from the same call alone: {wrong[:5]}"
    return expected


def test_text_entry_points_from_many_threads(encoder_bundle):
    model = runtime.load(encoder_bundle.path)
    feeds = manifest_inputs(model.manifest, batch=3, seq=20, seed=1)

    def classify(texts, truncation=True):
        r = model.classify(texts, truncation=truncation, batch_size=2)
        return r.labels, r.probabilities, r.truncated

    jobs = {
        "classify long+short": lambda: classify([LONG, SHORT[0], LONG[:200]]),
        "classify short": lambda: classify(SHORT, truncation=False),
        "embed long": lambda: model.embed([LONG, SHORT[1]]),
        "embed short": lambda: model.embed(SHORT, truncation=False),
        "run": lambda: model(feeds),
    }
    expected = run_concurrently(jobs)
    assert expected["classify long+short"][2] == [0, 2]  # the long texts, and only they, reported as truncated


def test_generation_entry_points_from_many_threads(cached_text_decoder):
    model = runtime.load(cached_text_decoder[1].path)

    def generate(prompt, **settings):
        g = model.generate(prompt, max_new_tokens=12, **settings)
        return g.token_ids, g.texts, g.stop_reasons

    def stream(prompt, **settings):
        return [(s.tokens, s.texts) for s in model.stream(prompt, max_new_tokens=12, **settings)]

    jobs = {
        "greedy": lambda: generate(["the quick", "edge devices run"]),
        "sampled": lambda: generate("the lazy", temperature=0.9, top_k=20, seed=3),
        "stop string": lambda: generate("the quick brown", temperature=0.7, seed=5, stop=["fox"]),
        "stream": lambda: stream("edge", temperature=1.0, seed=7),
        "stream greedy": lambda: stream(["small", "the quick brown fox"]),
    }
    run_concurrently(jobs)


@pytest.mark.parametrize("truncation", [True, False])
def test_one_tokenizer_shared_by_threads_never_switches_another_calls_truncation(encoder_bundle, truncation):
    """The race seen before: one thread's truncation leaked into another's encoding (a text cut
    without its report, or a full-length text handed to a model that takes 64 tokens)."""
    tok = runtime.load(encoder_bundle.path).tokenizer
    texts = [LONG, SHORT[0]]
    alone = tok.encode_batch(texts, 64, truncation=True)
    plain = tok.encode_batch([LONG], 10_000, truncation=truncation)

    def call(i):
        if i % 2:
            b = tok.encode_batch(texts, 64, truncation=True)
            return np.array_equal(b.input_ids, alone.input_ids) and b.truncated == [0]
        b = tok.encode_batch([LONG], 10_000, truncation=truncation)
        return np.array_equal(b.input_ids, plain.input_ids) and b.truncated == []

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(call, range(400)))
