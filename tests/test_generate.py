"""Generation through the runtime (no PyTorch): greedy parity with PyTorch, sampling, streaming, bad input."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeformer import runtime
from edgeformer.modeling import load
from edgeformer.modeling.models.transformer import positions_from_mask
from edgeformer.runtime import InputError
from edgeformer.runtime.inputs import left_pad
from edgeformer.runtime.sampling import filter_logits, penalize_repeats


def torch_greedy(model, prompts, n):
    """PyTorch greedy decoding by full recomputation (no cache): the reference the cached bundle must match."""
    ids, mask = (torch.from_numpy(a) for a in left_pad(prompts, model.cfg.pad_id))
    steps = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids, mask, position_ids=positions_from_mask(mask))["logits"][:, -1]  # (B, V)
            steps.append(logits.numpy())
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return ids[:, -n:].tolist(), steps


PROMPTS = [[[17]], [[5, 9, 250, 31, 7, 7, 12, 99]], [[3, 4, 5], [200] * 20], [[8, 1, 2, 3, 4, 5], [77], [60, 61, 62, 63]]]


@pytest.mark.parametrize("prompts", PROMPTS, ids=["1x1", "1x8", "2-padded", "3-padded"])
def test_greedy_matches_pytorch_for_64_tokens(cached_decoder, prompts):
    ckpt, result = cached_decoder
    reference = load(ckpt).eval()
    want_tokens, want_logits = torch_greedy(reference, prompts, 64)
    model = runtime.load(result.path)
    got = model.generate(prompts, max_new_tokens=64, return_logits=True)
    assert got.token_ids == want_tokens
    assert got.stop_reasons == ["length"] * len(prompts)
    assert len(got.logits) == 64
    worst = max(float(np.abs(g - w).max()) for g, w in zip(got.logits, want_logits))
    assert worst <= 1e-4
    plain = model.generate(prompts, max_new_tokens=64, io_binding=False)  # the cache passed through numpy
    assert plain.token_ids == want_tokens


def test_a_left_padded_batch_generates_what_each_prompt_does_alone(cached_decoder):
    model = runtime.load(cached_decoder[1].path)
    prompts = [[8, 1, 2, 3, 4, 5, 6, 7, 8, 9], [77, 12], [60]]
    batch = model.generate(prompts, max_new_tokens=12)
    assert batch.token_ids == [model.generate(p, max_new_tokens=12).token_ids[0] for p in prompts]


def test_seeded_sampling_repeats_and_differs_by_seed(cached_decoder):
    model = runtime.load(cached_decoder[1].path)
    settings = dict(max_new_tokens=20, temperature=1.0, top_k=40, top_p=0.95, repetition_penalty=1.2)
    a = model.generate([[1, 2, 3], [9]], seed=7, **settings).token_ids
    assert a == model.generate([[1, 2, 3], [9]], seed=7, **settings).token_ids
    assert a != model.generate([[1, 2, 3], [9]], seed=8, **settings).token_ids
    # top_k=1 leaves only the most likely token: sampling then is greedy
    assert model.generate([[1, 2, 3]], max_new_tokens=20, temperature=1.5, top_k=1, seed=1).token_ids == \
        model.generate([[1, 2, 3]], max_new_tokens=20).token_ids


def test_sampling_filters():
    logits = np.log(np.array([[0.5, 0.25, 0.15, 0.1]]))
    assert np.isfinite(filter_logits(logits, 2, 1.0)).tolist() == [[True, True, False, False]]
    assert np.isfinite(filter_logits(logits, 0, 0.7)).tolist() == [[True, True, False, False]]
    assert np.isfinite(filter_logits(logits, 0, 0.75)).tolist() == [[True, True, False, False]]
    assert np.isfinite(filter_logits(logits, 0, 0.76)).tolist() == [[True, True, True, False]]
    assert np.isfinite(filter_logits(logits, 0, 0.1)).tolist() == [[True, False, False, False]]
    penalized = penalize_repeats(np.array([[2.0, -2.0, 1.0]]), [np.array([0, 1, 1])], 2.0)
    assert penalized.tolist() == [[1.0, -4.0, 1.0]]


def test_stop_token_ids_end_a_row(cached_decoder):
    model = runtime.load(cached_decoder[1].path)
    free = model.generate([[5, 6, 7], [9, 10]], max_new_tokens=10)
    stop_at = free.token_ids[0][3]
    stopped = model.generate([[5, 6, 7], [9, 10]], max_new_tokens=10, stop=[stop_at])
    first = free.token_ids[0].index(stop_at)
    assert stopped.token_ids[0] == free.token_ids[0][:first] and stopped.stop_reasons[0] == "stop"
    if stop_at not in free.token_ids[1]:
        assert stopped.token_ids[1] == free.token_ids[1] and stopped.stop_reasons[1] == "length"


def test_text_streaming_and_stop_strings(cached_text_decoder):
    model = runtime.load(cached_text_decoder[1].path)
    stream = model.stream("the quick brown", max_new_tokens=24, temperature=1.0, seed=5, stop=[3])
    pieces = [step.texts[0] for step in stream]
    result = stream.result
    # a text never ends in U+FFFD: the bytes of an unfinished character at the end are dropped
    assert "".join(pieces) == result.texts[0] == model.tokenizer.decode(result.token_ids[0]).rstrip("\ufffd")
    assert result.prompt_ids[0] == model.tokenizer.encode("the quick brown")
    text = result.texts[0]
    if len(text.strip()) > 4:  # stop at a piece of that text: generation ends just before it
        needle = text.strip()[2:4]
        cut = model.generate("the quick brown", max_new_tokens=24, temperature=1.0, seed=5, stop=[needle])
        assert cut.texts[0] == text[: text.find(needle)].rstrip("\ufffd") and cut.stop_reasons == ["stop"]
        streamed = model.stream("the quick brown", max_new_tokens=24, temperature=1.0, seed=5, stop=[needle])
        assert "".join(s.texts[0] for s in streamed) == cut.texts[0]  # a stop string is never shown


@pytest.mark.parametrize("prompt, settings, message", [
    ([], {}, "no prompt given"),
    ([[1, 2], []], {}, "prompt 1 is empty"),
    ([[1, 2, 300]], {}, "token id 300; expected ids in \\[0, 299\\]"),
    ([[1.5, 2]], {}, "must be integers"),
    ([list(range(1, 130))], {}, "prompt of 129 tokens; this model's context holds at most 128"),
    ([[1] * 100], {"max_new_tokens": 40}, "prompt of 100 tokens \\+ max_new_tokens 40 = 140 exceeds this model's context of 128"),
    ([[1] * 128], {"max_new_tokens": 1, "on_overflow": "truncate"}, "ask for at most 0 new tokens"),
    ([[1]], {"max_new_tokens": 0}, "max_new_tokens=0; expected a positive integer"),
    ([[1]], {"top_p": 0.0}, "top_p=0.0; expected a value in \\(0, 1\\]"),
    ([[1]], {"top_p": 1.01}, "top_p=1.01"),
    ([[1]], {"temperature": -0.5}, "temperature=-0.5; expected 0 \\(greedy\\) or a positive number"),
    ([[1]], {"top_k": -1}, "top_k=-1"),
    ([[1]], {"repetition_penalty": 0.0}, "repetition_penalty=0.0"),
    ([[1]], {"on_overflow": "wrap"}, "on_overflow='wrap'"),
    ([[1]], {"stop": ["x"]}, "stop strings need the bundle's tokenizer"),
])
def test_bad_input_is_one_line_before_onnxruntime(cached_decoder, prompt, settings, message):
    model = runtime.load(cached_decoder[1].path)

    class NoSession:  # any call into ONNX Runtime would fail the test
        def __getattr__(self, name):
            raise AssertionError(f"ONNX Runtime was called ({name}) for bad input")

    model.session = NoSession()
    with pytest.raises(InputError, match=message) as err:
        model.generate(prompt, **settings)
    assert "\n" not in str(err.value)


def test_empty_text_prompt_is_refused(cached_text_decoder):
    with pytest.raises(InputError, match="prompt 0 is empty \\(no tokens after tokenizing\\)"):
        runtime.load(cached_text_decoder[1].path).generate("")


def test_overflow_can_stop_at_the_context_instead(cached_decoder):
    model = runtime.load(cached_decoder[1].path)
    result = model.generate([[1] * 100], max_new_tokens=40, on_overflow="truncate")
    assert len(result.token_ids[0]) == 28 and result.max_new_tokens == 28
    assert result.notes == ["max_new_tokens 40 cut to 28: the prompt of 100 tokens and the context of 128 leave room for 28"]


def test_generation_needs_a_cached_bundle(decoder_bundle):
    with pytest.raises(runtime.EdgeformerError, match="--kv-cache"):
        runtime.load(decoder_bundle.path).generate([[1, 2]])


def test_generate_command_imports_no_torch(cached_text_decoder, cached_decoder):
    bundle, ids_bundle = str(cached_text_decoder[1].path), str(cached_decoder[1].path)
    code = (
        "import sys\n"
        "from edgeformer.cli.main import cli\n"
        f"cli(['generate', {bundle!r}, '--prompt', 'the lazy', '--max-new-tokens', '8', '--stream', "
        "'--temperature', '0.8', '--seed', '2'], standalone_mode=False)\n"
        f"cli(['generate', {ids_bundle!r}, '--ids', '4 5 6', '--ids', '7', '--max-new-tokens', '5', '--json', '-'], "
        "standalone_mode=False)\n"
        "bad = [n for n in ('torch', 'onnx', 'onnxscript', 'safetensors') if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("the lazy")
    assert re.search(r"prompt: \d+ tokens x 1 in [\d.]+ ms; then [\d.]+ ms per token", proc.stderr)
    assert '"token_ids"' in proc.stdout


def test_generate_command_bad_input_exits_2(cached_decoder):
    exe = str(__import__("pathlib").Path(sys.executable).with_name("edgeformer"))
    proc = subprocess.run([exe, "generate", str(cached_decoder[1].path), "--ids", "1 2", "--temperature", "-1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "error: temperature=-1.0; expected 0 (greedy) or a positive number"


def test_bench_refuses_a_cached_bundle_with_a_pointer(cached_decoder):
    from edgeformer.runtime.bench import bench_model

    with pytest.raises(runtime.EdgeformerError, match="has a key/value cache; time it with `edgeformer generate`"):
        bench_model(runtime.load(cached_decoder[1].path), 1, 8)
