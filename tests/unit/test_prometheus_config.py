"""The Prometheus config, alert rules and Grafana dashboards in deploy/ are valid and keep to
the metric contract (docs/metrics.md), checked offline with promtool: no server, no broker."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/unit is no package: make `tests.integration` importable
    sys.path.insert(0, str(ROOT))

from tests.integration.prometheus_helpers import (  # noqa: E402
    dashboard_files,
    dashboard_panels,
    dashboard_queries,
    find_promtool,
    function_arguments,
    label_names,
    load_rules,
    metric_names,
    rule_expressions,
    split_alert_expr,
    substitute_variables,
)

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
METRICS_DOC = ROOT / "docs" / "metrics.md"

PROMTOOL = find_promtool()
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed: apt-get install -y prometheus (deploy/system-packages.txt)")

# Series Prometheus makes itself, usable although no worker declares them.
PROMETHEUS_SERIES = {"up"}
PROMETHEUS_LABELS = {"job", "instance", "le", "__name__"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def declared_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the tables of docs/metrics.md."""
    declared = {}
    for row in re.finditer(r"^\|\s*`(?P<name>[a-z_:]+)(?:\{(?P<labels>[^}]*)\})?`\s*\|"
                           r"\s*(?P<type>\w+)\s*\|", METRICS_DOC.read_text(), re.MULTILINE):
        labels = {x.strip() for x in (row.group("labels") or "").split(",") if x.strip()}
        declared[row.group("name")] = (row.group("type"), labels)
    return declared


def recorded_names() -> set[str]:
    return {rule["record"] for rule in load_rules(RULES) if "record" in rule}


def all_queries() -> list[tuple[str, str]]:
    return ([(f"dashboard panel {title!r}", expr) for title, expr in dashboard_queries(DASHBOARDS)]
            + [(f"rule {name}", expr) for name, expr in rule_expressions(RULES)])


def resolve(name: str, declared: dict[str, tuple[str, set[str]]]) -> tuple[str, str] | None:
    """(declared metric, type) a series name belongs to, histogram series included."""
    if name in declared:
        return name, declared[name][0]
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and declared.get(base, ("",))[0] == "histogram":
            return base, "histogram"
    return None


# --------------------------------------------------------------------------- promtool


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_config_with_its_rules(tmp_path: Path) -> None:
    # rule_files resolve relative to the config: check the pair as deployed, side by side
    shutil.copy(CONFIG, tmp_path / "prometheus.yml")
    shutil.copy(RULES, tmp_path / "rules.yml")
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout, result.stdout


@needs_promtool
def test_every_extracted_expression_is_valid_promql(tmp_path: Path) -> None:
    """Dashboard queries (variables substituted) and alert SIGNALs become recording rules of a
    scratch file, so promtool's parser checks each of them offline."""
    queries = all_queries()
    rules = [{"record": f"check:expression_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]
    scratch = tmp_path / "extracted.yml"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "extracted", "rules": rules}]}))
    result = promtool("check", "rules", str(scratch))
    assert result.returncode == 0, (
        result.stdout + result.stderr + "\n"
        + "\n".join(f"expression_{i}: {where}: {expr}" for i, (where, expr) in enumerate(queries)))
    assert f"{len(rules)} rules found" in result.stdout


# --------------------------------------------------------------------------- prometheus.yml


def test_config_scrapes_the_workers_and_loads_the_rules() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["threatroute"]["static_configs"] for t in sc["targets"]]
    assert targets == ["127.0.0.1:9464"]       # the default --metrics-port
    assert "file_sd_configs" in CONFIG.read_text()  # documented for several workers


# --------------------------------------------------------------------------- rules.yml


def test_alert_rules_have_for_severity_and_annotations() -> None:
    alerts = [rule for rule in load_rules(RULES) if "alert" in rule]
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names)), names
    assert len(alerts) >= 8
    for rule in alerts:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        for key in ("summary", "description"):
            assert "{{" in rule["annotations"][key], f"{rule['alert']}: {key} not templated"


def test_every_alert_is_signal_compared_to_a_scalar() -> None:
    for rule in load_rules(RULES):
        if "alert" in rule:
            signal, op, _ = split_alert_expr(str(rule["expr"]))
            assert signal and op, rule["alert"]
            # the SIGNAL must not be emptied by a set operator (data even when not alerting)
            stripped = re.sub(r"\([^()]*\)", "", signal)
            assert not re.search(r"\b(and|unless)\b", stripped), rule["alert"]


