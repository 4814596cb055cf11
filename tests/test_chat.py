"""End-of-turn tokens and chat templates: a random Llama imported from GGUF with SmolLM2's tokens (bos
<|im_start|> = 1, eos <|im_end|> = 2) and its ChatML template, against transformers on the same weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import PreTrainedTokenizerFast  # noqa: E402

from edgeformer import runtime  # noqa: E402
from edgeformer.export import export_bundle  # noqa: E402
from edgeformer.modeling.hf import import_hf  # noqa: E402
from edgeformer.runtime.chat import ChatTemplateError  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_gguf import random_llama, write_gguf  # noqa: E402
from test_llama import byte_level_tokenizer, hf_greedy  # noqa: E402

CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1, 2 as in SmolLM2
IM_END = 2
# SmolLM2-135M-Instruct's template, as its GGUF file carries it
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
          "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
PROMPT = [5, 17, 42, 7, 99, 12, 8]
MESSAGES = [{"role": "user", "content": "the quick brown fox"}]


def hf_until_end(hf, prompt: list[int], n: int) -> list[int]:
    """transformers' greedy tokens, stopping at <|im_end|> (left out, as the runtime leaves it out)."""
    out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                      max_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=IM_END)[0, len(prompt):].tolist()
    return out[:-1] if out and out[-1] == IM_END else out


@pytest.fixture(scope="module")
def chat_bundle(tmp_path_factory):
    """A GGUF whose model ends its turn within a few tokens: <|im_end|>'s output row is a copy, slightly
    larger, of a token the random model picks greedily, so it wins where that token would have."""
    root = tmp_path_factory.mktemp("chat")
    hf = random_llama()
    free = hf_greedy(hf, PROMPT, 24)
    with torch.no_grad():
        hf.lm_head.weight[IM_END] = hf.lm_head.weight[free[6]] * 1.05
    write_gguf(root / "chatml.gguf", hf=hf, specials=CHATML_SPECIALS, chat=CHATML, blocks={})  # float32: exact weights
    import_hf(root / "chatml.gguf", root / "ckpt")
    export_bundle(root / "ckpt", root / "bundle", kv_cache=True)
    return hf, root


def test_generation_stops_at_the_models_end_of_turn_token(chat_bundle):
    hf, root = chat_bundle
    model = runtime.load(root / "bundle")
    assert model.manifest.cache.end_ids == [IM_END] and model.manifest.cache.chat_template == CHATML
    assert model.tokenizer.eos_id == 0  # the tokenizer's names alone would stop at <|endoftext|>, never at <|im_end|>
    want = hf_until_end(hf, PROMPT, 24)
    assert len(want) < 24  # transformers stops at <|im_end|> too
    result = model.generate([PROMPT], max_new_tokens=24)
    assert result.token_ids == [want] and result.stop_reasons == ["stop"]
    assert IM_END not in result.token_ids[0]


def hf_tokenizer() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=byte_level_tokenizer(CHATML_SPECIALS), bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", unk_token="<|endoftext|>")


CONVERSATIONS = [MESSAGES,
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a lazy dog?"},
                  {"role": "assistant", "content": "jumps over"}, {"role": "user", "content": "ünïcode ✓ and <s>"}]]


def test_chat_prompt_is_transformers_apply_chat_template(chat_bundle):
    from edgeformer.runtime.chat import chat_prompt, render

    _, root = chat_bundle
    model, tok = runtime.load(root / "bundle"), hf_tokenizer()
    for messages in CONVERSATIONS:
        want_text = tok.apply_chat_template(messages, chat_template=CHATML, tokenize=False, add_generation_prompt=True)
        assert render(CHATML, messages, "<|im_start|>", "<|im_end|>") == want_text
        want = tok.apply_chat_template(messages, chat_template=CHATML, tokenize=True, add_generation_prompt=True)
        want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
        assert chat_prompt(model, messages) == list(want)


