"""Text generation with a cached decoder bundle (`edgeformer export --kv-cache`) or a seq2seq bundle.

numpy and ONNX Runtime only. The prompt (left-padded for a batch) runs once with an empty past;
each new token then runs alone, its keys and values appended to the cache. Between steps the cache
stays in ONNX Runtime's own buffers (OrtValues bound with I/O binding): the present keys/values a
step returns are bound as the next step's past without passing through numpy. A seq2seq bundle
(export.seq2seq) runs its encoder graph once per input instead, right-padded as in training, and
its decoder from the start token, reading the encoder's cross-attention keys/values every step.

    from edgeformer import runtime
    model = runtime.load("bundle/")
    model.generate("def add(a, b):", max_new_tokens=32).texts[0]
    for step in model.stream("def add(a, b):", max_new_tokens=32, temperature=0.8, seed=1):
        print(step.texts[0], end="", flush=True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import onnxruntime as ort

from .bundle import SEQ2SEQ
from .errors import EdgeformerError, InputError
from .inputs import left_pad, next_positions, right_pad
from .sampling import Sampling, SplitMix64, choose
from .text import check_texts, refuse_unknown

OVERFLOW = ("error", "truncate")
# What the tokenizer decodes the bytes of an unfinished character to: held back while the text grows,
# dropped at the end (a text never ends in it).
INCOMPLETE = "\ufffd"


@dataclass
class Step:
    """One generated token per row. Finished rows get -1 and an empty text."""

    index: int
    tokens: np.ndarray  # (B,) int64
    texts: list[str] | None  # the new text of each row (None without a tokenizer)
    finished: np.ndarray  # (B,) bool: the row stopped at or before this step


@dataclass
class Generation:
    prompt_ids: list[list[int]]
    token_ids: list[list[int]]  # new tokens per row, without the stop token
    texts: list[str] | None  # new text per row, cut before a stop string (None without a tokenizer)
    stop_reasons: list[str]  # per row: "stop" (a stop token or string), "length" (max_new_tokens)
    max_new_tokens: int  # what was generated up to: the request, or less when truncated to the context
    notes: list[str] = field(default_factory=list)
    prompt_ms: float = 0.0  # the prompt's step: tokens in, first new token out
    token_ms: list[float] = field(default_factory=list)  # each following step
    logits: list[np.ndarray] | None = None  # (B, V) per step, with return_logits

    @property
    def per_token_ms(self) -> float:
        return float(np.median(self.token_ms)) if self.token_ms else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"prompt_ids": self.prompt_ids, "token_ids": self.token_ids, "texts": self.texts,
                "stop_reasons": self.stop_reasons, "max_new_tokens": self.max_new_tokens, "notes": self.notes,
                "prompt_ms": self.prompt_ms, "per_token_ms": self.per_token_ms, "steps": 1 + len(self.token_ms)}


def run_step(session: ort.InferenceSession, io_binding: bool, feeds: dict[str, np.ndarray], cached: dict[str, Any],
             outputs: list[str]) -> tuple[np.ndarray, list]:
    """Run `session` on numpy `feeds` and cache tensors `cached` (OrtValues with I/O binding, else numpy).

    Returns the first output as numpy and the rest as they came: OrtValues that stay in ONNX
    Runtime's memory, ready to bind as the next step's inputs, or numpy arrays without I/O binding.
    """
    if not io_binding:
        out = session.run(outputs, {**feeds, **cached})
        return out[0], out[1:]
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_cpu_input(name, value)
    for name, value in cached.items():
        binding.bind_ortvalue_input(name, value)
    for name in outputs:
        binding.bind_output(name)
    session.run_with_iobinding(binding)
    out = binding.get_outputs()
    return out[0].numpy(), list(out[1:])


def empty_cache(cache, batch: int, io_binding: bool) -> list:
    """One empty (B, H, 0, hd) past tensor per cache input: OrtValues with I/O binding, else numpy."""
    empty = np.zeros((batch, cache.heads, 0, cache.head_dim), dtype=np.float32)
    return [ort.OrtValue.ortvalue_from_numpy(empty) if io_binding else empty for _ in cache.past]


class CachedDecoder:
    """Drives a cached decoder bundle step by step, keeping the cache in ONNX Runtime between steps.

    `start(prompts)` runs the left-padded prompts with an empty past; `advance(tokens)` feeds one
    token per row. Both return the (B, V) logits of the last position: a graph that takes
    `logits_to_keep` (format 3) is asked for that one row, so a long prompt never materialises (B, T, V).
    """

    def __init__(self, model, io_binding: bool = True):
        cache = model.manifest.cache
        if cache is None:
            raise EdgeformerError(f"{model.bundle.path} has no key/value cache; generation needs a decoder "
                                  "exported with `edgeformer export CHECKPOINT --out BUNDLE --kv-cache`")
        self.model, self.session, self.cache = model, model.session, cache
        self.io_binding = io_binding
        self.max_len = int(cache.max_len)
        self.pad_id = int(cache.pad_id)
        self.penalize_prompt = True  # the prompt and the generation are one text
        self.vocab_size = int(model.manifest.config["vocab_size"])
        self.keep = {} if cache.logits_to_keep is None else {cache.logits_to_keep: np.array([1], dtype=np.int64)}

    def room(self, longest_prompt: int) -> int:
        """New tokens that fit after the longest prompt: prompt and generation share the context."""
        return self.max_len - longest_prompt

    def empty_past(self, batch: int) -> list:
        return empty_cache(self.cache, batch, self.io_binding)

    def __call__(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list) -> tuple[np.ndarray, list]:
        """(B, T) ids, (B, P + T) mask, (B, T) positions, past -> ((B, V) last logits, present)."""
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **self.keep}
        logits, present = run_step(self.session, self.io_binding, feeds, dict(zip(self.cache.past, past)),
                                   ["logits"] + self.cache.present)
        return logits[:, -1], present

    def start(self, prompts: list[list[int]]) -> np.ndarray:
        ids, self.mask = left_pad(prompts, self.pad_id)
        logits, self.past = self(ids, self.mask, next_positions(self.mask, ids.shape[1]), self.empty_past(len(prompts)))
        return logits

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        self.mask = np.concatenate([self.mask, np.ones((len(tokens), 1), dtype=np.int64)], axis=1)
        logits, self.past = self(tokens[:, None].astype(np.int64), self.mask, next_positions(self.mask, 1), self.past)
        return logits


class Seq2SeqDecoder:
    """Drives a seq2seq bundle: the encoder once per input (its cross-attention keys/values stay in
    ONNX Runtime), then the cached decoder one token at a time from the start token."""

    penalize_prompt = False  # the source is another sequence: only generated tokens count as repeats

    def __init__(self, model, io_binding: bool = True):
        self.cache = cache = model.manifest.cache
        self.session, self.encoder = model.session, model.graph("encoder").session
        self.io_binding = io_binding
        self.max_len, self.pad_id = int(cache.max_len), int(cache.pad_id)
        self.vocab_size = int(model.manifest.config["vocab_size"])

    def room(self, longest_prompt: int) -> int:
        """The source has its own context; the decoder holds the start token and all but the last new token."""
        return self.max_len

    def _decode(self, tokens: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": tokens.astype(np.int64), "encoder_attention_mask": self.mask}
        logits, present = run_step(self.session, self.io_binding, feeds, {**self.past, **self.cross},
                                   ["logits"] + self.cache.present)
        self.past = dict(zip(self.cache.past, present))
        return logits[:, -1]

    def start(self, prompts: list[list[int]]) -> np.ndarray:
        ids, self.mask = right_pad(prompts, self.pad_id)
        first, cross = run_step(self.encoder, self.io_binding, {"input_ids": ids, "attention_mask": self.mask}, {},
                                self.cache.cross)
        if self.io_binding:
            first = ort.OrtValue.ortvalue_from_numpy(first)
        self.cross = dict(zip(self.cache.cross, [first] + cross))
        B = len(prompts)
        self.past = dict(zip(self.cache.past, empty_cache(self.cache, B, self.io_binding)))
        return self._decode(np.full((B, 1), int(self.cache.start_id)))

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        return self._decode(tokens[:, None])


def decoder_for(model, io_binding: bool = True):
    """The step driver a bundle's kind needs: Seq2SeqDecoder for seq2seq, CachedDecoder for a cached decoder."""
    if model.manifest.kind == SEQ2SEQ:
        return Seq2SeqDecoder(model, io_binding)
    return CachedDecoder(model, io_binding)  # refuses a bundle without a cache


