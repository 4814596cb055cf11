"""Chat with a cached decoder bundle: the model's own chat template renders the conversation into a
prompt, and generation stops at the model's end-of-turn tokens.

The template is the one the model was published with (a Hugging Face tokenizer_config.json's
`chat_template`, a GGUF file's `tokenizer.chat_template`), carried in the bundle's cache record by
export. It is Jinja, rendered in jinja2's immutable sandbox (templates come from the hub: they are
untrusted code and never reach `eval`), with the same environment and variables as transformers'
`apply_chat_template`, so the prompt is the one the model was tuned on. jinja2 is needed only here
(`pip install edgeformer[chat]`).

    model = runtime.load("bundle/")
    model.chat([{"role": "user", "content": "What is the capital of France?"}]).texts[0]
    for step in model.chat_stream([{"role": "user", "content": "Hi"}], max_new_tokens=64):
        print(step.texts[0], end="", flush=True)
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from .errors import EdgeformerError, InputError

ROLES_HINT = 'a list of {"role": ..., "content": ...} messages'


class ChatTemplateError(InputError):
    """The model's chat template is missing or does not render these messages."""


def _jinja():
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError:
        raise EdgeformerError("chat needs the 'jinja2' package; install edgeformer[chat]") from None
    return jinja2


@lru_cache(maxsize=8)
def compile_template(template: str):
    """The template compiled in an immutable sandbox, with transformers' settings and helpers."""
    jinja2 = _jinja()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes HTML characters; the templates expect plain JSON
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda format: datetime.now().strftime(format)
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"the model's chat template does not compile ({_one_line(e)})") from None


def check_messages(messages: Any) -> list[dict[str, str]]:
    """A conversation as plain dicts of strings (nothing else reaches the template)."""
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError(f"messages of type {type(messages).__name__}; expected {ROLES_HINT}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(f"message {i} is {m!r}; expected {ROLES_HINT} (role and content strings)")
        out.append({str(k): v for k, v in m.items() if isinstance(v, (str, int, float, bool)) or v is None})
    return out


def render(template: str, messages: Any, bos_token: str | None = None, eos_token: str | None = None,
           add_generation_prompt: bool = True) -> str:
    """The prompt text `template` makes of `messages` (ending with the assistant's turn opened)."""
    jinja2 = _jinja()
    compiled = compile_template(template)
    special = {k: v for k, v in (("bos_token", bos_token), ("eos_token", eos_token)) if v is not None}
    try:
        return compiled.render(messages=check_messages(messages), tools=None, documents=None,
                               add_generation_prompt=add_generation_prompt, **special)
    except jinja2.exceptions.TemplateError as e:  # raise_exception(...), sandbox refusals, syntax found late
        raise ChatTemplateError(f"the model's chat template does not render these messages ({_one_line(e)})") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise ChatTemplateError(f"the model's chat template does not render these messages "
                                f"({type(e).__name__}: {_one_line(e)})") from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def chat_prompt(model, messages: Any, template: str | None = None) -> list[int]:
    """The token ids of `messages` rendered with the bundle's chat template (or `template`)."""
    cache = model.manifest.cache
    template = template if template is not None else (cache.chat_template if cache is not None else None)
    if not template:
        raise ChatTemplateError(f"bundle {model.bundle.path} has no chat template; export a model imported with one "
                                "(a Hugging Face folder's tokenizer_config.json, a GGUF's tokenizer.chat_template) "
                                "or give template=...")
    if not isinstance(template, str):
        raise InputError(f"template of type {type(template).__name__}; expected a Jinja template string")
    tok = model.tokenizer
    bos = tok.token(cache.bos_id) if cache is not None and cache.bos_id is not None else None
    ends = cache.end_ids if cache is not None and cache.end_ids else ([tok.eos_id] if tok.eos_id is not None else [])
    eos = tok.token(ends[0]) if ends else None
    text = render(template, messages, bos, eos)
    ids = tok.encode(text, special=False)  # the template writes its own special tokens
    if not ids:
        raise ChatTemplateError("the model's chat template rendered these messages as an empty prompt")
    return ids


def chat_stream(model, messages: Any, template: str | None = None, **settings):
    """The reply to `messages` as a TokenStream (settings as for `generate`)."""
    from .generate import stream

    return stream(model, [chat_prompt(model, messages, template)], **settings)


def chat(model, messages: Any, template: str | None = None, **settings):
    """The reply to `messages` (a Generation; its texts[0] is the assistant's turn, without the end token)."""
    s = chat_stream(model, messages, template, **settings)
    for _ in s:
        pass
    return s.result
