"""`edgeformer generate`: text from a decoder bundle exported with --kv-cache. Imports no PyTorch."""

from __future__ import annotations

import re

import click

from edgeformer import runtime
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.generate import Generation

from .output import ms, write_json
from .run_cmd import parse_ids


def parse_stop(stop: tuple[str, ...]) -> list[str | int]:
    """--stop values: an integer is a token id, anything else a string ("\\n" written as an escape works too)."""
    out: list[str | int] = []
    for s in stop:
        if re.fullmatch(r"-?[0-9]+", s):
            out.append(int(s))  # a negative id is refused with the others outside the vocabulary
            continue
        if "\\" in s:
            try:
                s = s.encode("utf-8", "surrogateescape").decode("unicode_escape")
            except UnicodeDecodeError as e:
                raise EdgeformerError(f"--stop {s!r} has a bad escape ({e.reason}); expected e.g. '\\n', '\\t', "
                                      "'\\x41' or '\\\\' for a backslash") from None
        out.append(s)
    return out


def run_generate(model: runtime.Model, prompts: tuple[str, ...], ids: tuple[str, ...], max_new_tokens: int,
                 stream: bool, settings: dict, json_out: str | None, chat: str | None = None) -> Generation:
    if chat is not None:
        if prompts or ids:
            raise EdgeformerError("--chat is the user's message, rendered with the model's chat template; give it "
                                  "without --prompt and --ids")
        return run_chat(model, chat, max_new_tokens, stream, settings, json_out)
    if bool(prompts) == bool(ids):
        raise EdgeformerError("give --prompt \"...\" (repeatable), --ids \"5 17 42\" (repeatable) or --chat \"...\", one of them")
    if stream and len(prompts or ids) > 1:
        raise EdgeformerError(f"--stream prints one prompt's text as it is produced; got {len(prompts or ids)} prompts: "
                              "give one, or leave out --stream to generate for a batch")
    prompt = list(prompts) if prompts else parse_ids(ids)
    if prompts and model.bundle.tokenizer_path is None:
        raise EdgeformerError(f"{model.bundle.path} has no tokenizer.json, so it cannot read --prompt text; give --ids")
    quiet = json_out == "-"
    tokens = model.stream(prompt, max_new_tokens=max_new_tokens, **settings)
    show_live = stream and not quiet
    # A decoder continues its prompt; an encoder-decoder writes a new sequence for its source.
    sep = " -> " if model.manifest.model.task == "seq2seq-lm" else ""
    for text in prompts if show_live else ():
        click.echo(text + sep, nl=False)
    for step in tokens:
        if not show_live:
            continue
        if step.texts is not None:
            click.echo(step.texts[0], nl=False)
        elif step.tokens[0] >= 0:
            click.echo(f" {int(step.tokens[0])}", nl=False)
    result = tokens.result
    if show_live:
        click.echo()
    elif not quiet:
        for row in range(len(result.prompt_ids)):
            head = prompts[row] if prompts else " ".join(map(str, result.prompt_ids[row]))
            body = result.texts[row] if result.texts is not None else " " + " ".join(map(str, result.token_ids[row]))
            click.echo(f"[{row}] {head}{sep}{body}" if len(result.prompt_ids) > 1 else f"{head}{sep}{body}")
    report(result, quiet, json_out)
    return result


def run_chat(model: runtime.Model, message: str, max_new_tokens: int, stream: bool, settings: dict,
             json_out: str | None) -> Generation:
    """The model's reply to one user message, rendered with its own chat template (runtime/chat.py)."""
    if model.bundle.tokenizer_path is None:
        raise EdgeformerError(f"{model.bundle.path} has no tokenizer.json, so it cannot chat")
    quiet = json_out == "-"
    steps = model.chat_stream([{"role": "user", "content": message}], max_new_tokens=max_new_tokens, **settings)
    for step in steps:
        if stream and not quiet:
            click.echo(step.texts[0], nl=False)
    result = steps.result
    if not quiet:
        click.echo("" if stream else result.texts[0])
    report(result, quiet, json_out)
    return result


def report(result: Generation, quiet: bool, json_out: str | None) -> None:
    if not quiet:
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
        n = sum(len(t) for t in result.token_ids)
        click.echo(f"prompt: {max(len(p) for p in result.prompt_ids)} tokens x {len(result.prompt_ids)} in "
                   f"{ms(result.prompt_ms)} ms; then {ms(result.per_token_ms)} ms per token (median of "
                   f"{len(result.token_ms)} steps); {n} new tokens; stopped: {', '.join(result.stop_reasons)}", err=True)
    write_json(json_out, result.to_json())
