"""The embedded KRaft broker: fetch jars once, format once, start, stop, status.

One node by default (state in STATE/broker); `nodes=3` makes a cluster on loopback: three
combined broker+controller nodes, each a voter of the controller quorum, with a state directory
of its own (STATE/cluster/node-<id>), one shared cluster id, and ports two apart
(config.node_ports). The cluster's defaults give every topic three replicas, two of which must
have a write (min.insync.replicas), the offsets and transaction logs included.

Files: deploy/kafka/pom.xml pins the jars (resolved by Maven into a cache outside git),
deploy/kafka/server.properties.template and log4j2.properties configure the broker. State
(data, logs, pid file) lives in the state directory so stop/start keeps topics and data.

Two modes, chosen when the store is formatted and kept for its life:
- plaintext (default): no TLS, no authentication, no ACLs; for quick local use only.
- secure (`--secure`): the client listener speaks TLS + SASL/SCRAM-SHA-512, the KRaft
  StandardAuthorizer refuses whatever no ACL allows, and the pipeline authenticates as its own
  super user. A local CA and broker certificate are generated on first start (security.py);
  the SCRAM users of the pipeline and of the broker itself are seeded when the store is
  formatted. Every secret is in a 0600 file: the broker's in `broker/secrets.properties` and
  `server.properties`, the pipeline's in `credentials/pipeline.properties`; the one java
  command that must name them (StorageTool --add-scram) reads its arguments from a 0600
  @argfile, so no secret is ever in a process's argv.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import resource
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from threatroute.errors import ThreatrouteError
from threatroute.streams.config import (
    CLUSTER_DIR,
    CLUSTER_NODES_FILE,
    CREDENTIALS_FILE,
    PACKAGE_DATA,
    Config,
    credentials_dir,
    embedded_nodes,
    node_ports,
    read_properties,
)
from threatroute.streams.kafka import security

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

    @property
    def mode_file(self) -> Path:
        return self.root / "mode"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.properties"


@dataclass(frozen=True)
class Node:
    """One KRaft node (broker and controller at once) of the embedded broker or cluster."""

    id: int
    port: int
    controller_port: int
    paths: BrokerPaths

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def cluster_root(config: Config) -> Path:
    return config.state_dir / CLUSTER_DIR


def plan_nodes(config: Config, count: int) -> list[Node]:
    """The nodes of an embedded broker of `count` nodes: one keeps STATE/broker (as it always
    has); more live in STATE/cluster/node-<id>, on ports two apart. Refuses ports that clash."""
    if count < 1:
        raise BrokerError(f"a broker needs at least one node, not {count}")
    ports = node_ports(config.broker_port, config.controller_port, count)
    every = [p for pair in ports for p in pair]
    if len(set(every)) != len(every) or max(every) > 65535:
        raise BrokerError(f"{count} nodes from broker port {config.broker_port} and controller "
                          f"port {config.controller_port} need ports {sorted(every)}, which "
                          "clash or exceed 65535: set [broker] controller_port = port + 1")
    if count == 1:
        return [Node(1, ports[0][0], ports[0][1], broker_paths(config))]
    root = cluster_root(config)
    return [Node(i, port, controller, BrokerPaths(root / f"node-{i}"))
            for i, (port, controller) in enumerate(ports, start=1)]


def replication_for(count: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a cluster of `count` nodes: three copies
    where there are three nodes, and a write needs all but one of them (at least one)."""
    replication = min(count, 3)
    return replication, max(1, replication - 1)


def node_values(nodes: list[Node], node: Node) -> dict[str, object]:
    """What the server.properties template needs for `node` of `nodes` (no secrets)."""
    replication, min_isr = replication_for(len(nodes))
    return {"node_id": node.id, "port": node.port, "controller_port": node.controller_port,
            "data_dir": node.paths.data, "replication": replication, "min_isr": min_isr,
            "voters": ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in nodes)}


