"""The CLI's option groups as an attacker or a careless user meets them: every float option refuses NaN and
infinities, every file a verb writes is checked before its work, deploy's --fixed-shape is bounded and
strict. Each refusal: exit 2, one line on stderr, no traceback, nothing on disk."""

import re
import time
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from edgeformer import runtime
from edgeformer.cli.main import cli as edgeformer_cli

from .test_cli import assert_bad_input, cli
from .test_deploy_mobile import INT4_ATOL, TEXTS, as_shipped, assert_matches


@pytest.fixture(autouse=True)
def keep_warning_hook():
    """The CLI's group points warnings.showwarning at its one-line printer; put it back after each in-process call."""
    saved = warnings.showwarning
    yield
    warnings.showwarning = saved


def invoke(*args):
    """The CLI in this process (fast: no interpreter start per case); returns (exit code, stderr)."""
    result = CliRunner().invoke(edgeformer_cli, [str(a) for a in args])
    return result.exit_code, result.stderr


def assert_refused(args, *needles):
    code, err = invoke(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (args, code, err)
    for needle in needles:
        assert needle in lines[0], (args, err)


def verbs():
    return sorted(edgeformer_cli.commands.items())


def float_options():
    """(verb, flag) for every option of every verb whose values are floats, from the command tree itself."""
    import click

    found = [(name, p.opts[0]) for name, command in verbs() for p in command.params
             if isinstance(p, click.Option) and isinstance(p.type, click.types.FloatParamType)]
    return found


# ------------------------------------------------------------------------------------ 1. float options


def test_the_walk_finds_the_float_options_of_the_issue():
    from edgeformer.cli.options import FiniteFloat

    found = set(float_options())
    assert {("debug", "--atol"), ("debug", "--jump"), ("debug", "--rel"), ("parity", "--atol"), ("export", "--atol"),
            ("quantize", "--max-drop"), ("quantize", "--smooth-alpha"), ("bench", "--bench-seconds"), ("train", "--lr"),
            ("generate", "--temperature"), ("generate", "--top-p"), ("distill", "--soft-weight")} <= found
    assert all(isinstance(p.type, FiniteFloat) for _, c in verbs() for p in c.params if (_, p.opts[0]) in found)


@pytest.mark.parametrize("verb, flag", float_options())
def test_every_float_option_refuses_nan_and_infinities(verb, flag):
    for value in ("nan", "inf", "-inf", "NaN", "1e999"):
        assert_refused([verb, flag, value], flag, "not a finite number")


@pytest.mark.parametrize("args, needles", [
    (["debug", "--jump", "0.5"], ["--jump", "x>=1"]),
    (["debug", "--atol", "0"], ["--atol", "x>0"]),
    (["quantize", "--max-drop", "-0.1"], ["--max-drop", "x>=0"]),
    (["quantize", "--smooth-alpha", "1.5"], ["--smooth-alpha", "0<x<=1"]),
    (["quantize", "--smooth-alpha", "loud"], ["--smooth-alpha", "auto, off or a number"]),
    (["bench", "--bench-seconds", "٣"], ["--bench-seconds", "not a number"]),  # float() would read 3.0
    (["debug", "--seed", "-1"], ["--seed", "x>=0"]),
    (["debug", "--seed", "1.5"], ["--seed"]),
])
def test_float_and_seed_ranges_are_checked_at_parsing(args, needles):
    assert_refused(args, *needles)


def test_words_and_numbers_still_pass():
    from edgeformer.cli.options import FiniteFloat

    t = FiniteFloat(min=0, max=1, min_open=True, words=("auto", "off"))
    assert t.convert("auto", None, None) == "auto" and t.convert(" 0.5", None, None) == 0.5 and t.convert(1, None, None) == 1.0


def test_debug_atol_nan_is_refused_before_the_run(encoder_bundle, encoder_ckpt):
    """The issue's case: '--atol nan' ran and exited 0 with 'no node over the budget (max abs error > nan)'."""
    proc = cli("debug", encoder_bundle.path, "--reference", encoder_ckpt, "--atol", "nan", ok=False)
    assert_bad_input(proc, "--atol")
    assert "nan is not a finite number" in proc.stderr and proc.stdout == ""


# ------------------------------------------------------------------------------------ 3. output paths


def output_options():
    """(verb, flag) for every option naming a file or folder a verb writes."""
    names = {"--json", "--plot"}
    found = [(verb, p.opts[0]) for verb, c in verbs() for p in c.params if p.opts and p.opts[0] in names]
    found += [(verb, "--out") for verb, c in verbs() if any(p.opts and p.opts[0] == "--out" for p in c.params)]
    return found


def test_the_walk_finds_every_output_option():
    found = set(output_options())
    every_json = {verb for verb, c in verbs() if any(p.opts[:1] == ["--json"] for p in c.params)}
    assert every_json >= {"train", "export", "quantize", "parity", "run", "generate", "bench", "deploy", "debug", "verify",
                          "sign", "keygen", "distill", "import", "demo"}
    assert {("debug", "--plot"), ("quantize", "--plot"), ("deploy", "--out"), ("keygen", "--out")} <= found


@pytest.mark.parametrize("verb, flag", output_options())
def test_every_output_path_is_checked_before_the_work(tmp_path, verb, flag):
    name = "x.png"  # a picture name, so --plot's own suffix check does not answer first
    (tmp_path / "file").write_text("")
    bad = [tmp_path / "missing" / "deeper" / name if flag != "--out" else tmp_path / "file" / "sub",
           f"/proc/edgeformer-{name}", f"/sys/edgeformer-{name}"]
    if flag != "--out":
        bad += [tmp_path, "/proc/self/status", ""]
    for value in bad:
        assert_refused([verb, flag, value], flag)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no probe, no partial output left


def test_deploy_json_into_a_missing_folder_writes_no_deployment(tmp_path, encoder_bundle):
    proc = cli("deploy", encoder_bundle.path, "--target", "android", "--out", tmp_path / "a", "--json",
               tmp_path / "no" / "r.json", ok=False)
    assert_bad_input(proc, "directory")
    assert list(tmp_path.iterdir()) == []


def test_debug_plot_into_proc_is_refused_before_the_run(encoder_bundle, encoder_ckpt):
    start = time.perf_counter()
    proc = cli("debug", encoder_bundle.path, "--reference", encoder_ckpt, "--plot", "/proc/curve.png", ok=False)
    assert_bad_input(proc, "--plot")
    assert proc.stdout == "" and time.perf_counter() - start < 20  # the comparison did not run


def test_json_is_written_whole(tmp_path, encoder_bundle):
    proc = cli("run", encoder_bundle.path, "--ids", "5 6 7", "--json", tmp_path / "r.json")
    assert proc.returncode == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert "logits" in (tmp_path / "r.json").read_text()


# ------------------------------------------------------------------------------------ 2. deploy --fixed-shape


@pytest.mark.parametrize("fixed, message", [
    ("batch=99999999999999999999999", "MiB"),
    ("batch=9223372036854775807", "MiB"),
    ("batch=100000000", "MiB"),
    ("seq=65", "outside the bundle's seq range [1, 64]"),
    ("batch=1,batch=2", "names batch twice"),
    ("batch=1,,seq=8", "empty item"),
    ("batch=1,", "empty item"),
    ("seq=٣", "is not AXIS=SIZE"),
    ("batch=" + "9" * 40, "is not AXIS=SIZE"),
    ("bätch=1", "is not AXIS=SIZE"),
    ("batch=-1", "is not AXIS=SIZE"),
    (" ", "empty"),
])
def test_bad_fixed_shapes_are_one_line(tmp_path, encoder_bundle, fixed, message):
    start = time.perf_counter()
    proc = cli("deploy", encoder_bundle.path, "--target", "android", "--out", tmp_path / "o", "--fixed-shape", fixed,
               ok=False)
    assert_bad_input(proc, message)
    assert list(tmp_path.iterdir()) == [] and time.perf_counter() - start < 30  # refused before any allocation


def test_fixed_shape_library_values_are_checked(tmp_path, encoder_bundle):
    from edgeformer.deploy import DeployError, DeployOptions, deploy

    for fixed in ({"batch": True}, {"batch": 2.0}, {"batch": 10**8}, {"batch": np.int64(2)}):
        with pytest.raises(DeployError, match="--fixed-shape"):
            deploy(encoder_bundle.path, "android", tmp_path / "o", DeployOptions(fixed_shape=fixed))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["arm64", "web"])