def _prompt_ids(model, prompt: Any) -> tuple[list[list[int]], bool]:
    """A text, a list of texts, a list of ids, a list of id lists or an array -> (id lists, given as text)."""
    if isinstance(prompt, str) or (isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt)):
        texts = check_texts(prompt, "prompt")
        tok = model.tokenizer
        return [tok.encode(t) for t in texts], True
    if isinstance(prompt, np.ndarray):
        if prompt.dtype.kind not in "iu" or prompt.ndim not in (1, 2):
            raise InputError(f"prompt array has dtype {prompt.dtype} and shape {prompt.shape}; "
                             "expected integer ids (T,) or (B, T)")
        prompt = prompt.tolist()
    if not isinstance(prompt, (list, tuple)):
        raise InputError(f"prompt of type {type(prompt).__name__}; expected a text, texts, or token ids")
    if len(prompt) == 0:
        raise InputError("no prompt given; expected a text, texts or token ids")
    rows = [prompt] if not isinstance(prompt[0], (list, tuple, np.ndarray)) else prompt
    out = []
    for row in rows:
        if not isinstance(row, (list, tuple, np.ndarray)):
            raise InputError(f"prompt mixes id lists with a {type(row).__name__}; expected a list of token id lists")
        row = list(np.asarray(row).ravel().tolist()) if isinstance(row, np.ndarray) else list(row)
        if any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) for t in row):
            raise InputError("prompt token ids must be integers")
        out.append([int(t) for t in row])
    return out, False


