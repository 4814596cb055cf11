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