def test_the_alerts_the_operators_asked_for_exist() -> None:
    exprs = {rule["alert"]: str(rule["expr"]) for rule in load_rules(RULES) if "alert" in rule}
    joined = "\n".join(exprs.values())
    assert "threatroute_stage_last_progress_timestamp_seconds" in joined   # stalled
    assert "deriv(threatroute:consumer_lag" in joined                       # lag growing
    assert "threatroute_stage_records_invalid_total" in joined              # dead letters
    assert "threatroute:alerts_open" in joined                              # not acknowledging
    assert "threatroute:feed_false_positive:ratio" in joined                # feed quality
    assert "threatroute_feed_trust_factor" in joined                        # feed trust
    assert "threatroute_match_corrections_total" in joined                  # not_ours claims
    assert "threatroute_match_escalated_total" in joined                    # nobody acts
    assert 'threatroute_match_screened_total{reason="suppressed"}' in joined  # suppression


@pytest.mark.parametrize(("expr", "signal", "op", "threshold"), [
    ("max by (stage) (threatroute_consumer_lag) > 10000",
     "max by (stage) (threatroute_consumer_lag)", ">", 10000.0),
    ('x{a=">", b!="<"} >= 1e6', 'x{a=">", b!="<"}', ">=", 1e6),
    ("(a > bool 0) * b\n  != -0.5", "(a > bool 0) * b", "!=", -0.5),
    ("a > bool 0 < 3", "a > bool 0", "<", 3.0),           # left-associative: the last one
    ('label_replace(a, "x", "$1", "y", "(<.*)") == 0',
     'label_replace(a, "x", "$1", "y", "(<.*)")', "==", 0.0),
    ("rate(a[5m]) # a comment with > 3\n  <= 2", "rate(a[5m]) # a comment with > 3", "<=", 2.0),
])
def test_split_alert_expr(expr: str, signal: str, op: str, threshold: float) -> None:
    assert split_alert_expr(expr) == (signal, op, threshold)


@pytest.mark.parametrize("expr", [
    "a",                       # no comparison
    "a > b",                   # not a scalar
    "a > bool 1",              # a 0/1 series, never empty
    "a > 1 and b",             # the set operator binds last
    "(a > 1)",                 # inside parentheses only
    "a{x=~\"y\"} > (1",        # unbalanced
])
def test_split_alert_expr_rejects(expr: str) -> None:
    with pytest.raises(ValueError):
        split_alert_expr(expr)


def test_rule_expressions_cover_every_rule() -> None:
    extracted = dict(rule_expressions(RULES))
    for rule in load_rules(RULES):
        name = rule.get("alert") or rule["record"]
        assert extracted[name], name
        if "record" in rule:
            assert extracted[name] == str(rule["expr"]).strip()
        else:
            assert len(extracted[name]) < len(str(rule["expr"]).strip())


def test_recording_rules_are_defined_before_use() -> None:
    defined: set[str] = set()
    for rule in load_rules(RULES):
        used = {n for n in metric_names(str(rule["expr"])) if ":" in n}
        assert used <= defined, f"{rule.get('alert') or rule['record']} uses {used - defined}"
        if "record" in rule:
            assert re.fullmatch(r"threatroute:[a-z0-9_]+:[a-z0-9_]+", rule["record"])
            defined.add(rule["record"])


# --------------------------------------------------------------------------- dashboards


def test_dashboards_are_the_two_expected() -> None:
    assert [p.name for p in dashboard_files(DASHBOARDS)] == ["operations.json", "remediation.json"]


@pytest.mark.parametrize("name", ["operations.json", "remediation.json"])
def test_every_panel_queries_prometheus_through_the_datasource_variable(name: str) -> None:
    path = DASHBOARDS / name
    board = json.loads(path.read_text())
    assert board["schemaVersion"] >= 36 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for var in variables.values():
        if var["type"] == "query":
            assert var["definition"].startswith("label_values("), var["name"]
    panels = [p for _, p in dashboard_panels(path) if p["type"] != "row"]
    assert len(panels) >= 8
    ids = [p["id"] for _, p in dashboard_panels(path)]
    assert len(ids) == len(set(ids))
    for panel in panels:
        targets = [t for t in panel.get("targets") or [] if t.get("expr")]
        assert targets, f"{name}: panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in targets:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_variables() -> None:
    def names(file: str) -> set[str]:
        return {v["name"] for v in json.loads((DASHBOARDS / file).read_text())["templating"]["list"]}
    assert {"datasource", "stage"} <= names("operations.json")
    assert {"datasource", "recipient", "classification"} <= names("remediation.json")