def _stop_ids_and_strings(model, stop: Any, tokenizer, vocab_size: int) -> tuple[set[int], list[str]]:
    """stop: a string, a token id, or a list/tuple of them. bytes are refused rather than read as a
    list of byte values (b"ab" is not the ids 97 and 98): decode them to a string first."""
    if isinstance(stop, (bytes, bytearray)):
        raise InputError(f"stop={stop!r} is bytes; expected a string (decode it first) or token ids (int)")
    if stop is None:
        stop = ()
    if isinstance(stop, (str, int, np.integer)):
        stop = [stop]
    if not isinstance(stop, (list, tuple)):
        raise InputError(f"stop of type {type(stop).__name__}; expected a string, a token id, or a list of them")
    items = list(stop)
    ids = {int(s) for s in items if isinstance(s, (int, np.integer)) and not isinstance(s, bool)}
    strings = [s for s in items if isinstance(s, str)]
    if strings:
        check_texts(strings, "stop")
    if not _all_ids_or_strings(items):
        raise InputError(f"stop={stop!r}; expected token ids (int) and/or strings")
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise InputError(f"stop token id {bad[0]}; expected ids in [0, {vocab_size - 1}]")
    if any(s == "" for s in strings):
        raise InputError("an empty stop string would stop before the first token; expected non-empty strings")
    if strings and tokenizer is None:
        raise InputError("stop strings need the bundle's tokenizer, and this bundle has none; give stop token ids")
    return ids | end_ids(model, tokenizer), strings


