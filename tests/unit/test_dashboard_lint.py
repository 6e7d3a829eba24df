"""deploy/grafana dashboards against Grafana's dashboard linter (grafana/dashboard-linter).

The linter is a Go program that the Go module proxy does not serve (403 for
github.com/grafana/dashboard-linter), so its rules (lint/rules.go, NewRuleSet) are
re-implemented here one for one, errors and warnings alike; the rules for Loki queries do not
apply (no Loki datasource). PromQL validity itself is checked by promtool in
test_prometheus_config.py; here a small PromQL tokenizer finds the selectors and range
vectors the selector rules look at. Plus what current Grafana writes: schemaVersion 43 (its
latest migration, apps/dashboard/pkg/migration/schemaversion/v43.go) and the full link shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
LATEST_SCHEMA = 43
QUERY_PANELS = {"singlestat", "gauge", "table", "stat", "state-timeline", "timeseries"}
UNIT_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge"}
DATASOURCE_PANELS = {"singlestat", "graph", "table", "timeseries"}
# lint/rule_panel_units.go, validUnits (Grafana's valueFormats categories)
VALID_UNITS = set(["none", "string", "short", "percent", "percentunit", "humidity", "dB", "hex0x", "hex", "sci", "locale", "pixel", "accMS2", "accFS2", "accG", "degree", "radian", "grad", "arcmin", "arcsec", "areaM2", "areaF2", "areaMI2", "flops", "mflops", "gflops", "tflops", "pflops", "eflops", "zflops", "yflops", "ppm", "conppb", "bytes", "decbytes", "bits", "decbits", "kbytes", "deckbytes", "mbytes", "decmbytes", "gbytes", "decgbytes", "tbytes", "dectbytes", "pbytes", "decpbytes", "pps", "binBps", "Bps", "binbps", "bps", "dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsUS", "dateTimeAsUSNoDateIfToday", "dateTimeAsLocal", "dateTimeAsLocalNoDateIfToday", "dateTimeAsSystem", "dateTimeFromNow", "hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "dthms", "dtdhms", "timeticks", "clockms", "clocks", "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm", "mps", "mpm", "bool", "bool_yes_no", "bool_on_off"])
LINK_FIELDS = {"asDropdown", "icon", "includeVars", "keepTime", "tags", "targetBlank", "title",
               "tooltip", "type", "url"}

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`)'
                    r"|(?P<range>\[[^\]]*\])|(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)"
                    r"|(?P<num>[0-9.]+(?:e[+-]?[0-9]+)?)|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>]))")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "atan2"}
# aggregation operators may put `by (...)` between their name and their parenthesis
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        match = _TOKEN.match(expr, pos)
        assert match, f"cannot tokenise {expr[pos:]!r}"
        out.append((match.lastgroup or "", match.group(match.lastgroup or 0)))
        pos = match.end()
    return out


def selectors(expr: str) -> list[dict]:
    """Each vector selector: metric name, matchers {label: (op, value)}, the range after it
    (or None), and the function directly around it."""
    toks, found, i = tokens(expr), [], 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "id" and text in KEYWORDS:
            if i + 1 < len(toks) and toks[i + 1][1] == "(" and text not in ("and", "or", "unless"):
                i = next(j for j in range(i, len(toks)) if toks[j][1] == ")")  # a label list
            i += 1
            continue
        if kind == "id" and text in AGGREGATIONS:
            i += 1
            continue
        if (kind == "id" and not (i + 1 < len(toks) and toks[i + 1][1] == "(")) or text == "{":
            name = text if kind == "id" else ""
            j, matchers = (i + 1 if kind == "id" else i), {}
            if j < len(toks) and toks[j][1] == "{":
                k = j + 1
                while toks[k][1] != "}":
                    if toks[k][1] == ",":
                        k += 1
                        continue
                    matchers[toks[k][1]] = (toks[k + 1][1], toks[k + 2][1][1:-1])
                    k += 3
                j = k + 1
            window = toks[j][1][1:-1] if j < len(toks) and toks[j][0] == "range" else None
            call = toks[i - 2][1] if i >= 2 and toks[i - 1][1] == "(" else None
            found.append({"name": name, "matchers": matchers, "range": window, "call": call})
            i = j
            continue
        i += 1
    return found


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def lint(dashboard: dict) -> list[str]:
    """Every error and warning Grafana's dashboard linter would report."""
    problems: list[str] = []
    templates = dashboard.get("templating", {}).get("list", [])
    datasources = [t for t in templates if t.get("type") == "datasource"]
    # template-datasource-rule
    if not datasources:
        problems.append("does not have a templated data source")
    for ds in datasources:
        names = {f"{ds.get('query', '').lower()}_datasource"} | ({"datasource"} if len(datasources) == 1 else set())
        labels = {f"{ds.get('query', '').title()} data source"} | ({"Data source"} if len(datasources) == 1 else set())
        if ds.get("name") not in names:
            problems.append(f"datasource variable named {ds.get('name')!r}")
        if ds.get("label") not in labels:
            problems.append(f"datasource variable labeled {ds.get('label')!r}, not 'Data source'")
    prometheus = bool(datasources) and datasources[0].get("query") == "prometheus"
    # template-job-rule, template-instance-rule
    for name in ("job", "instance") if prometheus else ():
        variable = next((t for t in templates if t.get("name") == name), None)
        if variable is None:
            problems.append(f"is missing the {name} template")
            continue
        if (variable.get("datasource") or {}).get("uid") not in ("$datasource", "${datasource}"):
            problems.append(f"{name} template should use datasource '$datasource'")
        if variable.get("type") != "query":
            problems.append(f"{name} template should be a Prometheus query")
        if variable.get("label") != name.title():
            problems.append(f"{name} template should be labeled {name.title()!r}")
        if not variable.get("multi"):
            problems.append(f"{name} template should be a multi select")
        if variable.get("allValue") != ".+":
            problems.append(f"{name} template allValue should be '.+'")
    for t in templates:
        if t.get("type") != "query":
            continue
        query = t["query"]["query"] if isinstance(t.get("query"), dict) else t.get("query", "")
        # template-label-promql-rule
        match = re.fullmatch(r"([a-z_]+)\((.+)\)", query)
        if not match or match.group(1) not in ("label_names", "label_values", "metrics", "query_result"):
            problems.append(f"template {t['name']!r} invalid templated label {query!r}")
        else:
            selectors(match.group(2).rsplit(",", 1)[0] if match.group(1) == "label_values" else match.group(2))
        # template-on-time-change-reload-rule
        if t.get("refresh") != 2:
            problems.append(f"template {t['name']!r} should refresh on time range change (2)")
    # uneditable-dashboard
    if dashboard.get("editable"):
        problems.append("is editable, it should be set to 'editable: false'")
    ds_uids = {f"${d['name']}" for d in datasources} | {f"${{{d['name']}}}" for d in datasources}
    ids = {p.get("id") for p in panels(dashboard)}
    for panel in panels(dashboard):
        where, kind = f"panel {panel.get('title')!r}", panel.get("type")
        # panel-datasource-rule
        if kind in DATASOURCE_PANELS and (panel.get("datasource") or {}).get("uid") not in ds_uids:
            problems.append(f"{where} does not use a templated datasource")
        # panel-title-description-rule
        if kind in UNIT_PANELS and not (panel.get("title") and panel.get("description")):
            problems.append(f"{where} has missing title or description")
        # panel-units-rule (value mappings or a stat reducing non-numeric fields exempt)
        config = panel.get("fieldConfig") or {}
        unit = next((p["value"] for o in config.get("overrides", []) for p in o.get("properties", [])
                     if p.get("id") == "unit"), "") or config.get("defaults", {}).get("unit", "")
        mapped = config.get("defaults", {}).get("mappings") or any(
            p.get("id") == "mappings" and p.get("value") for o in config.get("overrides", [])
            for p in o.get("properties", []))
        reduces_text = kind == "stat" and (panel.get("options", {}).get("reduceOptions", {}).get("fields") or "")
        if kind in UNIT_PANELS and not mapped and not reduces_text and unit not in VALID_UNITS:
            problems.append(f"{where} has no or invalid units defined: {unit!r}")
        # panel-no-targets-rule
        if kind in UNIT_PANELS - {"table"} | {"table"} and panel.get("targets") is None:
            problems.append(f"{where} has no targets")
        for target in panel.get("targets", []) if prometheus and kind in QUERY_PANELS else ():
            expr = target.get("expr", "")
            if not expr:  # target-promql-rule: a reference to another panel must resolve
                if target.get("panelId") and target["panelId"] not in ids:
                    problems.append(f"{where}: invalid panel reference")
                continue
            for sel in selectors(expr):
                # target-job-rule, target-instance-rule
                for label in ("job", "instance"):
                    if sel["matchers"].get(label) != ("=~", f"${label}"):
                        problems.append(f"{where}: {sel['name']} lacks {label}=~\"${label}\": {expr}")
                # target-rate-interval-rule
                if sel["range"] is not None and sel["call"] in ("rate", "irate") \
                        and sel["range"] != "$__rate_interval":
                    problems.append(f"{where}: should use $__rate_interval: {expr}")
                # target-counter-agg-rule
                if sel["name"].endswith("_total") and not (
                        sel["range"] is not None and sel["call"] in ("rate", "irate", "increase")):
                    problems.append(f"{where}: counter {sel['name']} not in rate/irate/increase")
    return problems


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_passes_the_linter_rules(path):
    assert lint(json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_has_the_shape_current_grafana_writes(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["schemaVersion"] == LATEST_SCHEMA
    assert isinstance(dashboard["refresh"], str)                 # v40
    assert "time_options" not in dashboard.get("timepicker", {})  # v41
    for link in dashboard["links"]:
        assert set(link) == LINK_FIELDS, link


def test_the_lint_finds_what_the_issue_found():
    """The rules bite: the dashboards as they were (editable, no job/instance, a table without
    a unit, the datasource variable labelled 'Prometheus') fail them."""
    old = {"editable": True,
           "templating": {"list": [{"type": "datasource", "name": "datasource", "label": "Prometheus",
                                    "query": "prometheus"}]},
           "panels": [{"type": "table", "title": "t", "description": "d",
                       "datasource": {"uid": "${datasource}"},
                       "targets": [{"expr": 'sum(rate(threatroute_stage_records_in_total{stage=~"$stage"}[5m])) + threatroute_feed_alerts_total'}]}]}
    problems = lint(old)
    for expected in ("is editable", "labeled 'Prometheus'", "missing the job template",
                     "missing the instance template", "invalid units", "lacks job",
                     "$__rate_interval", "not in rate/irate/increase"):
        assert any(expected in p for p in problems), (expected, problems)


def test_selectors_are_found_through_functions_and_label_lists():
    found = selectors('sum by (stage, le) (rate(a_total{job=~"$job", x="}"}[$__rate_interval])) '
                      '/ on (job) group_left b')
    assert [(s["name"], s["call"], s["range"]) for s in found] == [
        ("a_total", "rate", "$__rate_interval"), ("b", None, None)]
    assert found[0]["matchers"] == {"job": ("=~", "$job"), "x": ("=", "}")}