def test_targets_without_fixed_shapes_refuse_it(tmp_path, encoder_bundle, target):
    proc = cli("deploy", encoder_bundle.path, "--target", target, "--out", tmp_path / "o", "--fixed-shape", "batch=2",
               ok=False)
    assert_bad_input(proc, f"--fixed-shape is for android, ios, tensorrt, jetson, triton; the {target} target runs")
    assert list(tmp_path.iterdir()) == []


def test_help_names_exactly_the_targets_that_take_fixed_shapes():
    from edgeformer.cli.deploy_cmd import FIXED_SHAPE_HELP
    from edgeformer.deploy.targets import TARGETS, fixed_shape_targets

    named = re.findall(r"(?:^|[.;] )([a-z0-9, ]+): ", FIXED_SHAPE_HELP)
    taken = [t.strip() for group in named for t in group.split(",")]
    assert taken == fixed_shape_targets() == ["android", "ios", "tensorrt", "jetson", "triton"]
    refused = re.search(r"Refused by ([a-z0-9, ]+) and ([a-z0-9]+)\.", FIXED_SHAPE_HELP).groups()
    assert sorted(t.strip() for g in refused for t in g.split(",")) == sorted(set(TARGETS) - set(taken))


def test_triton_takes_a_fixed_shape_from_the_cli(tmp_path, encoder_bundle):
    pytest.importorskip("tritonclient")
    proc = cli("deploy", encoder_bundle.path, "--target", "triton", "--out", tmp_path / "r", "--fixed-shape",
               "batch=2,seq=16", "--json", tmp_path / "r.json")
    assert proc.returncode == 0
    assert runtime.open_bundle(tmp_path / "r").manifest.inputs[0].shape == (2, 16)


# ------------------------------------------------------------------------------------ 4. int4 on a phone


def test_int4_bundle_from_the_cli_deploys_for_android(tmp_path, encoder_bundle):
    """`edgeformer quantize BUNDLE --recipe int4` then `deploy --target android`: the .ort loads and matches."""
    cli("quantize", encoder_bundle.path, "--recipe", "int4", "--out", tmp_path / "q")
    proc = cli("deploy", tmp_path / "q", "--target", "android", "--out", tmp_path / "a")
    assert "passed  model.ort vs model.onnx" in proc.stdout
    assert assert_matches(tmp_path / "a", tmp_path / "q") <= INT4_ATOL
    np.testing.assert_allclose(runtime.load(tmp_path / "a").classify(TEXTS).probabilities,
                               runtime.load(as_shipped(tmp_path / "q")).classify(TEXTS).probabilities, atol=INT4_ATOL, rtol=0)