def render_properties(values: dict[str, object], secure: bool = False,
                      key_password: str = "") -> str:
    """server.properties of one node: the template, then the mode's listeners."""
    template = (KAFKA_DIR / "server.properties.template").read_text()
    listeners = SECURE_LISTENERS if secure else PLAINTEXT_LISTENERS
    if key_password:  # an operator's encrypted key (PBES1: Java 17 cannot read PBES2)
        listeners += f"ssl.key.password={key_password}\n"
    return string.Template(template + listeners).substitute(values)


def pipeline_credentials(config: Config) -> Path:
    return credentials_dir(config.state_dir) / CREDENTIALS_FILE


def tls_dir(config: Config) -> Path:
    return config.state_dir / "tls"


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


# Kafka keeps one open file per partition segment (plus sockets) and two memory maps per
# segment index; its operations guide asks for >= 100,000 files and vm.max_map_count 262,144
WANTED_FILES = 100_000
WANTED_MAPS = 262_144
MAX_MAP_COUNT = Path("/proc/sys/vm/max_map_count")


def _more_files() -> None:
    """In the broker's child process: open-file soft limit up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, WANTED_FILES) if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def limits_advice() -> list[str]:
    """What an operator should raise for thousands of partitions (empty when nothing)."""
    advice = []
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < WANTED_FILES:
        advice.append(f"open files: the broker gets {hard} (the hard limit; about one per "
                      f"partition is used); for many recipients raise it to {WANTED_FILES} "
                      "(ulimit -Hn, or LimitNOFILE= in a systemd unit)")
    try:
        maps = int(MAX_MAP_COUNT.read_text())
    except (OSError, ValueError):
        maps = None
    if maps is not None and maps < WANTED_MAPS:
        advice.append(f"vm.max_map_count is {maps} (two per partition are used); for many "
                      f"recipients: sysctl -w vm.max_map_count={WANTED_MAPS}")
    return advice


PLAINTEXT_LISTENERS = """
# PLAINTEXT mode: no TLS, no authentication, no ACLs. For quick local use only.
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
"""

SECURE_LISTENERS = """
# Secure mode: clients (recipients and the pipeline) connect over TLS with SCRAM-SHA-512; the
# controller listener stays on loopback with SASL PLAIN, so no anonymous client holds rights.
listeners=SASL_SSL://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:${port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
  org.apache.kafka.common.security.scram.ScramLoginModule required \
  username="${broker_user}" password="${broker_password}";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=\
  org.apache.kafka.common.security.plain.PlainLoginModule required \
  username="${controller_user}" password="${controller_password}" \
  user_${controller_user}="${controller_password}";
