"""The `edgeformer` command: one verb per stage. Commands are thin; the work is in library functions.

Exit codes: 0 success, 1 a parity gate failed, 2 bad input (one line on stderr, no traceback).
Heavy imports happen inside each command so that `edgeformer run` starts without PyTorch.
"""

from __future__ import annotations

import sys

import click

from edgeformer.runtime.errors import EdgeformerError, GateFailure

from .options import (Aliased, FiniteFloat, finite_floats, json_option, long_input_options, out_options, output_dir,
                      plot_option, public_key_option, runtime_options, seed_option, training_options, truncate_option)
from .output import error_text, ms, one_line, table, write_json


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {one_line(message)}", err=True)


class Group(click.Group):
    def main(self, *args, **kwargs):
        """Click's own errors (a missing argument, an unknown option or command, a bad value) in one line, exit 2."""
        kwargs.pop("standalone_mode", None)
        try:
            argv = kwargs.get("args", args[0] if args else None)
            if argv is not None and any("\0" in str(a) for a in argv):  # no path or text may hold one
                raise click.UsageError("an argument holds a NUL byte; expected text without NUL characters")
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {one_line(e.format_message())}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)

    def list_commands(self, ctx):
        """The verbs in the order the pipeline runs them, then any verb not placed yet."""
        return [v for v in PIPELINE if v in self.commands] + sorted(v for v in self.commands if v not in PIPELINE)

    def format_commands(self, ctx, formatter):
        """Each verb with its whole first line (click cuts it to the terminal's width)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands[name]
            if not cmd.hidden:
                rows.append((name, " ".join((cmd.help or "").split("\n\n")[0].split())))
        with formatter.section("Commands, in the order a model goes through them"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        import warnings

        warnings.showwarning = _one_line_warning  # the message, not the source line that raised it
        try:
            return super().invoke(ctx)
        except GateFailure as e:  # the command ran and measured a result that does not hold: exit 1
            shown = e.report_table()
            if shown is not None and not ctx.meta.get("edgeformer.report_shown"):
                table(*shown)
            for line in e.report_lines() + e.diagnosis:
                click.echo(line)
            click.echo(f"error: {error_text(e)}", err=True)
            sys.exit(1)
        except EdgeformerError as e:  # bad input: one line, exit 2
            click.echo(f"error: {error_text(e)}", err=True)
            sys.exit(2)
        except OSError as e:  # an unwritable --out, a full disk: the user's environment, not a bug
            click.echo(one_line(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")), err=True)
            sys.exit(2)


# define -> train -> distill -> export -> parity -> quantize -> deploy -> sign -> run (and the tools around it)
PIPELINE = ("train", "import", "distill", "export", "parity", "quantize", "deploy", "keygen", "sign", "verify", "run",
            "generate", "bench", "serve", "debug", "demo")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
             epilog="The README walks through every stage, from a first model to a phone, a GPU server or a browser "
                    "(README.md in the source, or the project page on PyPI); 'edgeformer VERB --help' lists a verb's "
                    "options.")
@click.version_option(package_name="edgeformer")
def cli():
    """Train, export, check and run transformers for the edge."""


@cli.command()
@click.option("--arch", type=click.Choice(["encoder", "decoder", "seq2seq", "vit", "conformer"]), required=True,
              help="vit: an image classifier; conformer: a speech recogniser from raw audio.")
@click.option("--preset", help="Model size: tiny, small or base. Default: the task's (small for stdlib-topics, else tiny).")
@click.option("--task", help="Built-in task: stdlib-topics (encoder), pydoc-lm (decoder), reverse (seq2seq), "
              "digits (vit), audio-digits, spoken-digits or spoken-commands (conformer). Default: the arch's task. Each task brings the preset, epochs, "
              "learning rate and batch size its documented result was measured with; a flag given wins.")
@click.option("--data", "data_file", type=click.Path(dir_okay=False), help="Your own data: .jsonl or text file.")
@out_options("Checkpoint directory")
@training_options(epochs=None)
@long_input_options
@click.option("--norm", type=click.Choice(["pre", "post"]), help="LayerNorm before (default) or after each sublayer.")
@click.option("--vocab-size", type=click.IntRange(min=300), help="BPE vocabulary size. Default: the task's (300 for reverse, else 2048).")
@click.option("--streaming/--no-streaming", default=None,
              help="conformer: train to stream too (a causal convolution; attention on random chunks of the past), "
                   "for export --streaming. Default: the task's (on for spoken-digits).")
@json_option
def train(arch, preset, task, data_file, out, epochs, batch_size, lr, seq_len, long_input, norm, vocab_size, streaming,
          seed, overwrite, json_out):
    """Train a model on a built-in task or your data and write a checkpoint."""
    from click.core import ParameterSource

    from edgeformer.modeling.config import ModelConfig
    from edgeformer.modeling.training.train import train_checkpoint, training_config
    from edgeformer.tasks.defaults import task_defaults

    ModelConfig.from_preset(preset or task_defaults(arch, task, data_file).preset)  # before any data is read
    ctx = click.get_current_context()
    flags = dict(epochs=epochs, batch_size=batch_size, lr=lr, seq_len=seq_len, seed=seed)
    given = {name: value for name, value in flags.items() if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT}
    tc = training_config(arch, task, data_file, **given)  # what the user left out is the task's
    if streaming is not None and arch != "conformer":
        raise click.UsageError(f"--streaming/--no-streaming is for speech recognisers (--arch conformer), not {arch}")
    overrides = {**long_input, **({"norm": norm} if norm else {}), **({"streaming": streaming} if streaming is not None else {})}
    result = train_checkpoint(out, arch, preset, task, data_file, tc, vocab_size, overrides, overwrite=overwrite)
    from edgeformer.modeling.training.distributed import current

    if not current().is_main:  # under torchrun, rank 0 speaks for the job
        return
    click.echo(f"wrote checkpoint {out} ({result.seconds:.1f} s)")
    write_json(json_out, {"checkpoint": out, "history": result.history, "seconds": result.seconds})


@cli.command("import")
@click.argument("hf_dir", type=click.Path())
@out_options("Checkpoint directory")
@json_option
def import_(hf_dir, out, overwrite, json_out):
    """Import a Hugging Face model directory (BERT, GPT-2, ViT, Llama, Qwen2, Mistral, T5; safetensors) or a GGUF file (llama) as an edgeformer checkpoint."""
    from edgeformer.modeling.hf import import_hf

    model = import_hf(hf_dir, out, overwrite=overwrite)
    cfg = model.cfg
    click.echo(f"wrote checkpoint {out}: {cfg.task} {cfg.arch}, {cfg.n_layers} layers x {cfg.d_model} wide, "
               f"{model.num_parameters() / 1e6:.1f}M parameters, max length {cfg.max_len}")
    write_json(json_out, {"checkpoint": out, "config": cfg.to_dict(), "parameters": model.num_parameters()})


@cli.command()
@click.argument("bundle", type=click.Path())
@out_options("Quantized bundle directory", required=False)
@click.option("--recipe", type=click.Choice(["int8-dynamic", "int8-static", "int4", "int8-weights", "fp16"]),
              default="int8-dynamic",
              show_default=True)
@click.option("--max-drop", type=FiniteFloat(min=0), help="Accuracy budget: the largest task-metric drop allowed "
              "[default: none; the drop is measured and recorded, and parity later holds the bundle to it plus 10%].")
@click.option("--eval-data", type=click.Path(dir_okay=False), help="Evaluation texts: one per line, or .jsonl with text "
              "(and label) [default: built-in texts for the bundle's kind].")
@click.option("--calibration", type=click.Choice(["minmax", "entropy", "percentile"]), default="percentile", show_default=True,
              help="int8-static: how activation ranges are chosen.")
@click.option("--calib-data", type=click.Path(dir_okay=False),
              help="Calibration inputs: texts one per line, .jsonl with text, or .npz of model inputs (default: built-in text).")
@click.option("--smooth-alpha", default="auto", show_default=True,
              type=FiniteFloat(min=0, max=1, min_open=True, words=("auto", "off")),
              callback=lambda ctx, p, v: None if v == "off" else v,
              help="int8: move activation outliers into the weights with this strength (0-1], 'auto' or 'off'.")
@click.option("--block-size", default=32, show_default=True, type=click.Choice(["16", "32", "64", "128"]),
              help="int4, int8-weights: weights per block.")
@click.option("--asymmetric", is_flag=True, help="int4, int8-weights: asymmetric blocks (with zero points).")
@click.option("--accuracy-level", default="4", show_default=True, type=click.Choice(["0", "1", "2", "3", "4"]),
              help="int4, int8-weights: MatMulNBits compute (4: int8 activations, fastest on CPUs; 0: float32; see README).")
@click.option("--keep-float", type=click.IntRange(0, 8), default=2, show_default=True,
              help="int8 on text encoders: when the calibration texts lose over 0.005, up to this many of the most "
                   "sensitive FFN output MatMuls stay float32 (0: every MatMul int8, smallest and fastest).")
@click.option("--budget-metric", type=click.Choice(["perplexity", "exact-match"]),
              help="Generation bundles: what --max-drop bounds (default perplexity: relative increase; exact-match: seq2seq).")
@click.option("--compare", is_flag=True, help="Run every recipe and print one table; writes no bundle.")
@plot_option("With --compare: draw accuracy against latency to FILE")
@json_option
def quantize(bundle, out, recipe, max_drop, eval_data, calibration, calib_data, smooth_alpha, block_size, asymmetric,
             accuracy_level, keep_float, budget_metric, compare, plot, overwrite, json_out):
    """Quantize BUNDLE, measure what it costs in accuracy, and keep the budget (--max-drop)."""
    from edgeformer.pipeline import quantize as pipeline
    from edgeformer.quantize import GenerationFidelity, RecipeOptions
    from edgeformer.quantize.report import plot_tradeoff

    from .quantize_report import COMPARE_COLUMNS, compare_footer, compare_rows, compare_title, generation_summary, written_line

    if plot and not compare:
        raise EdgeformerError("--plot draws the --compare table; give --compare too")
    opt = RecipeOptions(block_size=int(block_size), symmetric=not asymmetric, calibration=calibration,
                        accuracy_level=int(accuracy_level), sensitive_float=keep_float)
    say = (lambda m: click.echo(m, err=True)) if json_out == "-" else click.echo
    if compare:
        results = pipeline.compare(bundle, eval_data, calib_data, opt, smooth_alpha, progress=say)
        if json_out != "-":
            table(compare_title(bundle, results), COMPARE_COLUMNS, compare_rows(results))
            for line in compare_footer(results):
                click.echo(line)
        if plot:
            say(f"drew {plot_tradeoff(results, plot, f'quantization recipes for {bundle}')}")
        write_json(json_out, [r.to_json() for r in results])
        return
    if not out:
        raise EdgeformerError("give --out for the quantized bundle (or --compare to only measure)")
    r = pipeline.quantize(bundle, out, recipe, max_drop, eval_data, calib_data, opt, smooth_alpha, budget_metric,
                          overwrite=overwrite, progress=say)
    if isinstance(r.fidelity, GenerationFidelity):
        say(generation_summary(r))
    say(written_line(out, recipe, r))
    write_json(json_out, r.to_json())


@cli.command()
@click.argument("bundle", type=click.Path())
@click.option("--input", "input_file", type=click.Path(dir_okay=False),
              help=".npy of input_ids (B, T) or (T,), or .npz with one array per input name.")
@click.option("--ids", multiple=True, help='Token ids of one sequence, e.g. "5 17 42" (repeat for a batch; rows are right-padded).')
@click.option("--text", "texts", multiple=True, help="A text to embed or classify (repeatable).")
@click.option("--file", "text_file", type=click.Path(dir_okay=False), help="Texts to embed or classify, one per line.")
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False),
              help="An image file (PNG, ...) to classify with an image bundle (repeatable; needs Pillow).")
@click.option("--resize", is_flag=True, help="With --image: resize images to the model's size instead of refusing them.")
@click.option("--audio", multiple=True, type=click.Path(dir_okay=False),
              help="A 16 kHz mono PCM .wav file to transcribe with a speech bundle (repeatable).")
@click.option("--stream", is_flag=True, help="With --audio and a streaming bundle: feed the file a chunk at a time and "
              "print the transcript as it grows.")
@truncate_option("texts longer than the model's maximum are cut, with a warning.")
@runtime_options
@public_key_option
@json_option
def run(bundle, input_file, ids, texts, text_file, images, resize, audio, stream, truncate, providers, spin, threads,
        max_batch, public_key, json_out):
    """Run BUNDLE on token ids, texts, images or audio and print its outputs (no PyTorch needed)."""
    from . import media_cmd, run_cmd

    media_cmd.check_media_options(images, audio, bool(input_file or ids or texts or text_file), stream)
    model = run_cmd.load(bundle, providers, spin, threads, public_key, max_batch)
    if images:
        media_cmd.run_images(model, images, resize, json_out)
    elif stream:
        media_cmd.run_audio_stream(model, audio, json_out)
    elif audio:
        media_cmd.run_audio(model, audio, json_out)
    elif texts or text_file:
        run_cmd.run_text(model, texts, text_file, input_file or ids, truncate, json_out)
    else:
        run_cmd.run_ids(model, input_file, ids, json_out)


@cli.command()
@click.argument("bundle", type=click.Path())
@click.option("--prompt", "prompts", multiple=True, help="Text to continue (repeat for a batch; rows are left-padded).")
@click.option("--ids", multiple=True, help='Token ids of a prompt, e.g. "5 17 42" (repeatable), for bundles without a tokenizer.')
@click.option("--max-new-tokens", default=32, show_default=True, type=int, help="Tokens to generate per prompt.")
@click.option("--stream", is_flag=True, help="Print text as it is produced (one prompt).")
@click.option("--chat", help="A user's message, rendered with the model's own chat template; prints the reply "
              "(default: none; --prompt or --ids continue a text instead).")
# The sampling ranges are runtime.sampling's (its messages say why a value is refused); here NaN and infinities.
@click.option("--temperature", default=0.0, show_default=True, type=FiniteFloat(), help="0: greedy; above 0: sample.")
@click.option("--top-k", default=0, show_default=True, type=int, help="Sample among the k most likely tokens (0: all).")
@click.option("--top-p", default=1.0, show_default=True, type=FiniteFloat(), help="Sample within this much probability mass, in (0, 1].")
@click.option("--repetition-penalty", default=1.0, show_default=True, type=FiniteFloat(), help="Above 1: fewer repeats (1: off).")
@click.option("--stop", multiple=True, help="Stop at this string, or token id when an integer (repeatable).")
@seed_option("sampling: the same seed gives the same text")
@truncate_option("--max-new-tokens past the context stops there, with a note.")
@runtime_options
@public_key_option
@json_option
def generate(bundle, prompts, ids, max_new_tokens, stream, chat, temperature, top_k, top_p, repetition_penalty, stop,
             seed, truncate, providers, spin, threads, max_batch, public_key, json_out):
    """Generate text with BUNDLE (a decoder exported with --kv-cache); no PyTorch needed."""
    from . import generate_cmd, run_cmd

    model = run_cmd.load(bundle, providers, spin, threads, public_key, max_batch)
    settings = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                    stop=generate_cmd.parse_stop(stop), seed=seed, on_overflow="truncate" if truncate else "error")
    generate_cmd.run_generate(model, prompts, ids, max_new_tokens, stream, settings, json_out, chat)


@cli.command()
@click.argument("bundle", type=click.Path())
@click.option("--batch-size", "--batch", "batch", default=1, show_default=True, type=click.IntRange(min=1), cls=Aliased,
              help="Rows per call.")
@click.option("--seq-len", "--seq", "seq", default=128, show_default=True, type=click.IntRange(min=1), cls=Aliased,
              help="Tokens per row.")
@click.option("--reference", type=click.Path(), help="PyTorch checkpoint to time in the same run (eager).")
@click.option("--bench-seconds", "--seconds", "seconds", default=3.0, show_default=True, type=FiniteFloat(min=0.1),
              cls=Aliased, help="Time per side.")
@runtime_options
@json_option
def bench(bundle, batch, seq, reference, seconds, providers, spin, threads, max_batch, json_out):
    """Latency of BUNDLE (median, p90, p99), and its ratio to PyTorch eager with --reference."""
    from edgeformer import runtime
    from edgeformer.runtime.bench import bench_model

    model = runtime.load(bundle, providers=providers or None, spin=spin, threads=threads, max_batch=max_batch)
    runner = None
    if reference:
        from edgeformer.modeling import load as load_checkpoint
        from edgeformer.modeling.eager import eager_runner

        ref_model = load_checkpoint(reference)
        runner = lambda feeds: eager_runner(ref_model, feeds)  # noqa: E731
    result = bench_model(model, batch, seq, runner, min_seconds=seconds)
    rows = [["onnxruntime (" + ", ".join(p.replace("ExecutionProvider", "") for p in result.providers) + ")",
             ms(result.runtime.median_ms), ms(result.runtime.p90_ms), ms(result.runtime.p99_ms),
             f"{result.runtime.throughput(batch):.1f}", result.runtime.runs]]
    if result.eager:
        e = result.eager
        rows.append(["pytorch eager", ms(e.median_ms), ms(e.p90_ms), ms(e.p99_ms), f"{e.throughput(batch):.1f}", e.runs])
    if json_out != "-":
        table(f"bench {bundle}: batch {batch} x {seq} tokens", ["engine", "median ms", "p90 ms", "p99 ms", "seq/s", "runs"], rows)
        if result.speedup and result.reliable:
            click.echo(f"onnxruntime is {result.speedup:.2f}x the speed of PyTorch eager (median, same run; {result.reason})")
        elif result.speedup:
            click.echo(f"speed-up vs PyTorch eager: unreliable, not reported ({result.reason})")
    write_json(json_out, result.to_json())


@cli.command()
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False), callback=output_dir,
              help="Folder for the demo's checkpoints, bundles and summary.")
@click.option("--quick", is_flag=True, help="Fewer epochs and a shorter benchmark (for tests).")
@json_option
def demo(out, quick, json_out):
    """Train a small encoder and decoder, export, check parity, benchmark, and summarise."""
    from .demo import run_demo

    summary = run_demo(out, quick=quick)
    write_json(json_out, summary)


from .export_cmd import export, parity  # noqa: E402

cli.add_command(export)
cli.add_command(parity)

# Its own module: the verb's options and its report table are long. Imports torch only when run.
from .distill_cmd import distill  # noqa: E402

cli.add_command(distill)

from .deploy_cmd import deploy  # noqa: E402

cli.add_command(deploy)

from .debug_cmd import debug  # noqa: E402

cli.add_command(debug)

from .sign_cmd import keygen, sign  # noqa: E402

cli.add_command(keygen)
cli.add_command(sign)

from .serve_cmd import serve  # noqa: E402

cli.add_command(serve)

from .verify_cmd import verify  # noqa: E402

cli.add_command(verify)

finite_floats(cli)  # a verb that declared click's own float types refuses NaN and infinities too


def main():
    cli(prog_name="edgeformer")


if __name__ == "__main__":
    main()
