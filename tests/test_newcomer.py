"""The path a new user takes: flags that mean one thing, messages that name flags, device folders an app
developer can use, tables that fit the terminal, progress on long verbs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from edgeformer import runtime
from edgeformer.cli.main import cli

GOLDEN = Path(__file__).parent / "golden" / "v2"

# Options whose absence means "not used" (an input, a file to write, a reference to compare with): no default.
NO_DEFAULT = {"--json", "--plot", "--out", "--input", "--ids", "--text", "--file", "--image", "--audio", "--prompt",
              "--stop", "--public-key", "--reference", "--data", "--bundles", "--layers", "--steps-per-epoch",
              "--calib-data", "--key"}


def invoke(*args, columns: int | None = None):
    env = {"COLUMNS": str(columns)} if columns else {}
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def error_line(result) -> str:
    """The one line of a refused command (exit 2, no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------- flags


def test_truncate_is_on_by_default_in_every_verb_that_takes_it():
    verbs = {name: cmd for name, cmd in cli.commands.items() if any(p.name == "truncate" for p in cmd.params)}
    assert {"run", "generate"} <= set(verbs)
    for name, cmd in verbs.items():
        option = next(p for p in cmd.params if p.name == "truncate")
        assert option.default is True and option.opts == ["--truncate"] and "--no-truncate" in option.secondary_opts, name
        assert "[default: truncate]" in " ".join(invoke(name, "--help").output.split()), name


def test_every_option_shows_its_default():
    missing = []
    for name, cmd in cli.commands.items():
        ctx = click.Context(cmd, info_name=name, parent=click.Context(cli))
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.required or p.hidden or set(p.opts) & (NO_DEFAULT | {"--help"}):
                continue
            if p.is_flag and not p.secondary_opts:  # a switch: off unless given
                continue
            record = p.get_help_record(ctx)
            if record is not None and "default" not in record[1].lower():
                missing.append(f"{name} {p.opts[0]}")
    assert not missing, missing


def test_deploy_triton_batch_is_its_own_flag_and_max_batch_still_works():
    deploy = cli.commands["deploy"]
    help_text = " ".join(invoke("deploy", "--help").output.split())
    assert "--triton-batch" in help_text and "--max-batch" not in help_text and "[default: 8" in help_text
    for spelling in ("--triton-batch", "--max-batch"):
        ctx = deploy.make_context("deploy", ["b", "--target", "triton", "--out", "o", spelling, "16"])
        assert ctx.params["max_batch"] == 16
    # run, generate and bench keep --max-batch for the rows one call may take
    for verb in ("run", "generate", "bench"):
        assert "--max-batch" in invoke(verb, "--help").output


def test_top_level_help_lists_verbs_in_pipeline_order_in_full_lines(monkeypatch):
    text = invoke("--help", columns=100).output
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Commands")) + 1
    block = lines[start:lines.index("", start)]
    verbs = [line.split()[0] for line in block if line.startswith("  ") and not line.startswith("   ")]
    order = ["train", "import", "distill", "export", "parity", "quantize", "deploy", "keygen", "sign", "verify", "run",
             "generate", "bench", "serve", "debug", "demo"]
    assert sorted(verbs) == sorted(order) and [v for v in order if v in verbs] == verbs
    assert "README" in text and "..." not in "\n".join(block)
    for verb in verbs:
        first_line = " ".join(cli.commands[verb].help.split("\n\n")[0].split())
        assert first_line in " ".join(text.split()), verb


# ------------------------------------------------------------------------------------------- messages


def test_a_too_long_text_names_the_flag_on_the_command_line_and_the_argument_in_python():
    long_text = "word " * 200
    line = error_line(invoke("run", GOLDEN / "plain", "--text", long_text, "--no-truncate"))
    assert "the model accepts at most" in line and "give --truncate" in line and "truncation" not in line
    model = runtime.load(GOLDEN / "plain")
    with pytest.raises(runtime.InputError, match=r"pass truncation=True"):
        model.classify([long_text], truncation=False)
    ok = invoke("run", GOLDEN / "plain", "--text", long_text)  # on by default: cut, with a warning
    assert ok.exit_code == 0 and "truncated" in ok.stderr


def test_generate_past_the_context_names_the_flag_and_stops_there_by_default():
    line = error_line(invoke("generate", GOLDEN / "cached", "--ids", "1 2 3", "--max-new-tokens", "4000",
                             "--no-truncate"))
    assert "give --truncate to stop at the limit" in line and "on_overflow" not in line
    with pytest.raises(runtime.InputError, match="pass on_overflow='truncate'"):
        runtime.load(GOLDEN / "cached").generate([[1, 2, 3]], max_new_tokens=4000)
    ok = invoke("generate", GOLDEN / "cached", "--ids", "1 2 3", "--max-new-tokens", "4000", "--json", "-")
    assert ok.exit_code == 0, ok.output
    result = json.loads(ok.stdout)
    assert result["max_new_tokens"] < 4000 and "cut to" in result["notes"][0]


def test_stream_takes_one_prompt():
    line = error_line(invoke("generate", GOLDEN / "cached", "--ids", "1 2", "--ids", "3", "--stream"))
    assert "--stream" in line and "2 prompts" in line


def test_sampled_text_never_ends_in_half_a_character(cached_text_decoder):
    """Byte-level BPE: a sampled token can be the first byte of a multi-byte character. The stream holds
    such bytes back and drops them at the end, so the streamed text is the final text, without U+FFFD."""
    model = runtime.load(cached_text_decoder[1].path)
    unfinished = 0
    for seed in range(12):
        stream = model.stream("the lazy", max_new_tokens=6, temperature=3.0, seed=seed)
        streamed = "".join(step.texts[0] for step in stream)
        result = stream.result
        raw = model.tokenizer.decode(result.token_ids[0])
        unfinished += raw.endswith("\ufffd")
        assert streamed == result.texts[0] and not result.texts[0].endswith("\ufffd")
        assert raw.endswith("\ufffd") == any("unfinished UTF-8" in n for n in result.notes)
    assert unfinished, "no seed ended on half a character: the case was not exercised"


def test_keygen_overwrite(tmp_path):
    key = tmp_path / "release.key"
    first = json.loads(invoke("keygen", "--out", key, "--json", "-").stdout)
    line = error_line(invoke("keygen", "--out", key))
    assert "already exists" in line and "--overwrite" in line
    second = invoke("keygen", "--out", key, "--overwrite", "--json", "-")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["key_id"] != first["key_id"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.key", "release.key.pub"]  # nothing left beside
    assert key.stat().st_mode & 0o077 == 0


def test_a_checked_signature_is_confirmed_in_words_and_json(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(GOLDEN / "plain", bundle)
    key = tmp_path / "k.key"
    kid = json.loads(invoke("keygen", "--out", key, "--json", "-").stdout)["key_id"]
    assert invoke("sign", bundle, "--key", key).exit_code == 0
    shown = invoke("run", bundle, "--ids", "5 17 42", "--public-key", f"{key}.pub")
    assert shown.exit_code == 0 and f"signature verified: {bundle} is signed by key {kid[:16]}" in shown.stderr
    data = json.loads(invoke("run", bundle, "--ids", "5 17 42", "--public-key", f"{key}.pub", "--json", "-").stdout)
    assert data["signature"] == {"verified": True, "key_id": kid, "public_key": f"{key}.pub"}
    verified = json.loads(invoke("verify", bundle, "--public-key", f"{key}.pub", "--json", "-").stdout)
    assert verified["signature"]["key_id"] == kid and verified["passed"]


def test_run_ids_json_has_the_labels_the_text_shows():
    by_ids = invoke("run", GOLDEN / "plain", "--ids", "5 17 42", "--ids", "7 8", "--json", "-")
    data = json.loads(by_ids.stdout)
    manifest = runtime.open_bundle(GOLDEN / "plain").manifest
    p = np.asarray(data["probabilities"])
    assert data["label_names"] == manifest.model.labels and p.shape == (2, len(manifest.model.labels))
    assert data["labels"] == [manifest.model.labels[i] for i in p.argmax(-1)]
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    human = invoke("run", GOLDEN / "plain", "--ids", "5 17 42", "--ids", "7 8").stdout
    assert all(f"row {i}: {label} (" in human for i, label in enumerate(data["labels"]))


def test_parity_of_a_quantized_bundle_says_where_its_budget_comes_from():
    result = invoke("parity", GOLDEN / "int8", "--reference", GOLDEN / "checkpoint", "--json", "-")
    data = json.loads(result.stdout)
    assert data["budget_source"].startswith("no --max-drop was given when it was quantized")
    said = result.stdout + result.stderr
    assert f"budget {data['max_drop']:.4g} (no --max-drop was given" in said


# ------------------------------------------------------------------------------------------- device folders


@pytest.fixture(scope="module")
def fixed_android(tmp_path_factory):
    out = tmp_path_factory.mktemp("mobile") / "bundle-android"
    result = invoke("deploy", GOLDEN / "plain", "--target", "android", "--out", f"{out}/", "--fixed-shape",
                    "batch=1,seq=32")
    assert result.exit_code == 0, result.output
    return out, result


def test_a_fixed_folder_says_how_it_was_made_and_its_example_runs(fixed_android):
    out, result = fixed_android
    assert "//" not in result.output and "warning" not in result.stderr
    readme = (out / "README.md").read_text()
    assert "`edgeformer deploy plain --target android --fixed-shape batch=1,seq=32`" in readme
    assert readme.count("--fixed-shape ") == 1 and "The shapes are fixed" in readme  # no advice to fix what is fixed
    command = readme.split("On a desktop the folder runs as any bundle: `", 1)[1].split("`", 1)[0]
    args = [a.strip('"') for a in command.replace('"a text to try"', "TEXT").split()[1:]]
    args = [str(out) if a == "DIR" else "a text to try" if a == "TEXT" else a for a in args]
    ran = invoke(*args)
    assert ran.exit_code == 0, ran.output
    assert "row 0" in ran.stdout or "0: " in ran.stdout


def test_fixing_seq_alone_warns_that_the_batch_stays_dynamic(tmp_path):
    result = invoke("deploy", GOLDEN / "plain", "--target", "android", "--out", tmp_path / "a", "--fixed-shape", "seq=32")
    assert result.exit_code == 0, result.output
    assert "warning: --fixed-shape seq=32 leaves axis batch dynamic" in result.stderr
    assert "--fixed-shape seq=32,batch=1" in (tmp_path / "a" / "README.md").read_text()


@pytest.mark.parametrize("target, language", [("android", "kotlin"), ("ios", "swift")])
def test_the_app_example_feeds_what_the_tokenizer_gives_and_lists_what_the_model_answers(tmp_path, target, language,
                                                                                        fixed_android):
    from edgeformer.deploy.mobile_app import example_case

    out = fixed_android[0] if target == "android" else tmp_path / "bundle-ios"
    if target == "ios":
        assert invoke("deploy", GOLDEN / "plain", "--target", "ios", "--out", out, "--fixed-shape",
                      "batch=1,seq=32").exit_code == 0
    model = runtime.load(out)
    case = example_case(model.manifest, out / "vectors.json", model.manifest.deploy.fixed_shape)
    readme = (out / "README.md").read_text()
    code = readme.split(f"```{language}\n", 1)[1].split("```", 1)[0]
    ids = ", ".join(map(str, case["tokens"]))
    assert f"[{ids}]" in code and f"seq = {case['seq']}" in code and "tokenizer.json" in readme
    assert case["tokens"] == model.tokenizer.encode(case["text"])  # what the shipped tokenizer gives
    feeds = {"input_ids": np.asarray([case["input_ids"]], dtype=np.int64),
             "attention_mask": np.asarray([case["attention_mask"]], dtype=np.int64)}
    assert feeds["input_ids"].shape == (1, 32)
    logits = model(feeds)["logits"][0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    np.testing.assert_allclose(p, case["probabilities"], atol=case["atol"])
    assert case["labels"][int(p.argmax())] == case["label"]
    listed = ", ".join(f"{v:.6g}" for v in case["probabilities"])
    assert f"label `{case['label']}`, probabilities [{listed}]" in readme


# ------------------------------------------------------------------------------------------- tables


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_tables_fit_columns_when_piped_and_keep_every_name_whole(columns, monkeypatch, capsys):
    from edgeformer.cli.output import table

    ops = ["ai.onnx:Attention", "ai.onnx:LayerNormalization", "ai.onnx:ReduceSum", "com.microsoft:MatMulNBits"]
    monkeypatch.setenv("COLUMNS", str(columns))
    table("coverage", ["provider", "nodes taken", "falls back to CPU", "verdict"], [["NNAPI", "3/55", ", ".join(ops), "NO"]])
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= columns and "…" not in "".join(lines)
    column = "".join(line.split("│")[3].strip() for line in lines if line.count("│") == 5)  # the ops' cells, rejoined
    assert column.replace(" ", "") == ",".join(ops)


def test_the_sample_files_are_the_built_in_data_they_say_they_are():
    """docs/samples: the README's `run --image` and `run --audio` inputs, remade by the lines docs/speech-and-vision.md gives."""
    from PIL import Image

    from edgeformer.runtime.speech import read_wav
    from edgeformer.tasks.images import digits
    from edgeformer.tasks.speech import held_out

    samples = Path(__file__).parent.parent / "docs" / "samples"
    d = digits()
    assert np.array_equal(np.asarray(Image.open(samples / "digit.png")), d.eval_images[0, 0]) and d.eval_labels[0] == 5
    waveform, rate = read_wav(samples / "digits.wav")
    utterance = held_out(2)[1]
    assert rate == 16000 and utterance.text == "838467"
    np.testing.assert_allclose(waveform, utterance.waveform, atol=1 / 32767)  # 16-bit PCM
