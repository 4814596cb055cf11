"""`edgeformer deploy`: a bundle -> a folder for one kind of device (edgeformer.deploy)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import Aliased, json_option, out_options, seed_option
from .output import table, write_json

TARGET_HELP = ("android, ios: ONNX Runtime format; arm64: checked on aarch64; tensorrt, jetson: a TensorRT engine; "
               "triton: a Triton model repository; web: a static folder for the browser, checked in Chromium.")

DEFAULT_MAX_BATCH = 8  # deploy.triton.DEFAULT_MAX_BATCH, without importing onnx for --help

# The targets named here are deploy.targets.fixed_shape_targets() (tests/test_hardening_cli.py holds them equal).
FIXED_SHAPE_HELP = ("Fixed axis sizes, e.g. batch=1,seq=128 (each axis once, within the bundle's limits). android, ios: "
                    "a graph with static shapes for NNAPI/CoreML; tensorrt, jetson: an engine profiled for that one shape; "
                    "triton: config.pbtxt dims of that shape. Refused by arm64 and web. [default: the bundle's dynamic axes]")


def _profile(ctx, param, values):
    """--profile seq=1:128:256 (repeatable) -> {'seq': (1, 128, 256)}."""
    from edgeformer.deploy import DeployError

    out = {}
    for v in values:
        name, sep, rest = v.partition("=")
        parts = rest.split(":")
        if not sep or len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise DeployError(f"--profile {v!r}: expected AXIS=MIN:OPT:MAX, e.g. seq=1:128:256")
        lo, opt, hi = (int(p) for p in parts)
        if not 1 <= lo <= opt <= hi:
            raise DeployError(f"--profile {v!r}: expected 1 <= MIN <= OPT <= MAX")
        out[name.strip()] = (lo, opt, hi)
    return out or None


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--target", required=True, help=TARGET_HELP)
@out_options("Deployment folder")
@click.option("--fixed-shape", metavar="AXIS=N,...", help=FIXED_SHAPE_HELP)
@click.option("--check/--no-check", default=None,
              help="arm64: run the parity check on emulated aarch64 (needs qemu-aarch64-static; default off). "
              "web: check in headless Chromium before writing (default on; --no-check writes an unchecked folder).")
@click.option("--emulator-root", type=click.Path(file_okay=False), help="arm64 --check: cache folder of the aarch64 root [default: ~/.cache/edgeformer/arm64-root, "
              "or under $XDG_CACHE_HOME].")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="tensorrt/jetson: engine precision (int8 needs an int8-static bundle).")
@click.option("--profile", multiple=True, callback=_profile, metavar="AXIS=MIN:OPT:MAX",
              help="tensorrt/jetson: override the optimization profile of one axis (repeatable) "
              "[default: each axis from the bundle's minimum to its maximum, optimized for batch 1 and 128 tokens].")
@click.option("--timing-cache", type=click.Path(dir_okay=False, exists=True),
              help="tensorrt/jetson: seed the build with this timing cache (default: the one in --out when overwriting).")
@click.option("--trt-attention", is_flag=True, help="jetson: the board's TensorRT (>= 10.14) parses fused Attention nodes.")
@click.option("--name", help="triton: the model's name in the repository (default: the bundle's folder name).")
# Not --max-batch: on run, generate and bench that names the rows one call may take. The old spelling still works.
@click.option("--triton-batch", "--max-batch", "max_batch", type=click.IntRange(min=1), cls=Aliased,
              help="triton: config.pbtxt's max_batch_size, the largest batch dynamic batching forms "
              f"[default: {DEFAULT_MAX_BATCH}, or the bundle's batch limit when lower].")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(min=1), help="triton: instances per device.")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="triton: where the instances run.")
@click.option("--threads", type=click.IntRange(min=1),
              help="web: the threads the page runs the model on (default: the browser's cores); checked at 1, 2 and this.")
@seed_option("the checks' random inputs")
@json_option
def deploy(bundle, target, out, fixed_shape, check, emulator_root, precision, profile, timing_cache, trt_attention, name,
           max_batch, instances, device, threads, seed, overwrite, json_out):
    """Write BUNDLE as a folder for one kind of device, checked as far as this machine allows."""
    from edgeformer.deploy import DeployOptions, deploy as deploy_bundle
    from edgeformer.deploy.folder import parse_fixed_shape

    opt = DeployOptions(fixed_shape=parse_fixed_shape(fixed_shape) if fixed_shape else None, check=check,
                        emulator_root=emulator_root, precision=precision, profile=profile, timing_cache=timing_cache,
                        trt_attention=trt_attention,
                        name=name, max_batch=max_batch, instances=instances, device=device, threads=threads, seed=seed)
    say = (lambda m: click.echo(m, err=True)) if json_out == "-" else click.echo
    result = deploy_bundle(bundle, target, out, opt, overwrite=overwrite, progress=say)
    if json_out != "-":
        for title, columns, rows in result.deployment.tables:
            table(title, columns, rows)
        for c in result.deployment.checks:
            click.echo(c.line())
    folder = Path(out)
    say(f"wrote {target} deployment {folder}: {result.deployment.graph} (see {folder / 'README.md'})")
    write_json(json_out, result.to_json())
