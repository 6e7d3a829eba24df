"""The embedded single-node KRaft broker: fetch jars once, format once, start, stop, status.

Files: deploy/kafka/pom.xml pins the jars (resolved by Maven into a cache outside git),
deploy/kafka/server.properties.template and log4j2.properties configure the broker. State
(data, logs, pid file) lives in the state directory so stop/start keeps topics and data.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import string
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from threatroute.errors import ThreatrouteError
from threatroute.streams.config import PACKAGE_DATA, Config

KAFKA_DIR = PACKAGE_DATA / "kafka"
POM = KAFKA_DIR / "pom.xml"
MAIN_CLASS = "kafka.Kafka"


class BrokerError(ThreatrouteError):
    """The embedded broker could not be fetched, formatted, started or stopped."""


@dataclass(frozen=True)
class BrokerPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def console(self) -> Path:
        return self.logs / "console.out"


def broker_paths(config: Config) -> BrokerPaths:
    return BrokerPaths(config.state_dir / "broker")


def jar_cache() -> Path:
    """One cache per pom content, outside git: a changed pom fetches again, nothing else does."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return base / "threatroute" / f"kafka-{digest}"


def ensure_jars() -> Path:
    """Resolve the pinned jars with Maven into the cache, once; returns the libs folder."""
    libs = jar_cache() / "libs"
    if (jar_cache() / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError("Maven (mvn) is needed once to fetch the Kafka jars; install it "
                          "(Debian: apt-get install maven)")
    staging = jar_cache() / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    print(f"fetching Kafka jars into {libs} (once) ...", flush=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"Maven could not fetch the Kafka jars:\n{result.stdout[-3000:]}"
                          f"{result.stderr[-2000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (jar_cache() / ".complete").write_text("ok\n")
    return libs


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise BrokerError("Java 17+ is needed to run the broker (Debian: openjdk-17-jre-headless)")
    return java


def _render_properties(config: Config, paths: BrokerPaths) -> None:
    template = string.Template((KAFKA_DIR / "server.properties.template").read_text())
    paths.properties.write_text(template.substitute(
        port=config.broker_port, controller_port=config.controller_port, data_dir=paths.data))


def _cluster_id() -> str:
    # what `kafka-storage.sh random-uuid` prints: a UUID in URL-safe base64 without padding
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format_storage(java: str, libs: Path, paths: BrokerPaths) -> None:
    if (paths.data / "meta.properties").exists():
        return
    result = subprocess.run(
        [java, "-cp", f"{libs}/*",
         "-Dlog4j2.configurationFile=" + str(KAFKA_DIR / "log4j2.properties"),
         f"-Dkafka.logs.dir={paths.logs}", "kafka.tools.StorageTool", "format",
         "-t", _cluster_id(), "-c", str(paths.properties)],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"formatting the KRaft store failed:\n{result.stdout}{result.stderr}")


def running_pid(paths: BrokerPaths) -> int | None:
    """The pid of the broker this state directory started, if it is still that process."""
    try:
        pid = int(paths.pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None
    # the pid may have been reused by another process: it is ours only if it runs our config
    if MAIN_CLASS.encode() in cmdline and str(paths.properties).encode() in cmdline:
        return pid
    return None


def serves_metadata(bootstrap: str, timeout: float = 2.0) -> bool:
    """True once the broker answers metadata and every partition it holds has a leader.

    After a restart the broker serves metadata before it has loaded its partitions; clients
    that come in between get NOT_LEADER errors, so "started" waits for the leaders too.
    """
    # log_level 0: a broker still starting is expected to refuse us; say nothing about it
    client = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        metadata = client.list_topics(timeout=timeout)
        partitions = [TopicPartition(name, p) for name, t in metadata.topics.items()
                      for p in t.partitions]
        if partitions:  # answering ListOffsets means the partition's log is loaded and led
            futures = client.list_offsets({tp: OffsetSpec.latest() for tp in partitions},
                                          request_timeout=timeout)
            for future in futures.values():
                future.result()
    except Exception:  # any failure means "not serving yet"; the caller retries or reports
        return False
    return True


def start(config: Config, wait_seconds: float = 90.0) -> str:
    """Start the broker (fetching and formatting first if needed); returns the bootstrap."""
    paths = broker_paths(config)
    bootstrap = f"127.0.0.1:{config.broker_port}"
    if running_pid(paths):
        print(f"broker already running (pid {running_pid(paths)}) at {bootstrap}")
        return bootstrap
    if serves_metadata(bootstrap, timeout=1.0):
        raise BrokerError(f"something else already serves Kafka at {bootstrap}; use --bootstrap "
                          "to point at it, or set [broker] port in the configuration")
    java, libs = _java(), ensure_jars()
    for folder in (paths.root, paths.data, paths.logs):
        folder.mkdir(parents=True, exist_ok=True)
    _render_properties(config, paths)
    _format_storage(java, libs, paths)
    command = [java, "-Xms256m", f"-Xmx{config.broker_heap}", "-XX:+UseG1GC",
               "-Djava.awt.headless=true",
               "-Dlog4j2.configurationFile=" + str(KAFKA_DIR / "log4j2.properties"),
               f"-Dkafka.logs.dir={paths.logs}", "-cp", f"{libs}/*", MAIN_CLASS,
               str(paths.properties)]
    with paths.console.open("ab") as console:
        process = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    paths.pid_file.write_text(f"{process.pid} {bootstrap}\n")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"broker exited with code {process.returncode}; see "
                              f"{paths.logs / 'server.log'} and {paths.console}:\n"
                              + _tail(paths.console))
        if serves_metadata(bootstrap):
            print(f"broker running (pid {process.pid}); bootstrap {bootstrap}; "
                  f"log {paths.logs / 'server.log'}")
            return bootstrap
        time.sleep(0.5)
    raise BrokerError(f"broker did not serve metadata within {wait_seconds:.0f}s; see "
                      f"{paths.logs / 'server.log'}")


def stop(config: Config, wait_seconds: float = 30.0) -> bool:
    """Stop the broker this state directory started; returns False if none was running."""
    paths = broker_paths(config)
    pid = running_pid(paths)
    if pid is None:
        print("broker not running")
        return False
    os.kill(pid, signal.SIGTERM)  # controlled shutdown: flushes logs, so data survives
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and running_pid(paths) == pid:
        _reap(pid)
        time.sleep(0.2)
    if running_pid(paths) == pid:
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    paths.pid_file.unlink(missing_ok=True)
    print(f"broker stopped (pid {pid})")
    return True


def _reap(pid: int) -> None:
    # when the broker is our own child (tests), collect it so /proc stops showing a zombie
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def status(config: Config) -> bool:
    paths = broker_paths(config)
    pid = running_pid(paths)
    bootstrap = f"127.0.0.1:{config.broker_port}"
    if pid and serves_metadata(bootstrap):
        print(f"broker running (pid {pid}); bootstrap {bootstrap}; data {paths.data}")
        return True
    if pid:
        print(f"broker process {pid} is up but not serving metadata at {bootstrap} yet")
        return False
    print("broker not running")
    return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
