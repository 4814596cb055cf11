"""The layering in DESIGN.md, checked on the source: which folder may import which."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> names its modules must never import (at any depth: module level or inside functions)
FORBIDDEN = {
    "runtime": ["torch", "onnx", "onnxscript", "onnx_ir", "safetensors", "edgeformer.modeling", "edgeformer.export",
                "edgeformer.quantize", "edgeformer.cli"],
    "modeling": ["edgeformer.export", "edgeformer.quantize", "edgeformer.cli"],
    "export": ["edgeformer.quantize", "edgeformer.cli"],
    "deploy": ["torch", "edgeformer.modeling", "edgeformer.export", "edgeformer.quantize", "edgeformer.cli"],
    "quantize": ["torch", "edgeformer.modeling", "edgeformer.export", "edgeformer.cli"],
}


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", list(FORBIDDEN))
def test_folder_respects_layering(folder):
    offences = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in imported_names(path):
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