def end_ids(model, tokenizer) -> set[int]:
    """The tokens that always end a generation: the model's own end-of-turn tokens where the bundle
    records them (imported models), else the end-of-text token of the tokenizer (or the cache record)."""
    cache = model.manifest.cache
    if cache is not None and cache.end_ids is not None:
        return {int(i) for i in cache.end_ids}
    eos = tokenizer.eos_id if tokenizer is not None else (cache.eos_id if cache is not None else None)
    return set() if eos is None else {int(eos)}  # a model trained with an end-of-text token stops there


def _all_ids_or_strings(items: list) -> bool:
    return all(isinstance(s, str) or (isinstance(s, (int, np.integer)) and not isinstance(s, bool)) for s in items)


class TokenStream:
    """Iterate to get each Step as it is produced; afterwards `result` holds the whole Generation."""

    def __init__(self, model, prompt, max_new_tokens: int = 32, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, stop: Any = (), seed: int | None = None,
                 on_overflow: str = "error", return_logits: bool = False, io_binding: bool = True):
        # Everything is checked here, before ONNX Runtime sees anything.
        for name, flag in (("return_logits", return_logits), ("io_binding", io_binding)):
            if not isinstance(flag, (bool, np.bool_)):
                raise InputError(f"{name}={flag!r}; expected True or False")
        self.decoder = decoder_for(model, io_binding)
        self.sampling = Sampling(temperature, top_k, top_p, repetition_penalty)
        if on_overflow not in OVERFLOW:
            raise InputError(f"on_overflow={on_overflow!r}; expected one of: {', '.join(OVERFLOW)}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
            raise InputError(f"max_new_tokens={max_new_tokens!r}; expected a positive integer")
        prompts, as_text = _prompt_ids(model, prompt)
        for i, p in enumerate(prompts):
            if not p:
                raise InputError(f"prompt {i} is empty" + (" (no tokens after tokenizing)" if as_text else "")
                                 + "; expected at least one token")
            bad = [t for t in p if not 0 <= t < self.decoder.vocab_size]
            if bad:
                raise InputError(f"prompt {i} has token id {bad[0]}; expected ids in [0, {self.decoder.vocab_size - 1}]")
        longest, limit = max(len(p) for p in prompts), self.decoder.max_len
        if getattr(model, "limits", None) is not None:  # rows and memory (the whole context's cache) per call
            model.limits.check(model.manifest, {"batch": len(prompts), "seq": min(longest, limit), "past": limit})
        self.notes: list[str] = []
        if longest > limit:
            raise InputError(f"prompt of {longest} tokens; this model's context holds at most {limit}")
        room = self.decoder.room(longest)
        if max_new_tokens > room:
            shared = isinstance(self.decoder, CachedDecoder)  # prompt and generation share one context
            total = f"prompt of {longest} tokens + max_new_tokens {max_new_tokens} = {longest + max_new_tokens}" \
                if shared else f"max_new_tokens {max_new_tokens}"
            if on_overflow == "error" or room == 0:
                raise InputError(f"{total} exceeds this model's context of {limit}; ask for at most {room} new tokens"
                                 + (" or {remedy} to stop at the limit" if room else ""),
                                 remedy=("on_overflow", "truncate"))
            why = f"the prompt of {longest} tokens and the context of {limit} leave room for {room}" if shared \
                else f"the decoder's context holds {room}"
            self.notes.append(f"max_new_tokens {max_new_tokens} cut to {room}: {why}")
            max_new_tokens = room
        self.tokenizer = model.tokenizer if (as_text or model.bundle.tokenizer_path is not None) else None
        self.stop_ids, self.stop_strings = _stop_ids_and_strings(model, stop, self.tokenizer, self.decoder.vocab_size)
        self.prompts, self.max_new_tokens = prompts, int(max_new_tokens)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise InputError(f"seed={seed!r}; expected None or an integer >= 0")
        self.rng = SplitMix64(None if seed is None else int(seed))  # portable: edgeformer.js draws the same
        self.return_logits = return_logits
        self.result: Generation | None = None
        self._steps = self._run()

    def __iter__(self) -> Iterator[Step]:
        return self._steps

    def __next__(self) -> Step:
        return next(self._steps)

    def _run(self) -> Iterator[Step]:
        B, pad_id = len(self.prompts), self.decoder.pad_id
        new: list[list[int]] = [[] for _ in range(B)]
        seen = [np.asarray(p, dtype=np.int64) for p in self.prompts] if self.decoder.penalize_prompt else \
            [np.zeros(0, dtype=np.int64) for _ in self.prompts]
        finished = np.zeros(B, dtype=bool)
        reasons = ["length"] * B
        texts = ["" for _ in range(B)] if self.tokenizer is not None else None
        shown = [0] * B  # characters of each row's text already yielded
        hold = max((len(s) for s in self.stop_strings), default=1) - 1  # text a stop string could still claim
        result = Generation(self.prompts, new, texts, reasons, self.max_new_tokens, list(self.notes),
                            logits=[] if self.return_logits else None)
        tokens = None
        for step in range(self.max_new_tokens):
            start = time.perf_counter()
            if tokens is None:
                logits = self.decoder.start(self.prompts)
            else:
                logits = self.decoder.advance(np.where(finished, pad_id, tokens))
            tokens = choose(logits, self.sampling, seen, self.rng)
            elapsed = (time.perf_counter() - start) * 1e3
            if step == 0:
                result.prompt_ms = elapsed
            else:
                result.token_ms.append(elapsed)
            if self.return_logits:
                result.logits.append(logits.copy())
            out_tokens = np.where(finished, -1, tokens)
            deltas = ["" for _ in range(B)] if texts is not None else None
            for row in np.flatnonzero(~finished):
                token = int(tokens[row])
                if token in self.stop_ids:
                    finished[row], reasons[row] = True, "stop"
                    out_tokens[row] = -1
                else:
                    new[row].append(token)
                    seen[row] = np.append(seen[row], token)
                if texts is None:
                    continue
                text = self.tokenizer.decode(new[row])
                cut = min((i for i in (text.find(s) for s in self.stop_strings) if i >= 0), default=-1)
                if cut >= 0:
                    text, finished[row], reasons[row] = text[:cut], True, "stop"
                last = finished[row] or step == self.max_new_tokens - 1
                if last and text.endswith(INCOMPLETE):  # the bytes of a character the generation never finished
                    text = text.rstrip(INCOMPLETE)
                    result.notes.append(f"row {row}: an unfinished UTF-8 character at the end of the text was dropped")
                texts[row] = text
                end = len(text) if last else len(text) - hold
                while not last and end > shown[row] and text[end - 1] == INCOMPLETE:  # half a multi-byte character so far
                    end -= 1
                if end > shown[row]:
                    deltas[row], shown[row] = text[shown[row]:end], end
            yield Step(step, out_tokens, deltas, finished.copy())
            if finished.all():
                break
        self.result = result


SETTINGS = ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "stop", "seed", "on_overflow",
            "return_logits", "io_binding")


def stream(model, prompt, **settings) -> TokenStream:
    """Generation as an iterator of Steps (see TokenStream); settings as for `generate`."""
    refuse_unknown("generate", {k: v for k, v in settings.items() if k not in SETTINGS}, SETTINGS)
    return TokenStream(model, prompt, **settings)


def generate(model, prompt, **settings) -> Generation:
    """Generate from `prompt` (a text, texts, token ids or id lists) with a cached decoder bundle.

    Settings: max_new_tokens (32), temperature (0: greedy), top_k (0: off), top_p (1.0: off),
    repetition_penalty (1.0: off), stop (token ids and/or strings; the model's end tokens always
    stop: the end-of-turn tokens an imported model's bundle records, else the tokenizer's end-of-text), seed (sampling is repeatable with the same seed), on_overflow ("error":
    refuse a request past the model's context; "truncate": stop at the context and say so in
    `notes`), return_logits, io_binding.
    """
    s = stream(model, prompt, **settings)
    for _ in s:
        pass
    return s.result
