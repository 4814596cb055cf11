"""The layering of the README's "Layout" table, checked on the source: which folder may import which.

Every import form counts: `import a.b`, `from a.b import c` (recorded as a.b and a.b.c, so
`from edgeformer import modeling` is seen as edgeformer.modeling), and relative imports, resolved
against the package the file belongs to (`from ..modeling import x` inside runtime/ is
edgeformer.modeling)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> names its modules must never import (at any depth: module level or inside functions)
ABOVE_ALL = ["edgeformer.pipeline", "edgeformer.cli"]  # the joins between stages, and the CLI over them
FORBIDDEN = {
    "runtime": ["torch", "onnx", "onnxscript", "onnx_ir", "safetensors", "edgeformer.modeling", "edgeformer.export",
                "edgeformer.quantize", "edgeformer.tasks", *ABOVE_ALL],
    # the built-in data that training, quantization and the CLI share: numpy, the runtime, scikit-learn's data files
    "tasks": ["torch", "onnx", "onnxscript", "onnx_ir", "safetensors", "edgeformer.modeling", "edgeformer.export",
              "edgeformer.quantize", "edgeformer.deploy", "edgeformer.debug", *ABOVE_ALL],
    "modeling": ["edgeformer.export", "edgeformer.quantize", *ABOVE_ALL],
    "export": ["edgeformer.quantize", *ABOVE_ALL],
    "deploy": ["torch", "edgeformer.modeling", "edgeformer.export", "edgeformer.quantize", *ABOVE_ALL],
    "quantize": ["torch", "edgeformer.modeling", "edgeformer.export", *ABOVE_ALL],
    # the torch-free core of `edgeformer debug`: quantize calls it, so it must not need torch
    "debug": ["torch", "safetensors", "edgeformer.modeling", "edgeformer.export", "edgeformer.quantize", *ABOVE_ALL],
    "pipeline": ["edgeformer.cli"],
    # benchmarks call the library as a user's script would, never the CLI's internals
    "benchmarks": ["edgeformer.cli"],
}


def package_of(path: Path) -> str:
    """edgeformer.<folder>[.<sub>] for a module under the repository root."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("edgeformer",) + parts[:-1])


def imported_names(source: str, package: str) -> set[str]:
    """Every module name the source imports; `package` resolves its relative imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def test_imported_names_sees_every_form():
    source = ("from edgeformer import modeling\nfrom .. import export\nfrom ..quantize.recipes import x\n"
              "def f():\n    import torch.nn\n")
    names = imported_names(source, "edgeformer.runtime")
    assert {"edgeformer.modeling", "edgeformer.export", "edgeformer.quantize.recipes", "torch.nn"} <= names


@pytest.mark.parametrize("folder", list(FORBIDDEN))
def test_folder_respects_layering(folder):
    offences = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in imported_names(path.read_text(), package_of(path)):
            for banned in FORBIDDEN[folder]:
                if name == banned or name.startswith(banned + "."):
                    offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, offences


def test_every_package_is_installed():
    """A folder with an __init__.py that pyproject.toml does not list would be missing from the wheel."""
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {str(p.parent.relative_to(ROOT)) for folder in setup["package-dir"].values()
            for p in (ROOT / folder).rglob("__init__.py")}
    assert dirs == set(setup["package-dir"].values())
    assert set(setup["packages"]) == set(setup["package-dir"])
