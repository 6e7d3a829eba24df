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


def _calls(path: Path, method: str) -> list[str]:
    """Receivers of `<receiver>.<method>(...)` calls in `path`, as source text."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [ast.unparse(node.func.value) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == method]


def test_one_consume_loop() -> None:
    """Stage processing consumes only in the one loop; reading topics back (views, tables,
    tail) only through the read-to-end helper."""
    consuming = {str(p.relative_to(ROOT)) for p in (ROOT / "streams").rglob("*.py")
                 if _calls(p, "consume")
                 or any("consumer" in r or "reader" in r for r in _calls(p, "poll"))}
    # bench.py: the bare confluent-kafka passthrough is what the loop is measured against, and
    # the latency reader times alerts as a recipient's consumer would; neither processes records
    assert consuming == {"streams/runtime/loop.py", "streams/kafka/replay.py",
                         "streams/commands/bench.py"}


def _private_attributes(folder: Path) -> set[str]:
    """Names of the private attributes the classes in `folder` set on themselves."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "self" and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                names.add(node.attr)
    return names


def test_no_module_outside_enrichers_touches_an_enrichers_private_attributes() -> None:
    private = _private_attributes(ROOT / "enrichers")
    assert private  # the check has something to look for
    offenders = []
    for package in ("streams", "matchers", "threatroute", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            real = path.resolve().parents
            if (ROOT / "enrichers") in real or ((ROOT / "streams") in real
                                                 and package != "streams"):
                continue  # symlinked folders: each file once, enrichers' own are allowed
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr in private
                        and not (isinstance(node.value, ast.Name)
                                 and node.value.id in ("self", "cls"))):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert not offenders
