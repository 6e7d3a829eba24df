"""The built wheel is a product too: installed into a fresh virtualenv, outside the source tree,
it runs, and it installs nothing but the `threatroute` namespace.

No broker: `--version`, `explain` and `ingest --dry-run` need none. Slow (a wheel build and a
virtualenv with every dependency; pip's cache makes repeats quick), so it lives with the
integration tests and is marked `slow`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.slow
DEMO = ROOT / "deploy" / "demo" / "indicators.jsonl"
REGISTRY = ROOT / "deploy" / "recipients.example.yaml"


def run(*args: str | Path, cwd: Path, input: bytes | None = None, timeout: float = 600
        ) -> subprocess.CompletedProcess[bytes]:
    # no PYTHONPATH or THREATROUTE_* from the test run: the installed copy on its own
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "THREATROUTE_", "VIRTUAL_ENV"))}
    return subprocess.run([str(a) for a in args], cwd=cwd, input=input, capture_output=True,
                          timeout=timeout, env=env, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a clean copy: setuptools leaves build/ behind and may reuse stale files there
    source = tmp_path_factory.mktemp("source") / "threatroute"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".threatroute", "build", "dist", "*.egg-info", "__pycache__",
        ".*_cache", ".kafka-dist", "kafka-logs"))
    out = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source,
                cwd=out)
    assert built.returncode == 0, built.stderr.decode()[-3000:]
    (found,) = out.glob("threatroute-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The `threatroute` script of a fresh virtualenv with the wheel and its dependencies."""
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(home)
    done = run(home / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=home)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return home / "bin" / "threatroute"


def test_the_wheel_holds_only_the_threatroute_namespace_and_its_package_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"threatroute", "threatroute-0.1.0.dist-info"}
    for path in ("threatroute/streams/commands/cli.py", "threatroute/matchers/routing.py",
                 "threatroute/enrichers/asn.py", "threatroute/deploy/threatroute.toml",
                 "threatroute/deploy/schemas/enriched-indicator.schema.json",
                 "threatroute/deploy/demo/indicators.jsonl"):
        assert path in names


def test_the_installed_wheel_runs_outside_the_source_tree(installed, tmp_path):
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr.decode()
    assert version.stdout.decode().split()[:2] == ["threatroute", "0.1.0"]

    # the demo has one invalid line on purpose: explain and the dry run say so with exit 1
    explained = run(installed, "explain", "--registry", REGISTRY, cwd=tmp_path,
                    input=DEMO.read_bytes())
    assert explained.returncode == 1, explained.stderr.decode()
    text = explained.stdout.decode()
    assert "owner     examplehost (Example Hosting Ltd) by prefix 192.0.2.0/24" in text
    assert "reaches   examplehost: owner (prefix 192.0.2.0/24)" in text

    dry = run(installed, "ingest", "jsonl", DEMO, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 1, dry.stderr.decode()
    lines = sum(1 for line in DEMO.read_bytes().splitlines() if line.strip())
    assert len(dry.stdout.splitlines()) == lines - 1  # the normalised indicators, one a line
    assert b"accepted 11; invalid 1" in dry.stderr
