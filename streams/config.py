"""Configuration: read once in the CLI into a frozen object that is passed down.

Sources, later wins: built-in defaults < the TOML file (`--config` / THREATROUTE_CONFIG, else
deploy/threatroute.toml) < the pipeline's credentials file < environment (THREATROUTE_BOOTSTRAP,
THREATROUTE_SASL_*) < command-line flags.

Credentials: `threatroute broker start --secure` writes the pipeline's librdkafka client
properties (bootstrap, SASL_SSL, SCRAM-SHA-512, user, password, CA) to
`<state dir>/credentials/pipeline.properties` (mode 0600); every command reads that file, so
nothing secret is ever typed on a command line. THREATROUTE_CREDENTIALS names another file;
THREATROUTE_SASL_USERNAME, THREATROUTE_SASL_PASSWORD (or THREATROUTE_SASL_PASSWORD_FILE),
THREATROUTE_SECURITY_PROTOCOL and THREATROUTE_SSL_CA override single values.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import threatroute
from threatroute import topics
from threatroute.errors import ConfigError
from threatroute.matchers.rules import RoutingRules, rules_from
from threatroute.outcomes import BaselineWindow
from threatroute.streams.logs import librdkafka_logger

# deploy/ ships inside the package (threatroute/deploy): the default config, the JSON Schemas and
# the broker pom are found the same way from a source checkout and from an installed wheel
PACKAGE_DATA = Path(threatroute.__file__).parent / "deploy"
DEFAULT_CONFIG = PACKAGE_DATA / "threatroute.toml"

# Every pipeline topic (DESIGN's dataflow). alerts.<recipient> topics are made per recipient.
PIPELINE_TOPICS = (
    topics.RAW,
    topics.INVALID,
    topics.ASN,
    topics.GEO,
    topics.ENRICHED,
    topics.LEDGER,
    topics.STATUS,
    topics.MATCH_STATE,
    topics.MATCH_FEEDBACK,
    topics.MATCH_VERDICTS,
    topics.MATCH_WATCH,
    topics.MATCH_TRUST,
    topics.MATCH_ROUTED,
    topics.CORRECTIONS,
    topics.FEEDBACK,
    topics.FEEDBACK_INVALID,
    topics.RECIPIENTS,
    topics.GATEWAY_TOKENS,
    topics.DELIVERY_FAILED,
)
# per-recipient topics: `[topics."alerts.*"]` etc. configure every recipient's topic of a kind
RECIPIENT_TOPIC_KINDS = ("alerts.*", "feedback.*", "contributions.*")
# pipeline topics whose partition count is not [topics.defaults]' unless their section says:
# match.routed's partitions are what the publish workers split between their producers
OWN_PARTITIONS = {topics.MATCH_ROUTED: 16}


# a compacted topic's settings a topic section may give (Kafka's names with dots as `_`): a
# tombstone leaves the topic only once its segment is closed (segment_ms), the cleaner takes
# the log (min_cleanable_dirty_ratio) and readers had delete_retention_ms to see it
COMPACTION_SETTINGS = ("segment_ms", "delete_retention_ms", "min_cleanable_dirty_ratio",
                       "max_compaction_lag_ms")

# a topic's replication when the configuration names none: the cluster's own
# default.replication.factor (and its min.insync.replicas applies): 1 on the embedded broker,
# 3 on `broker start --nodes 3` (deploy/kafka/server.properties.template)
BROKER_DEFAULT = -1


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int  # BROKER_DEFAULT: the cluster's default
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Secret:
    """A value that never prints (SASL passwords)."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "****" if self.value else ""

    def __repr__(self) -> str:
        return "Secret('****')"


CREDENTIALS_FILE = "pipeline.properties"

# `threatroute broker start --nodes N` keeps its nodes under STATE/cluster and their count here
CLUSTER_DIR = "cluster"
CLUSTER_NODES_FILE = "nodes"


def node_ports(broker_port: int, controller_port: int, nodes: int) -> list[tuple[int, int]]:
    """(broker port, controller port) of each embedded node: node i (from 1) listens two ports
    above node i-1 on both, so the defaults 9092/9093 give 9092/9093, 9094/9095, 9096/9097."""
    return [(broker_port + 2 * i, controller_port + 2 * i) for i in range(nodes)]


def embedded_nodes(state_dir: Path) -> int:
    """How many nodes the embedded broker in `state_dir` has: a cluster's count, else 1."""
    try:
        return max(1, int((state_dir / CLUSTER_DIR / CLUSTER_NODES_FILE).read_text()))
    except (OSError, ValueError):
        return 1


def embedded_bootstrap(state_dir: Path, broker_port: int, controller_port: int) -> str:
    """Every broker of the embedded broker or cluster: a client that starts while one node is
    down still finds the others."""
    return ",".join(f"127.0.0.1:{port}" for port, _ in node_ports(
        broker_port, controller_port, embedded_nodes(state_dir)))


