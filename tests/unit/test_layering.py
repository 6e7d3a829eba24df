"""Imports point one way: the pure packages never import streams/ or a Kafka client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ("enrichers", "matchers", "threatroute")
FORBIDDEN = {"confluent_kafka", "faust", "aiokafka", "kafka"}
STREAMS = "threatroute.streams"


def _imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
              and getattr(node.func, "id", getattr(node.func, "attr", "")) in
              ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)  # importlib.import_module("confluent_kafka")
    return names


def _sources() -> list[Path]:
    # threatroute/streams (and the other mapped folders) are symlinks: each file once, from its
    # real folder
    return sorted({p.resolve() for package in PURE for p in (ROOT / package).rglob("*.py")
                   if (ROOT / "streams") not in p.resolve().parents})


def test_pure_packages_exist() -> None:
    assert all((ROOT / package / "__init__.py").is_file() for package in PURE)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_kafka_or_streams_imports(path: Path) -> None:
    modules = _imported_modules(ast.parse(path.read_text(), filename=str(path)))
    bad = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN
                 or m == STREAMS or m.startswith(STREAMS + "."))
    assert not bad, f"{path.relative_to(ROOT)} imports {', '.join(bad)}"


def test_the_check_catches_a_violation() -> None:
    tree = ast.parse("import confluent_kafka\nfrom threatroute.streams.commands.cli import main\n"
                     "import importlib\nimportlib.import_module('faust')\n")
    modules = _imported_modules(tree)
    assert {"confluent_kafka", "threatroute.streams.commands.cli", "faust"} <= modules


def test_one_installed_namespace() -> None:
    """The mapped folders are reachable only as threatroute.<folder>."""
    for folder in ("streams", "enrichers", "matchers", "deploy"):
        link = ROOT / "threatroute" / folder
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve()