def test_chat_replies_with_transformers_tokens_and_streams_the_same_text(chat_bundle):
    hf, root = chat_bundle
    model, tok = runtime.load(root / "bundle"), hf_tokenizer()
    prompt = tok.apply_chat_template(MESSAGES, chat_template=CHATML, tokenize=True, add_generation_prompt=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    result = model.chat(MESSAGES, max_new_tokens=24)
    assert result.prompt_ids == [prompt] and result.token_ids == [hf_until_end(hf, prompt, 24)]
    assert result.texts == [tok.decode(result.token_ids[0], skip_special_tokens=True)]
    steps = model.chat_stream(MESSAGES, max_new_tokens=24)
    assert "".join(s.texts[0] for s in steps) == result.texts[0] and steps.result.token_ids == result.token_ids


def test_chat_refusals_are_one_line(chat_bundle, tmp_path):
    _, root = chat_bundle
    model = runtime.load(root / "bundle")
    for template, message in (("{{ raise_exception('system messages are not supported') }}",
                               "does not render these messages \\(system messages are not supported\\)"),
                              ("{% for m in messages %}", "does not compile"),
                              ("{{ messages.__class__.__mro__ }}", "does not render these messages"),  # the sandbox
                              ("{{ ''.__class__.__subclasses__() }}", "does not render these messages")):
        with pytest.raises(ChatTemplateError, match=message) as e:
            model.chat(MESSAGES, template=template)
        assert "\n" not in str(e.value)
    with pytest.raises(runtime.InputError, match="this model's context holds at most 128"):
        model.chat([{"role": "user", "content": "the quick brown fox " * 60}])
    with pytest.raises(runtime.InputError, match="message 0 is"):
        model.chat([{"role": "user"}])
    source = json.loads((root / "ckpt" / "source.json").read_text())
    plain = tmp_path / "ckpt"
    plain.mkdir()
    for f in (root / "ckpt").iterdir():
        (plain / f.name).write_bytes(f.read_bytes())
    (plain / "source.json").write_text(json.dumps({**source, "chat_template": None}))
    export_bundle(plain, tmp_path / "bundle", kv_cache=True)
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        runtime.load(tmp_path / "bundle").chat(MESSAGES)
    cli = str(Path(sys.executable).parent / "edgeformer")
    proc = subprocess.run([cli, "generate", str(tmp_path / "bundle"), "--chat", "hi"], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "has no chat template" in proc.stderr


def test_cli_chat_prints_the_reply(chat_bundle):
    _, root = chat_bundle
    want = runtime.load(root / "bundle").chat(MESSAGES, max_new_tokens=24)
    cli = str(Path(sys.executable).parent / "edgeformer")
    proc = subprocess.run([cli, "generate", str(root / "bundle"), "--chat", MESSAGES[0]["content"],
                           "--max-new-tokens", "24", "--json", "-"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["token_ids"] == want.token_ids
    proc = subprocess.run([cli, "generate", str(root / "bundle"), "--chat", MESSAGES[0]["content"],
                           "--max-new-tokens", "24"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == want.texts[0].strip()


def test_the_runtime_imports_without_jinja2_until_chat_is_used():
    code = ("import sys, edgeformer.runtime, edgeformer.runtime.chat, edgeformer.runtime.generate; "
            "assert 'jinja2' not in sys.modules, 'jinja2 imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_quantized_bundle_keeps_the_end_tokens_and_template(chat_bundle, tmp_path):
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.evaluate import default_eval_texts
    from edgeformer.quantize.generation_eval import GenerationData

    _, root = chat_bundle
    data = GenerationData(texts=default_eval_texts(8).texts, prompts=2, greedy_tokens=8)
    quantize_bundle(root / "bundle", tmp_path / "int4", "int4", data=data, bench_seconds=0.1)
    model = runtime.load(tmp_path / "int4")
    assert model.manifest.cache.end_ids == [IM_END] and model.manifest.cache.chat_template == CHATML
    result = model.chat(MESSAGES, max_new_tokens=24)
    assert result.prompt_ids == runtime.load(root / "bundle").chat(MESSAGES, max_new_tokens=1).prompt_ids
    assert IM_END not in result.token_ids[0]
