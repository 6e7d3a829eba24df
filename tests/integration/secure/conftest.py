"""A secure broker of the tests' own (TLS + SCRAM + ACLs), started once for the secure tests.

Its own state directory and ports (THREATROUTE_SECURE_TEST_PORT, else THREATROUTE_TEST_PORT+2;
the controller takes the next port), started with the project's own `broker start --secure`,
two recipients provisioned with `recipients provision`, and stopped at the end. Every CLI call
goes through `SecureBroker.run`, which keeps what each printed so a test can scan it for
secrets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, TEST_PORT, broker_env, threatroute

PORT = int(os.environ.get("THREATROUTE_SECURE_TEST_PORT") or TEST_PORT + 2)
STATE = ROOT / ".threatroute" / f"test-secure-broker-{PORT}"
KCAT = ROOT / "deploy" / "kcat.sh"
A, B = "hoster-a", "hoster-b"


def read_properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


@dataclass
class SecureBroker:
    env: dict[str, str]
    state: Path
    bootstrap: str
    files: dict[str, Path] = field(default_factory=dict)   # recipient id -> client file
    outputs: list[bytes] = field(default_factory=list)     # everything the CLI printed

    def run(self, *args: str, check: bool = True, input: bytes | None = None,
            timeout: float = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        result = threatroute(*args, env=env or self.env, check=check, input=input,
                             timeout=timeout)
        self.outputs += [result.stdout, result.stderr]
        return result

    def settings(self, recipient: str, **extra: Any) -> dict[str, Any]:
        """librdkafka settings of a recipient, exactly as its file says, for Python clients."""
        return {**read_properties(self.files[recipient]), "log_level": 0, **extra}

    @property
    def pipeline_file(self) -> Path:
        return self.state / "credentials" / "pipeline.properties"

    def passwords(self) -> set[str]:
        """Every password this broker generated: pipeline, recipients, the broker's own."""
        found = {read_properties(p)["sasl.password"]
                 for p in [self.pipeline_file, *self.files.values()] if p.exists()}
        found |= set(read_properties(self.state / "broker" / "secrets.properties").values())
        return found

    def kcat(self, recipient: str, *args: str, timeout: float = 60, input_: bytes | None = None
             ) -> subprocess.CompletedProcess[bytes]:
        """Debian's kcat with the recipient's file, as a recipient would run it."""
        result = subprocess.run([str(KCAT), "-F", str(self.files[recipient]), *args], input=input_,
                                capture_output=True, timeout=timeout, check=False,
                                env={**os.environ, "THREATROUTE_PYTHON": _python()})
        self.outputs += [result.stdout, result.stderr]
        return result


def _python() -> str:
    import sys

    return sys.executable


@pytest.fixture(scope="session")
def secure() -> Iterator[SecureBroker]:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is needed for the secure tests (Debian: apt-get install kcat)")
    shutil.rmtree(STATE, ignore_errors=True)  # a fresh CA, users and passwords every run
    env = broker_env(STATE, PORT)
    env.pop("THREATROUTE_BOOTSTRAP", None)  # the credentials file names this broker
    for name in [k for k in env if k.startswith("THREATROUTE_SASL_")]:
        env.pop(name)
    broker = SecureBroker(env, STATE, f"127.0.0.1:{PORT}")
    started = broker.run("broker", "start", "--secure")
    assert b"SECURE" in started.stdout
    try:
        broker.run("topics", "create")
        for rid in (A, B):
            path = STATE / "handed-out" / f"{rid}.properties"
            broker.run("recipients", "provision", rid, "--out", str(path))
            broker.files[rid] = path
        yield broker
    finally:
        broker.run("broker", "stop", check=False)


def registry_yaml(*extra: str) -> str:
    """The secure tests' registry: A and B always (an import revokes whoever it leaves out),
    plus `extra` recipients that own nothing."""
    entries = [
        f"  - id: {A}\n    name: Hoster A\n    owns: {{prefixes: [192.0.2.0/24]}}\n"
        "    tlp_clearance: amber\n",
        f"  - id: {B}\n    name: Hoster B\n    owns: {{prefixes: [198.51.100.0/24]}}\n"
        "    tlp_clearance: amber\n",
        *(f"  - id: {rid}\n    name: {rid}\n" for rid in extra),
    ]
    return "recipients:\n" + "".join(entries)