ssl.keystore.type=PEM
ssl.keystore.location=${keystore}
ssl.truststore.type=PEM
ssl.truststore.location=${ca}
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:${pipeline_user};User:${broker_user};User:${controller_user}
# a revoked recipient's open connections must re-authenticate (and fail) within 5 minutes
connections.max.reauth.ms=300000
"""


def _render_properties(config: Config, nodes: list[Node], node: Node, secure: bool) -> None:
    values = node_values(nodes, node)
    key_password = ""
    if secure:
        secrets, tls = _broker_secrets(node.paths), _tls(config, node.paths)
        values.update(broker_user=security.BROKER_USER, controller_user=security.CONTROLLER_USER,
                      pipeline_user=security.PIPELINE_USER,
                      broker_password=secrets["broker.password"],
                      controller_password=secrets["controller.password"],
                      keystore=tls[1], ca=tls[0])
        key_password = tls[2]
    # 0600: in secure mode it holds the broker's own passwords
    security.write_private(node.paths.properties, render_properties(values, secure, key_password))


def _broker_secrets(paths: BrokerPaths) -> dict[str, str]:
    """The broker's own passwords, generated once: SCRAM (inter-broker) and controller."""
    if paths.secrets.exists():
        return read_properties(paths.secrets)
    values = {"broker.password": security.new_password(),
              "controller.password": security.new_password()}
    security.write_private(paths.secrets, "".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def _tls(config: Config, paths: BrokerPaths) -> tuple[Path, Path, str]:
    """(CA, keystore with key and chain, key password or ""): the configured files, else the
    local CA and broker certificate generated in the state directory."""
    ca, keystore, password_file = (config.broker_tls_ca, config.broker_tls_keystore,
                                   config.broker_tls_key_password_file)
    if ca and keystore:
        return ca, keystore, password_file.read_text().strip() if password_file else ""
    if ca or keystore:
        raise BrokerError("[broker] tls_ca and tls_keystore go together")
    files = security.ensure_tls(tls_dir(config))
    return files.ca, files.broker, ""


def cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A new KRaft cluster id, as `kafka-storage.sh random-uuid` prints it: 16 random bytes in
    URL-safe base64 without padding.

    Like Kafka's own Uuid.randomUuid(), an id that starts with "-" is drawn again: the storage
    tool would read `-t -xyz...` as an option (one id in 64 did, and `broker start` failed).
    """
    while True:
        candidate = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def _formatted(paths: BrokerPaths) -> bool:
    return (paths.data / "meta.properties").exists()


def stored_mode(paths: BrokerPaths) -> str | None:
    """"secure" or "plaintext" for a formatted store (stores from before modes: plaintext)."""
    if not _formatted(paths):
        return None
    try:
        return paths.mode_file.read_text().strip() or "plaintext"
    except FileNotFoundError:
        return "plaintext"


def _format_storage(java: str, libs: Path, paths: BrokerPaths, config: Config,
                    secure: bool, shared_id: str | None = None) -> None:
    """Format the node's store once; the nodes of a cluster share `shared_id`."""
    if _formatted(paths):
        return
    arguments = ["-cp", f"{libs}/*",
                 "-Dlog4j2.configurationFile=" + str(KAFKA_DIR / "log4j2.properties"),
                 f"-Dkafka.logs.dir={paths.logs}", "kafka.tools.StorageTool", "format",
                 f"--cluster-id={shared_id or cluster_id()}", "-c", str(paths.properties)]
    if secure:
        pipeline_password = security.new_password()
        broker_password = _broker_secrets(paths)["broker.password"]
        for user, password in ((security.PIPELINE_USER, pipeline_password),
                               (security.BROKER_USER, broker_password)):
            arguments += ["--add-scram", f"{security.MECHANISM}=[name={user},password={password}]"]
    # the java launcher reads the arguments from a 0600 @argfile: argv shows only its path
    argfile = paths.root / "format.args"
    security.write_private(argfile, "\n".join(f'"{a}"' for a in arguments) + "\n")
    try:
        result = subprocess.run([java, f"@{argfile}"], capture_output=True, text=True,
                                check=False)
    finally:
        argfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise BrokerError(f"formatting the KRaft store failed:\n{result.stdout}{result.stderr}")
    paths.mode_file.write_text(("secure" if secure else "plaintext") + "\n")
    if secure:
        ca = _tls(config, paths)[0]
        security.write_private(pipeline_credentials(config), security.client_properties(
            f"127.0.0.1:{config.broker_port}", security.PIPELINE_USER, pipeline_password, ca,
            comment="threatroute's own principal (super user): keep this file to the "
                    "pipeline's operators"))


def _client_settings(config: Config, paths: BrokerPaths) -> dict[str, str]:
    """How this command reaches the broker it started: the pipeline's file in secure mode."""
    if stored_mode(paths) == "secure":
        values = read_properties(pipeline_credentials(config))
        return {k: values[k] for k in ("security.protocol", "sasl.mechanisms", "sasl.username",
                                       "sasl.password", "ssl.ca.location") if k in values}
    return {}


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


def serves_metadata(bootstrap: str, timeout: float = 2.0,
                    settings: dict[str, str] | None = None) -> bool:
    """True once the broker answers metadata and every partition it holds has a leader.

    After a restart the broker serves metadata before it has loaded its partitions; clients
    that come in between get NOT_LEADER errors, so "started" waits for the leaders too.
    """
    # log_level 0: a broker still starting is expected to refuse us; say nothing about it
    client = AdminClient({**(settings or {}), "bootstrap.servers": bootstrap, "log_level": 0})
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


def _leaders(bootstrap: str, settings: dict[str, str] | None = None) -> tuple[int, int]:
    """(partitions with a leader, partitions) as the broker's metadata says; (0, 0) if none."""
    client = AdminClient({**(settings or {}), "bootstrap.servers": bootstrap, "log_level": 0})
    try:
        topics = client.list_topics(timeout=10).topics.values()
    except Exception:  # not answering yet
        return 0, 0
    partitions = [p for t in topics for p in t.partitions.values()]
    return sum(p.leader >= 0 for p in partitions), len(partitions)


def stored_nodes(config: Config) -> int | None:
    """The node count of the store in this state directory (None: nothing formatted yet)."""
    if (cluster_root(config) / CLUSTER_NODES_FILE).exists():
        return embedded_nodes(config.state_dir)
    return 1 if _formatted(broker_paths(config)) else None


def _node_count(config: Config, nodes: int | None) -> int:
    """How many nodes to run: what was asked, checked against what the store holds."""
    stored = stored_nodes(config)
    if nodes is None or nodes == stored:
        return stored or 1
    if stored is not None:
        raise BrokerError(f"the broker store in {config.state_dir} has {stored} node(s), not "
                          f"{nodes}: stop it and remove {broker_paths(config).root} and "
                          f"{cluster_root(config)} (their topics are lost), or set "
                          "THREATROUTE_STATE to another directory")
    return nodes


def _shared_cluster_id(config: Config, nodes: list[Node]) -> str:
    """The cluster id every node is formatted with: the one a formatted node already has (a
    store partly formatted before), else the one drawn once and kept beside the nodes."""
    for node in nodes:
        if _formatted(node.paths):
            meta = read_properties(node.paths.data / "meta.properties")
            return meta["cluster.id"]
    kept = cluster_root(config) / "cluster.id"
    if not kept.exists():
        kept.write_text(cluster_id() + "\n")
    return kept.read_text().strip()


def start(config: Config, wait_seconds: float = 90.0, secure: bool = False,
          nodes: int | None = None, node: int | None = None) -> str:
    """Start the broker (fetching and formatting first if needed); returns the bootstrap.

    `nodes` > 1: a cluster of that many nodes (the count is kept with the store: later starts
    need not repeat it); `node`: only that node of the cluster (the others keep running).

    A store keeps the mode it was formatted in: `secure` on a plaintext store is refused
    (its data would otherwise be open to anyone who had connected before), and a secure
    store is never started in plaintext.
    """
    count = _node_count(config, nodes)
    every = plan_nodes(config, count)
    wanted = _select(every, node)
    bootstrap = ",".join(n.bootstrap for n in every)
    paths = every[0].paths
    mode = stored_mode(paths)
    if secure and count > 1:
        raise BrokerError("--secure is for the single-node broker; a cluster runs in plaintext "
                          "(deploy/kubernetes has a secure three-node cluster)")
    if secure and mode == "plaintext":
        raise BrokerError(f"the broker store in {paths.root} was formatted in plaintext mode; "
                          "secure mode needs a store of its own: stop the broker and remove "
                          f"{paths.root} (its topics are lost), or set THREATROUTE_STATE to "
                          "another directory")
    secure = secure or mode == "secure"
    starting = [n for n in wanted if not running_pid(n.paths)]
    if not starting:
        for n in wanted:
            print(f"{_who(n, count)} already running (pid {running_pid(n.paths)}) at "
                  f"{n.bootstrap}; {_label(config, paths)}")
        return bootstrap
    for n in starting:
        if serves_metadata(n.bootstrap, timeout=1.0):
            raise BrokerError(f"something else already serves Kafka at {n.bootstrap}; use "
                              "--bootstrap to point at it, or set [broker] port in the "
                              "configuration")
    java, libs = _java(), ensure_jars()
    if count > 1:
        cluster_root(config).mkdir(parents=True, exist_ok=True)
        (cluster_root(config) / CLUSTER_NODES_FILE).write_text(f"{count}\n")
    shared_id = _shared_cluster_id(config, every) if count > 1 else None
    for n in starting:
        for folder in (n.paths.root, n.paths.data, n.paths.logs):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(n.paths.root, 0o700)  # holds the broker's secrets in secure mode
        _render_properties(config, every, n, secure)
        _format_storage(java, libs, n.paths, config, secure, shared_id)
    for n in starting:
        _await_free_ports(n, PORT_WAIT_SECONDS)
    processes = {n.id: _launch(java, libs, config, n) for n in starting}
    _await_serving(config, starting, processes, bootstrap, wait_seconds)
    for n in starting:
        log = n.paths.logs / "server.log"
        print(f"broker running (pid {processes[n.id].pid}); bootstrap {bootstrap}; log {log}; "
              f"{_label(config, paths)}" if count == 1 else
              f"node {n.id} running (pid {processes[n.id].pid}) at {n.bootstrap}, controller "
              f"127.0.0.1:{n.controller_port}; log {log}")
    if count > 1:
        replication, min_isr = replication_for(count)
        print(f"cluster of {count} nodes; bootstrap {bootstrap}; topics take replication "
              f"{replication}, min.insync.replicas {min_isr}; {_label(config, paths)}")
    for line in limits_advice():
        print(f"note: {line}")
    return bootstrap


# a broker stopped a moment ago may still hold its ports while its process goes away (seen
# under load: a restart failed with "Address already in use"); the start waits this long
PORT_WAIT_SECONDS = 60.0


def port_free(port: int) -> bool:
    """True if a listener could bind 127.0.0.1:`port` now (with SO_REUSEADDR, as the JVM's
    server sockets do, so connections still closing do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _await_free_ports(node: Node, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    busy = [p for p in (node.port, node.controller_port) if not port_free(p)]
    while busy and time.monotonic() < deadline:
        time.sleep(0.5)
        busy = [p for p in busy if not port_free(p)]
    if busy:
        raise BrokerError(f"port {busy[0]} on 127.0.0.1 is held by another process (waited "
                          f"{seconds:.0f} s); stop it, or set [broker] port in the "
                          "configuration")


def _select(nodes: list[Node], node: int | None) -> list[Node]:
    if node is None:
        return nodes
    chosen = [n for n in nodes if n.id == node]
    if not chosen:
        raise BrokerError(f"no node {node}: the broker has nodes "
                          f"{', '.join(str(n.id) for n in nodes)}")
    return chosen


def _who(node: Node, count: int) -> str:
    return "broker" if count == 1 else f"node {node.id}"


def _launch(java: str, libs: Path, config: Config, node: Node) -> subprocess.Popen[bytes]:
    paths = node.paths
    command = [java, "-Xms256m", f"-Xmx{config.broker_heap}", "-XX:+UseG1GC",
               "-Djava.awt.headless=true",
               "-Dlog4j2.configurationFile=" + str(KAFKA_DIR / "log4j2.properties"),
               f"-Dkafka.logs.dir={paths.logs}", "-cp", f"{libs}/*", MAIN_CLASS,
               str(paths.properties)]
    with paths.console.open("ab") as console:
        process = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_more_files)
    paths.pid_file.write_text(f"{process.pid} {node.bootstrap}\n")
    return process


def _await_serving(config: Config, nodes: list[Node], processes: dict[int, subprocess.Popen[bytes]],
                   bootstrap: str, wait_seconds: float) -> None:
    """Wait until every node started is a live broker of the cluster and every partition has
    a leader (a cluster's nodes come up together: none serves before a quorum of voters)."""
    settings = _client_settings(config, nodes[0].paths)
    wanted = {n.id for n in nodes}
    deadline, led = time.monotonic() + wait_seconds, 0
    while time.monotonic() < deadline:
        for n in nodes:
            process = processes[n.id]
            if process.poll() is not None:
                raise BrokerError(f"{'broker' if len(processes) == 1 else f'node {n.id}'} "
                                  f"exited with code {process.returncode}; see "
                                  f"{n.paths.logs / 'server.log'} and {n.paths.console}:\n"
                                  + _tail(n.paths.console))
        if wanted <= live_brokers(bootstrap, settings) and serves_metadata(
                bootstrap, timeout=10.0, settings=settings):
            return
        # a restart with thousands of partitions loads them for minutes: wait while it moves
        loading, total = _leaders(bootstrap, settings)
        if loading > led:
            deadline = max(deadline, time.monotonic() + 30)
            if total > 1000:
                print(f"broker loading partitions: {loading:,} of {total:,} led", flush=True)
            led = loading
        time.sleep(0.5)
    raise BrokerError(f"broker did not serve metadata within {wait_seconds:.0f}s; see "
                      + ", ".join(str(n.paths.logs / "server.log") for n in nodes))


def live_brokers(bootstrap: str, settings: dict[str, str] | None = None) -> set[int]:
    """Ids of the brokers the cluster's metadata lists (KRaft lists only unfenced ones)."""
    client = AdminClient({**(settings or {}), "bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return set(client.list_topics(timeout=5).brokers)
    except Exception:  # not answering yet
        return set()


def _label(config: Config, paths: BrokerPaths) -> str:
    if stored_mode(paths) == "secure":
        return (f"SECURE: TLS + SASL/SCRAM-SHA-512, ACLs enforced; pipeline credentials in "
                f"{pipeline_credentials(config)}, CA {_tls_ca(config)}")
    return "PLAINTEXT: no TLS, no authentication, no ACLs (local use only; --secure for more)"


def _tls_ca(config: Config) -> Path:
    return config.broker_tls_ca or security.TlsFiles(tls_dir(config)).ca


def stop(config: Config, wait_seconds: float = 30.0, node: int | None = None) -> bool:
    """Stop the broker this state directory started (every node, or only `node`); returns
    False if none of them was running."""
    count = stored_nodes(config) or 1
    chosen = _select(plan_nodes(config, count), node)
    running = [(n, pid) for n in chosen if (pid := running_pid(n.paths)) is not None]
    if not running:
        print("broker not running" if node is None else f"node {node} not running")
        return False
    for _, pid in running:  # all at once: each still has a quorum for its controlled shutdown
        os.kill(pid, signal.SIGTERM)  # controlled shutdown: flushes logs, so data survives
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and any(running_pid(n.paths) == pid for n, pid in running):
        for _, pid in running:
            _reap(pid)
        time.sleep(0.2)
    for n, pid in running:
        if running_pid(n.paths) == pid:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        n.paths.pid_file.unlink(missing_ok=True)
        print(f"{_who(n, count)} stopped (pid {pid})")
    return True


def _reap(pid: int) -> None:
    # when the broker is our own child (tests), collect it so /proc stops showing a zombie
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def status(config: Config) -> bool:
    count = stored_nodes(config) or 1
    every = plan_nodes(config, count)
    if count == 1:
        return _single_status(config, every[0])
    bootstrap = ",".join(n.bootstrap for n in every)
    live = live_brokers(bootstrap)
    up = 0
    for n in every:
        pid = running_pid(n.paths)
        if pid and n.id in live:
            up += 1
            print(f"node {n.id} running (pid {pid}) at {n.bootstrap}; data {n.paths.data}")
        elif pid:
            print(f"node {n.id} process {pid} is up but not a live broker at {n.bootstrap} yet")
        else:
            print(f"node {n.id} not running ({n.bootstrap})")
    serving = up > 0 and serves_metadata(bootstrap)
    replication, min_isr = replication_for(count)
    print(f"cluster of {count} nodes: {up} running, "
          f"{'every partition led' if serving else 'not serving'}; bootstrap {bootstrap}; "
          f"replication {replication}, min.insync.replicas {min_isr}; "
          f"{_label(config, every[0].paths)}")
    return up == count and serving


def _single_status(config: Config, node: Node) -> bool:
    paths = node.paths
    pid = running_pid(paths)
    bootstrap = node.bootstrap
    if pid and serves_metadata(bootstrap, settings=_client_settings(config, paths)):
        print(f"broker running (pid {pid}); bootstrap {bootstrap}; data {paths.data}; "
              f"{_label(config, paths)}")
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
