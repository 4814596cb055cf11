"""`edgeformer distill`: teacher checkpoint -> smaller student checkpoint, and the report table.

The report (both exported behind the parity gate, timed in the same run, sizes and metrics side by
side) is edgeformer.export.distill_report's; this verb parses options, calls the library, prints.
"""

from __future__ import annotations

import click

from edgeformer.pipeline.distill_table import report_rows

from .options import Aliased, FiniteFloat, json_option, long_input_options, out_options, output_dir, training_options
from .output import table, write_json


@click.command()
@click.option("--teacher", required=True, type=click.Path(), help="Teacher checkpoint directory.")
@click.option("--student", required=True, help="Student size: a preset (tiny, small, base) in the teacher's style, or a config .json.")
@click.option("--layers", type=click.IntRange(min=1), help="Student blocks (overrides the preset's or the config's).")
@click.option("--task", help="Built-in task (default: the teacher's; embedding teachers: pydoc-lm sentences).")
@click.option("--data", "data_file", type=click.Path(dir_okay=False),
              help="Your data: as for train; for an embedding teacher one text per line (or .jsonl with text).")
@out_options("Student checkpoint directory")
@training_options(epochs=3)
@long_input_options
@click.option("--steps-per-epoch", type=click.IntRange(min=1), help="Cap on steps per epoch.")
@click.option("--soft-temperature", "--temperature", "temperature", default=2.0, show_default=True, cls=Aliased,
              type=FiniteFloat(min=0, min_open=True),
              help="Softmax temperature of the soft targets (generate's --temperature is sampling).")
@click.option("--soft-weight", default=1.0, show_default=True, type=FiniteFloat(min=0), help="Weight of the soft-target KL loss.")
@click.option("--hard-weight", default=1.0, show_default=True, type=FiniteFloat(min=0), help="Weight of the label loss.")
@click.option("--hidden-loss/--no-hidden-loss", default=False, show_default=True, help="Hidden-state loss over --layer-map.")
@click.option("--hidden-weight", default=1.0, show_default=True, type=FiniteFloat(min=0))
@click.option("--attention-loss/--no-attention-loss", default=False, show_default=True, help="Attention-score loss (TinyBERT).")
@click.option("--attention-weight", default=1.0, show_default=True, type=FiniteFloat(min=0))
@click.option("--layer-map", help="STUDENT:TEACHER hidden-state pairs, 0 = embeddings, e.g. '1:2,2:4' (default: evenly spread).")
@click.option("--embedding-loss", type=click.Choice(["cosine", "mse"]), default="cosine", show_default=True,
              help="Embedding models: loss on the normalised sentence embeddings.")
@click.option("--init", "init", type=click.Choice(["auto", "teacher", "random"]), default="auto", show_default=True,
              help="auto: from teacher blocks spread from the first to the last, when the shapes match.")
@click.option("--report/--no-report", default=True, show_default=True, help="Export both and print the report table.")
@click.option("--bundles", type=click.Path(file_okay=False), callback=output_dir, help="Keep the report's bundles here (teacher/, student/).")
@click.option("--bench-seconds", default=2.0, show_default=True, type=FiniteFloat(min=0.1), help="Timing per bundle and batch.")
@json_option
def distill(teacher, student, layers, task, data_file, out, epochs, batch_size, lr, seq_len, long_input, steps_per_epoch, temperature,
            soft_weight, hard_weight, hidden_loss, hidden_weight, attention_loss, attention_weight, layer_map,
            embedding_loss, init, seed, report, bundles, bench_seconds, overwrite, json_out):
    """Distill TEACHER into a smaller student; report size, speed and what it keeps. Runs under torchrun too."""
    from edgeformer.export.distill_report import distill_report
    from edgeformer.modeling.distillation import DistillConfig, distill_checkpoint, parse_layer_map
    from edgeformer.modeling.training.distributed import current
    from edgeformer.modeling.training.loop import TrainConfig

    dc = DistillConfig(temperature=temperature, soft_weight=soft_weight, hard_weight=hard_weight, hidden=hidden_loss,
                       hidden_weight=hidden_weight, attention=attention_loss, attention_weight=attention_weight,
                       layer_map=parse_layer_map(layer_map) if layer_map else None, embedding_loss=embedding_loss, init=init)
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seq_len=seq_len, seed=seed, steps_per_epoch=steps_per_epoch)
    result = distill_checkpoint(teacher, student, out, task, data_file, dc, tc, layers, overwrite=overwrite,
                                progress=json_out != "-", overrides=long_input)
    if not current().is_main:
        return
    say = (lambda m: click.echo(m, err=True)) if json_out == "-" else click.echo
    say(f"wrote checkpoint {out} ({result.seconds:.1f} s): {result.metric} {result.student_metric:.4g}, "
        f"teacher {result.teacher_metric:.4g}, retention {result.retention:.3f}")
    summary = {"checkpoint": out, "result": result.to_json()}
    if report:
        say("exporting teacher and student, timing both bundles")
        summary["report"] = distill_report(teacher, out, result, bundles, seconds=bench_seconds)
        if json_out != "-":
            columns, rows = report_rows(summary["report"])
            table(f"distillation report: {teacher} -> {out} (float32, {summary['report']['input']}, same run)",
                  columns, rows)
    write_json(json_out, summary)
