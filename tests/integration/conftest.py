"""One real Kafka broker for the whole test run.

Started with the project's own command (`threatroute broker start`) in a state directory of its
own, on ports that do not clash with a demo broker; or the cluster named by
THREATROUTE_BOOTSTRAP is used as it is. A broker this fixture started is stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# a run's brokers take ports from TEST_PORT up: the session broker + 0/+1 (controller), the
# secure one +2/+3, test_broker +4/+5, test_registry_scale +6/+7, test_sigterm's gateway +9,
# test_broker_restart +10/+11; others take free ports
TEST_PORT = int(os.environ.get("THREATROUTE_TEST_PORT", "19092"))


def broker_env(state: Path, port: int = TEST_PORT) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"THREATROUTE_STATE": str(state), "THREATROUTE_BROKER_PORT": str(port),
                "THREATROUTE_CONTROLLER_PORT": str(port + 1)})
    return env


def threatroute(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
                check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """Run the real CLI as an operator would."""
    result = subprocess.run([sys.executable, "-m", "threatroute.streams.commands.cli", *args], cwd=ROOT, env=env,
                            input=input, capture_output=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"threatroute {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout.decode()}\n{result.stderr.decode()}")
    return result


@contextlib.contextmanager
def own_broker(state: Path, offset: int, start_timeout: float = 300) -> Iterator[dict[str, str]]:
    """A broker of a test's own on TEST_PORT + offset (controller + offset + 1), its pipeline
    topics created; stopped after. For tests that restart a broker, or load one with what
    would slow the shared one down for every later test."""
    port = TEST_PORT + offset
    env = broker_env(state, port)
    threatroute("broker", "start", env=env, timeout=start_timeout)
    env["THREATROUTE_BOOTSTRAP"] = f"127.0.0.1:{port}"
    try:
        threatroute("topics", "create", env=env)
        yield env
    finally:
        threatroute("broker", "stop", env=env, check=False)


@pytest.fixture(scope="session")
def kafka_env() -> Iterator[dict[str, str]]:
    """Environment for CLI calls that reach the test broker (THREATROUTE_BOOTSTRAP set)."""
    if os.environ.get("THREATROUTE_BOOTSTRAP"):
        env = dict(os.environ)
        threatroute("topics", "create", env=env)
        yield env
        return
    env = broker_env(ROOT / ".threatroute" / "test-broker")
    started = threatroute("broker", "start", env=env)
    we_started = b"already running" not in started.stdout
    env["THREATROUTE_BOOTSTRAP"] = f"127.0.0.1:{TEST_PORT}"
    threatroute("topics", "create", env=env)
    try:
        yield env
    finally:
        if we_started:
            threatroute("broker", "stop", env=env, check=False)


@pytest.fixture(scope="session")
def bootstrap(kafka_env: dict[str, str]) -> str:
    return kafka_env["THREATROUTE_BOOTSTRAP"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
