"""Wrong arguments to the runtime's entry points and the CLI: each refused with the project's own
error, in one line that says what was expected (CLI: exit 2, one stderr line, no traceback).
Decisions where a value could be read two ways are tested as documented: numpy scalars are
numbers, stop=b"ab" is refused (not read as token ids 97, 98), a temperature below 1e-6 is refused."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeformer import runtime
from edgeformer.cli.main import cli
from edgeformer.runtime import EdgeformerError, InputError

GOLDEN = Path(__file__).parent / "golden" / "v1"
EDGEFORMER = str(Path(sys.executable).with_name("edgeformer"))


def one_line(e):
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


@pytest.mark.parametrize("value, message", [
    ([[1, 2], [3]], "rows of different lengths"),
    ([None], "holds Python objects"),
    ([[10**30]], "holds Python objects"),
    ("12", "input_ids is a str; expected an array"),
    (b"12", "input_ids is a bytes"),
    ({1, 2}, "input_ids is a set"),
    ((i for i in [1]), "input_ids is a generator"),
    (None, "input_ids is a NoneType"),
    ([[1.5]], "dtype float64; expected int64"),
    (np.array([[2**63 + 5]], dtype=np.uint64), r"value 9223372036854775813 at \[0, 0\]; expected values in \[0, 299\]"),
])
def test_run_refuses_bad_arrays(plain, value, message):
    with pytest.raises(InputError, match=message) as e:
        plain({"input_ids": value})
    one_line(e)


def test_run_refuses_inputs_that_are_not_a_dict(plain):
    for bad in ([1, 2], "input_ids", 5):
        with pytest.raises(InputError, match="expected a dict of input name -> array"):
            plain(bad)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_cache_values_are_refused(cached, bad):
    from edgeformer.runtime.inputs import axis_sizes, example_inputs

    feeds = example_inputs(cached.manifest.inputs, axis_sizes(cached.manifest, 1, 2), np.random.default_rng(0))
    feeds["past_key_values.1.value"][0, 1, 2, 3] = bad
    with pytest.raises(InputError, match=r"past_key_values.1.value has value .* at \[0, 1, 2, 3\]; expected finite numbers"):
        cached(feeds)


@pytest.mark.parametrize("texts, settings, message", [
    (["a", 1], {}, r"texts\[1\] is a int; expected a text"),
    (b"ab", {}, "texts of type bytes; expected a text .* decode bytes first"),
    ({"a"}, {}, "texts of type set"),
    ((t for t in ["a"]), {}, "texts of type generator"),
    (None, {}, "texts of type NoneType"),
    ([], {}, "no texts given"),
    (["a\udcff"], {}, r"texts\[0\] is not valid Unicode"),
    (["a"], {"batch_size": 0}, "batch_size=0; expected a positive integer"),
    (["a"], {"batch_size": -1}, "batch_size=-1"),
    (["a"], {"batch_size": 1.5}, "batch_size=1.5"),
    (["a"], {"truncation": "no"}, "truncation='no'; expected True or False"),
    (["a"], {"colour": 1}, "got unknown argument 'colour'"),
])
@pytest.mark.parametrize("entry", ["embed", "classify"])
def test_text_entry_points_refuse_bad_arguments(plain, entry, texts, settings, message):
    with pytest.raises(InputError, match=message) as e:
        getattr(plain, entry)(texts, **settings)
    one_line(e)


def test_text_entry_points_accept_a_bare_string_and_a_string_array(plain):
    assert plain.embed("the quick fox").shape == (1, 32)
    assert plain.classify(np.array(["a", "b"])).probabilities.shape == (2, 3)


@pytest.mark.parametrize("prompt, settings, message", [
    ([[1], 5], {}, "prompt mixes id lists with a int"),
    ([None], {}, "prompt token ids must be integers"),
    (b"ab", {}, "prompt of type bytes"),
    ({1, 2}, {}, "prompt of type set"),
    ((t for t in [1]), {}, "prompt of type generator"),
    ([1], {"stop": b"ab"}, "stop=b'ab' is bytes; expected a string"),
    ([1], {"stop": 0.5}, "stop of type float"),
    ([1], {"stop": object()}, "stop of type object"),
    ([1], {"stop": [1, None]}, "expected token ids"),
    ([1], {"stop": [-5]}, r"stop token id -5; expected ids in \[0, 299\]"),
    ([1], {"seed": -1}, "seed=-1; expected None or an integer >= 0"),
    ([1], {"seed": "x"}, "seed='x'"),
    ([1], {"temperature": 1e-310}, "temperature=1e-310; expected 0 .* or at least 1e-06"),
    ([1], {"temperature": "hot"}, "temperature='hot'; expected a finite number"),
    ([1], {"colour": 1}, "generate\\(\\) got unknown argument 'colour'"),
    ([1], {"return_logits": "yes"}, "return_logits='yes'; expected True or False"),
])
@pytest.mark.parametrize("entry", ["generate", "stream"])
def test_generation_refuses_bad_arguments(cached, entry, prompt, settings, message):
    with pytest.raises(InputError, match=message) as e:
        list(getattr(cached, entry)(prompt, max_new_tokens=2, **settings))
    one_line(e)


def test_numpy_scalars_are_numbers(cached):
    a = cached.generate([1, 2], max_new_tokens=4, temperature=np.float32(0.7), top_p=np.float64(0.9), top_k=np.int64(5),
                        seed=np.int64(3), stop=[np.int64(299)])
    b = cached.generate([1, 2], max_new_tokens=4, temperature=float(np.float32(0.7)), top_p=0.9, top_k=5, seed=3, stop=[299])
    assert a.token_ids == b.token_ids


def test_load_refuses_what_is_not_a_path():
    with pytest.raises(EdgeformerError, match="expected a folder path"):
        runtime.load(None)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    (["run", GOLDEN / "plain", "--ids", "99999999999999999999"], "--ids has token id 99999999999999999999"),
    (["run", GOLDEN / "plain", "--ids", "1 x"], "is not a list of integers"),
    (["run", GOLDEN / "plain", "--text", "a\udcff"], r"texts\[0\] is not valid Unicode"),
    (["generate", GOLDEN / "cached", "--ids", "1", "--stop", "\\"], r"--stop '\\\\' has a bad escape"),
    (["generate", GOLDEN / "cached", "--ids", "1", "--stop", "\\x"], r"has a bad escape \(truncated \\xXX escape\)"),
    (["generate", GOLDEN / "cached", "--ids", "1", "--stop", "-5", "--max-new-tokens", "2"], "stop token id -5"),
    (["generate", GOLDEN / "cached", "--ids", "1", "--seed", "-1"], "--seed"),
    (["generate", GOLDEN / "cached", "--ids", "1", "--json", "/nonexistent/x.json"], "directory /nonexistent does not exist"),
    (["run", GOLDEN / "plain", "--file", "a\x85b\nc"], r"text file a\\x85b\\nc does not exist"),  # found by fuzzing
    (["run", GOLDEN / "plain\n", "--ids", "1"], r"plain\\n does not exist"),
    (["run", GOLDEN / "plain", "--file", "\x00"], "an argument holds a NUL byte"),  # found by fuzzing
    (["train", "--arch", "encoder", "--out", "/tmp/never", "--lr", "nan"], "nan is not a finite number"),
    (["train", "--arch", "encoder", "--out", "/tmp/never", "--lr", "inf"], "inf is not a finite number"),
])
def test_cli_bad_values_give_one_line_and_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert message in result.stderr or __import__("re").search(message, result.stderr), result.stderr


@pytest.mark.parametrize("content, message", [
    (b"\x7fELF\x02\x01\x01\x00\x00", r"is a binary file \(a NUL byte at offset 7\)"),
    (b"caf\xe9\n", r"is not UTF-8 text \(byte 0xe9 at offset 3\)"),
])
@pytest.mark.parametrize("flag", ["run --file", "quantize --eval-data", "quantize --calib-data"])
def test_binary_text_files_are_refused(tmp_path, content, message, flag):
    verb, option = flag.split()
    (tmp_path / "data.txt").write_bytes(content)
    extra = ["--out", tmp_path / "q", "--recipe", "int8-static"] if verb == "quantize" else []
    result = invoke(verb, GOLDEN / "plain", option, tmp_path / "data.txt", *extra)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert __import__("re").search(message, result.stderr), result.stderr


def test_bad_npz_files_are_refused(tmp_path):
    np.savez(tmp_path / "ok.npz", input_ids=np.ones((2, 3), dtype=np.int64))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) - 60])
    (tmp_path / "text.npz").write_text("not numpy")
    for name, message in (("cut.npz", "cannot read"), ("text.npz", "is neither a .npy nor a .npz file")):
        for args in (["run", GOLDEN / "plain", "--input", tmp_path / name],
                     ["quantize", GOLDEN / "plain", "--out", tmp_path / "q", "--recipe", "int8-static",
                      "--calib-data", tmp_path / name]):
            result = invoke(*args)
            assert result.exit_code == 2 and message in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "q").exists()


def test_non_utf8_arguments_in_a_real_process(tmp_path):
    """The operating system hands undecodable argv bytes to Python as surrogates: one line, exit 2."""
    for args in ([b"run", str(GOLDEN / "plain").encode(), b"--text", b"caf\xe9"],
                 [b"generate", str(GOLDEN / "plain").encode(), b"--prompt", b"\xff\xfe"]):
        out = subprocess.run([EDGEFORMER.encode(), *args], capture_output=True, timeout=60)
        assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr
        assert out.stderr.count(b"\n") == 1