def test_rates_in_dashboards_use_rate_interval() -> None:
    for title, expr in dashboard_queries(DASHBOARDS, substitute=False):
        for function, args in function_arguments(expr, ("rate", "irate", "increase")):
            assert args.rstrip().endswith("[$__rate_interval]"), f"{title}: {function}({args})"


def test_dashboard_queries_substitute_grafana_variables() -> None:
    queries = dashboard_queries(DASHBOARDS)
    assert len(queries) >= 30
    for title, expr in queries:
        assert "$" not in expr.replace('"$1"', ""), f"{title}: {expr}"
        assert "[[" not in expr, f"{title}: {expr}"


@pytest.mark.parametrize(("grafana", "plain"), [
    ('rate(x{stage="$stage"}[$__rate_interval])', 'rate(x{stage=~".*"}[1m])'),
    ('x{recipient=~"${recipient}", a="b"}', 'x{recipient=~".*", a="b"}'),
    ("x{c!='[[classification]]'}[${__interval}]", 'x{c!~".*"}[1m]'),
    ('increase(x{a=~"$a|fixed"}[$__range])', 'increase(x{a=~".*"}[5m])'),
    ('label_replace(x, "d", "$1", "s", "(.*)")', 'label_replace(x, "d", "$1", "s", "(.*)")'),
    ('x{stage="${stage:regex}"}', 'x{stage=~".*"}'),
])
def test_substitute_variables(grafana: str, plain: str) -> None:
    assert substitute_variables(grafana) == plain


def test_substitute_variables_rejects_variables_outside_matchers() -> None:
    with pytest.raises(ValueError):
        substitute_variables("topk($n, x)")


def test_dashboard_queries_include_rows(tmp_path: Path) -> None:
    board = {"panels": [
        {"type": "row", "title": "r", "collapsed": True, "panels": [
            {"type": "timeseries", "title": "inner", "targets": [{"expr": 'a{s="$s"}'}]}]},
        {"type": "stat", "title": "outer", "targets": [{"expr": "b"}, {"expr": ""}]},
        {"type": "text", "title": "no query"}]}
    (tmp_path / "d.json").write_text(json.dumps(board))
    assert dashboard_queries(tmp_path) == [("inner", 'a{s=~".*"}'), ("outer", "b")]


# --------------------------------------------------------------------------- the contract


def test_metrics_doc_parses() -> None:
    declared = declared_metrics()
    assert len(declared) >= 20
    assert declared["threatroute_consumer_lag"] == ("gauge", {"stage", "topic", "partition"})
    assert declared["threatroute_time_to_acknowledge_seconds"][0] == "histogram"


def test_every_metric_used_is_declared_in_docs_metrics_md() -> None:
    declared, recorded = declared_metrics(), recorded_names()
    for where, expr in all_queries():
        for name in metric_names(expr):
            if ":" in name:
                assert name in recorded, f"{where}: recording rule {name} is not defined"
            else:
                assert name in PROMETHEUS_SERIES or resolve(name, declared), (
                    f"{where}: {name} is not declared in docs/metrics.md")


def test_every_label_used_is_declared_in_docs_metrics_md() -> None:
    declared = declared_metrics()
    known = set().union(*(labels for _, labels in declared.values())) | PROMETHEUS_LABELS
    for where, expr in all_queries():
        assert label_names(expr) <= known, f"{where}: {label_names(expr) - known}"


def test_rate_and_increase_only_over_counters_and_histograms() -> None:
    declared = declared_metrics()
    for where, expr in all_queries():
        for function, args in function_arguments(expr, ("rate", "irate", "increase")):
            for name in metric_names(args):
                resolved = resolve(name, declared)
                assert resolved and (resolved[1] == "counter" or name != resolved[0]), (
                    f"{where}: {function}() over {name}, which is not a counter")


def test_histogram_quantiles_group_by_le() -> None:
    for where, expr in all_queries():
        for _, args in function_arguments(expr, ("histogram_quantile",)):
            assert "_bucket" in args and "le" in label_names(args), f"{where}: {args}"


# --------------------------------------------------------------------------- grafana provisioning


def test_grafana_provisioning() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "${PROMETHEUS_URL}"
    uids = {json.loads(p.read_text())["templating"]["list"][0]["current"]["value"]
            for p in dashboard_files(DASHBOARDS)}
    assert uids == {source["uid"]}
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/threatroute.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].endswith("deploy/grafana/dashboards")