def credentials_dir(state_dir: Path) -> Path:
    """Where the pipeline's and provisioned recipients' client files live (mode 0600 each)."""
    return state_dir / "credentials"


def read_properties(path: Path) -> dict[str, str]:
    """A Java/librdkafka properties file: `key=value` lines, `#` or `!` comments."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class GatewaySettings:
    """`threatroute gateway` ([gateway] in the TOML)."""

    public_url: str = ""              # how recipients reach it, for links in e-mails
    rate_limit: str = "300/minute"    # per recipient (limits' notation)
    auth_failure_limit: str = "30/minute"  # refused credentials per client address
    refresh_seconds: float = 1.0      # a recipient's cached alerts are this fresh at most
    max_page: int = 1000              # largest TAXII page and alert list
    cached_recipients: int = 1000     # recipients whose alerts are held in memory at once


@dataclass(frozen=True)
class DeliverySettings:
    """`threatroute deliver`: webhooks and e-mail digests ([delivery] and [smtp])."""

    backoff_seconds: float = 1.0      # first retry delay of a webhook, doubled per attempt
    backoff_max_seconds: float = 60.0
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: Secret = Secret("")
    smtp_cafile: str = ""              # CA to verify the server's STARTTLS certificate
    mail_from: str = "threatroute@localhost"


@dataclass(frozen=True)
class Config:
    bootstrap: str
    state_dir: Path
    broker_port: int
    controller_port: int
    broker_heap: str
    topics: tuple[TopicSpec, ...]
    ipasn: Path | None
    asnames: Path | None
    geoip: Path | None
    reload_seconds: float
    dns_nameserver: str
    dns_timeout: float
    dns_concurrency: int
    dns_cache_size: int
    dedup_window_hours: float = 168.0
    renotify_hours: float = 24.0
    default_tlp: str = "AMBER"
    metrics_port: int = 9464
    metrics_address: str = "127.0.0.1"
    active_days: float = 7.0
    baseline_start: str = ""
    sasl_username: str = ""
    sasl_password: Secret = Secret("")
    security_protocol: str = "PLAINTEXT"
    ssl_ca_location: str = ""
    # the embedded broker's own TLS files; empty: a local CA generated on first --secure start
    broker_tls_ca: Path | None = None
    broker_tls_keystore: Path | None = None
    broker_tls_key_password_file: Path | None = None
    recipient_topics: tuple[TopicSpec, ...] = ()  # templates named "alerts.*", ...
    contributions_per_minute: float = 600.0  # per contributing recipient ([contributions])
    contributions_burst: float = 1000.0
    gateway: GatewaySettings = GatewaySettings()
    delivery: DeliverySettings = DeliverySettings()
    rules: RoutingRules = field(default_factory=RoutingRules)  # [feedback] [trust] [hygiene] ...
    # `run all`: the fused enrichment chain also writes indicators.asn and indicators.geo
    fused_intermediate_topics: bool = True
    # `run publish` / `run all`: publish loops (consumer + transactional producer) per process
    publish_workers: int = 8

    @property
    def secure(self) -> bool:
        """True when the pipeline talks to the broker over TLS with SCRAM (ACLs apply)."""
        return self.security_protocol.upper() == "SASL_SSL"

    def topic(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise ConfigError(f"no topic {name!r} in the configuration")

    def recipient_topic(self, name: str) -> TopicSpec:
        """The spec of one per-recipient topic (`alerts.examplehost`) from its kind's template."""
        kind = name.split(".", 1)[0] + ".*"
        for spec in self.recipient_topics:
            if spec.name == kind:
                return TopicSpec(name, spec.partitions, spec.replication, dict(spec.configs))
        raise ConfigError(f"no per-recipient topic kind for {name!r} in the configuration")

    def kafka_settings(self) -> dict[str, Any]:
        """librdkafka settings every client shares."""
        # librdkafka logs through Python logging (streams/logs.py: rate-limited, its transport
        # retries demoted); below --log-level debug only its warnings and worse
        logger = librdkafka_logger()
        settings: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap, "logger": logger,
            "log_level": 7 if logger.isEnabledFor(logging.DEBUG) else 4}
        if self.sasl_username:
            settings.update({
                "security.protocol": self.security_protocol,
                "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password.value,
            })
        if self.ssl_ca_location:
            settings["ssl.ca.location"] = self.ssl_ca_location
        return settings

    def baseline_window(self) -> BaselineWindow:
        start = datetime.fromisoformat(self.baseline_start) if self.baseline_start else None
        if start and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        return BaselineWindow(active_days=self.active_days, baseline_start=start)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _topic_specs(section: dict[str, Any], names: tuple[str, ...] = PIPELINE_TOPICS
                 ) -> tuple[TopicSpec, ...]:
    """Specs of `names` from [topics.defaults] and each one's own section.

    Per-recipient kinds ("alerts.*", ...) do not take their partitions from the defaults: one
    recipient's share is small, and thousands of recipients times the pipeline's partition
    count would cost the broker an open file and memory maps per partition (10,000 recipients
    with 6 partitions on three topics: 180,000). They have one unless their section says more.
    """
    defaults = section.get("defaults", {})
    specs = []
    for name in names:
        merged = {**defaults, **section.get(name, {})}
        if name in RECIPIENT_TOPIC_KINDS:
            merged["partitions"] = section.get(name, {}).get("partitions", 1)
        elif name in OWN_PARTITIONS:
            merged["partitions"] = section.get(name, {}).get("partitions",
                                                             OWN_PARTITIONS[name])
        configs = {"retention.ms": str(merged.get("retention_ms", 604_800_000))}
        if merged.get("cleanup_policy"):
            configs["cleanup.policy"] = str(merged["cleanup_policy"])
        for key in COMPACTION_SETTINGS:  # when compaction happens (tombstones gone)
            if key in merged:
                configs[key.replace("_", ".")] = str(merged[key])
        try:
            specs.append(TopicSpec(name, int(merged.get("partitions", 6)),
                                   int(merged.get("replication", BROKER_DEFAULT)), configs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"topics.{name}: {exc}") from None
    return tuple(specs)


def _gateway(raw: dict[str, Any]) -> GatewaySettings:
    defaults = GatewaySettings()
    try:
        return GatewaySettings(
            public_url=str(raw.get("public_url", defaults.public_url)).rstrip("/"),
            rate_limit=str(raw.get("rate_limit", defaults.rate_limit)),
            auth_failure_limit=str(raw.get("auth_failure_limit", defaults.auth_failure_limit)),
            refresh_seconds=float(raw.get("refresh_seconds", defaults.refresh_seconds)),
            max_page=int(raw.get("max_page", defaults.max_page)),
            cached_recipients=int(raw.get("cached_recipients", defaults.cached_recipients)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[gateway]: {exc}") from None


def _delivery(delivery: dict[str, Any], smtp: dict[str, Any]) -> DeliverySettings:
    """[delivery] and [smtp]; the SMTP password only from THREATROUTE_SMTP_PASSWORD or the
    file named by `password_file`, never from the TOML itself or a flag."""
    defaults = DeliverySettings()
    password = os.environ.get("THREATROUTE_SMTP_PASSWORD", "")
    if not password and smtp.get("password_file"):
        try:
            password = Path(str(smtp["password_file"])).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[smtp] password_file: {exc.strerror}") from None
    try:
        return DeliverySettings(
            backoff_seconds=float(delivery.get("backoff_seconds", defaults.backoff_seconds)),
            backoff_max_seconds=float(delivery.get("backoff_max_seconds",
                                                   defaults.backoff_max_seconds)),
            smtp_host=str(smtp.get("host", defaults.smtp_host)),
            smtp_port=int(os.environ.get("THREATROUTE_SMTP_PORT")
                          or smtp.get("port", defaults.smtp_port)),
            smtp_starttls=bool(smtp.get("starttls", defaults.smtp_starttls)),
            smtp_username=str(smtp.get("username", defaults.smtp_username)),
            smtp_password=Secret(password),
            smtp_cafile=str(smtp.get("cafile", defaults.smtp_cafile)),
            mail_from=str(smtp.get("from", defaults.mail_from)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[delivery]/[smtp]: {exc}") from None


def _path(value: str | None, base: Path) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
    """Read the TOML file and the environment; keyword overrides (CLI flags) win."""
    config_path = Path(path or os.environ.get("THREATROUTE_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = tomllib.loads(config_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {config_path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    kafka, broker, data, dns, match, metrics, run = (
        raw.get(k, {}) for k in ("kafka", "broker", "data", "dns", "match", "metrics", "run"))
    # relative paths are relative to the working directory, where `make demo` runs
    base = Path.cwd()
    state_dir = Path(os.environ.get("THREATROUTE_STATE") or base / ".threatroute")
    port = int(os.environ.get("THREATROUTE_BROKER_PORT") or broker.get("port", 9092))
    controller_port = int(os.environ.get("THREATROUTE_CONTROLLER_PORT")
                          or broker.get("controller_port", port + 1))
    default_bootstrap = kafka.get("bootstrap", f"127.0.0.1:{port}")
    if "THREATROUTE_BROKER_PORT" in os.environ:
        default_bootstrap = f"127.0.0.1:{port}"
    if default_bootstrap == f"127.0.0.1:{port}":  # the embedded broker: all of its nodes
        default_bootstrap = embedded_bootstrap(state_dir, port, controller_port)
    credentials = _credentials(state_dir)
    default_bootstrap = credentials.get("bootstrap.servers") or default_bootstrap
    config = Config(
        bootstrap=os.environ.get("THREATROUTE_BOOTSTRAP") or default_bootstrap,
        state_dir=state_dir,
        broker_port=port,
        controller_port=controller_port,
        broker_heap=str(broker.get("heap", "1g")),
        topics=_topic_specs(raw.get("topics", {})),
        recipient_topics=_topic_specs(raw.get("topics", {}), RECIPIENT_TOPIC_KINDS),
        ipasn=_path(data.get("ipasn"), base),
        asnames=_path(data.get("asnames"), base),
        geoip=_path(data.get("geoip"), base),
        reload_seconds=float(data.get("reload_seconds", 10)),
        dns_nameserver=str(dns.get("nameserver", "")),
        dns_timeout=float(dns.get("timeout", 2.0)),
        dns_concurrency=int(dns.get("concurrency", 32)),
        dns_cache_size=int(dns.get("cache_size", 100_000)),
        dedup_window_hours=float(match.get("dedup_window_hours", 168)),
        renotify_hours=float(match.get("renotify_hours", 24)),
        default_tlp=str(match.get("default_tlp", "AMBER")).upper(),
        metrics_port=int(os.environ.get("THREATROUTE_METRICS_PORT") or metrics.get("port", 9464)),
        # containers listen on 0.0.0.0 for Prometheus (deploy/compose.yaml, deploy/kubernetes)
        metrics_address=os.environ.get("THREATROUTE_METRICS_ADDRESS")
        or str(metrics.get("address", "127.0.0.1")),
        active_days=float(metrics.get("active_days", 7)),
        baseline_start=str(metrics.get("baseline_start", "")),
        sasl_username=credentials.get("sasl.username", ""),
        sasl_password=Secret(credentials.get("sasl.password", "")),
        security_protocol=credentials.get("security.protocol", "PLAINTEXT").upper(),
        ssl_ca_location=credentials.get("ssl.ca.location", ""),
        broker_tls_ca=_path(broker.get("tls_ca"), base),
        broker_tls_keystore=_path(broker.get("tls_keystore"), base),
        broker_tls_key_password_file=_path(broker.get("tls_key_password_file"), base),
        contributions_per_minute=float(raw.get("contributions", {}).get("per_minute", 600)),
        contributions_burst=float(raw.get("contributions", {}).get("burst", 1000)),
        gateway=_gateway(raw.get("gateway", {})),
        delivery=_delivery(raw.get("delivery", {}), raw.get("smtp", {})),
        # the suppression list is found beside the configuration file that names it
        rules=rules_from(raw, config_path.parent),
        fused_intermediate_topics=bool(run.get("fused_intermediate_topics", True)),
        publish_workers=_positive(raw.get("publish", {}).get("workers", 8), "publish.workers"),
    )
    config = config.with_overrides(**overrides)
    if config.rules.state.alerts.total_seconds() < config.dedup_window_hours * 3600:
        # the match stage updates an alert's ledger row while its dedup state lives: the
        # feedback stage must not forget the row before
        raise ConfigError("state.alert_days must be at least [match] dedup_window_hours")
    return config


def _positive(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"{name}: must be at least 1, got {number}")
    return number


def _credentials(state_dir: Path) -> dict[str, str]:
    """The pipeline's client properties: the credentials file, then single env overrides."""
    named = os.environ.get("THREATROUTE_CREDENTIALS")
    path = Path(named) if named else credentials_dir(state_dir) / CREDENTIALS_FILE
    try:
        values = read_properties(path)
    except FileNotFoundError:
        if named:
            raise ConfigError(f"credentials file not found: {path}") from None
        values = {}
    except OSError as exc:
        raise ConfigError(f"credentials file {path}: {exc.strerror}") from None
    password_file = os.environ.get("THREATROUTE_SASL_PASSWORD_FILE")
    if password_file:
        try:
            values["sasl.password"] = Path(password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"THREATROUTE_SASL_PASSWORD_FILE {password_file}: "
                              f"{exc.strerror}") from None
    for variable, key in (("THREATROUTE_SASL_USERNAME", "sasl.username"),
                          ("THREATROUTE_SASL_PASSWORD", "sasl.password"),
                          ("THREATROUTE_SECURITY_PROTOCOL", "security.protocol"),
                          ("THREATROUTE_SSL_CA", "ssl.ca.location")):
        if os.environ.get(variable):
            values[key] = os.environ[variable]
    if values.get("sasl.username") and "security.protocol" not in values:
        values["security.protocol"] = "SASL_SSL"
    return values
