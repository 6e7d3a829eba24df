"""A real Prometheus for tests, and the PromQL the project ships, ready to evaluate.

- `start_prometheus(tmp_path, targets, rule_files)` runs /usr/bin/prometheus (Debian package
  `prometheus`, deploy/system-packages.txt) on a free loopback port, scraping `targets` every
  second as job `threatroute` and evaluating `rule_files` every second; `.query(expr)` runs an
  instant query, `.wait_for(expr, timeout)` polls until it returns something, `.stop()` ends it.
- `dashboard_queries(path)` lists (panel title, PromQL) of every panel target of the Grafana
  dashboards, Grafana variables replaced so a plain Prometheus accepts them.
- `rule_expressions(rules.yml)` lists (rule name, PromQL): a recording rule's expr, and an alert
  rule's SIGNAL, the part left of its top-level comparison (deploy/prometheus/rules.yml
  requires every alert to be `<SIGNAL> <op> <scalar threshold>`).
- `metric_names(expr)` / `label_names(expr)`: the metric and label names an expression uses.

Library code only; the tests live in tests/unit/test_prometheus_config.py and the integration
tests that run workers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.ports import free_port

PROMETHEUS = os.environ.get("THREATROUTE_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("THREATROUTE_PROMTOOL", "/usr/bin/promtool")
JOB = "threatroute"

# Grafana's built-in interval variables, as a plain Prometheus should see them.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}


class PrometheusError(RuntimeError):
    """Prometheus did not start, or its HTTP API answered with an error."""


def find_prometheus() -> str | None:
    """The prometheus binary to run, or None when it is not installed."""
    if os.access(PROMETHEUS, os.X_OK):
        return PROMETHEUS
    return shutil.which("prometheus")


def find_promtool() -> str | None:
    if os.access(PROMTOOL, os.X_OK):
        return PROMTOOL
    return shutil.which("promtool")


# --------------------------------------------------------------------------- the server


@dataclass
class PrometheusHandle:
    process: subprocess.Popen[bytes]
    url: str                      # http://127.0.0.1:PORT
    config: Path
    log: Path
    _log_file: Any = field(default=None, repr=False)

    def query(self, expr: str, at: float | None = None, timeout: float = 10.0) -> list[Any]:
        """Instant query: the `result` of /api/v1/query (vector samples, or [t, v] for a
        scalar). Raises PrometheusError on a bad expression or any other API error."""
        params = {"query": expr}
        if at is not None:
            params["time"] = repr(at)
        request = urllib.request.Request(
            f"{self.url}/api/v1/query", data=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:  # 400/422/503 carry a JSON error body
            try:
                body = json.load(err)
            except ValueError:
                raise PrometheusError(f"query {expr!r}: HTTP {err.code}") from err
        except (urllib.error.URLError, OSError) as err:
            raise PrometheusError(f"query {expr!r}: {err}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"query {expr!r}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [data["result"]]
        return list(data["result"])

    def wait_for(self, expr: str, timeout: float = 30.0, interval: float = 0.5) -> list[Any]:
        """Poll `expr` until it returns a non-empty result, and return that result.
        API errors are raised at once (a bad expression never becomes non-empty)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited {self.process.returncode} while "
                                      f"waiting for {expr!r}:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no result for {expr!r} within {timeout}s "
                                   f"(targets: {self.targets_health()})")
            time.sleep(interval)

    def targets_health(self) -> list[tuple[str, str, str]]:
        """(scrape url, health, last error) of every active target: for failure messages."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as response:
                active = json.load(response)["data"]["activeTargets"]
        except (OSError, ValueError, KeyError):
            return []
        return [(t.get("scrapeUrl", ""), t.get("health", ""), t.get("lastError", ""))
                for t in active]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Prometheus flushes and exits), SIGKILL if it does not within `timeout`."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> PrometheusHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_config(path: Path, targets: list[str], rule_files: list[Path]) -> Path:
    """A Prometheus config scraping `targets` (host:port) as job `threatroute` every second
    and evaluating `rule_files` (absolute paths) every second."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                            "static_configs": [{"targets": list(targets)}]}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_prometheus(tmp_path: Path, targets: list[str], rule_files: list[Path],
                     timeout: float = 60.0) -> PrometheusHandle:
    """Start Prometheus on a free 127.0.0.1 port with its config, data and log in `tmp_path`;
    returns once /-/ready answers 200. Call `.stop()` (or use it as a context manager)."""
    binary = find_prometheus()
    if binary is None:
        raise PrometheusError("prometheus is not installed (apt-get install -y prometheus)")
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path / "prometheus.yml", targets, rule_files)
    last_error = ""
    for attempt in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        log = tmp_path / f"prometheus-{attempt}.log"
        log_file = log.open("wb")
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d",
             "--log.level=info"],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
        handle = PrometheusHandle(process, f"http://127.0.0.1:{port}", config, log, log_file)
        if _wait_ready(handle, timeout):
            return handle
        handle.stop()
        last_error = handle.log_tail()
        if "address already in use" not in last_error:
            break
    raise PrometheusError(f"prometheus did not become ready:\n{last_error}")


def _wait_ready(handle: PrometheusHandle, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{handle.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


# --------------------------------------------------------------------------- dashboards

_VARIABLE = re.compile(
    r"\$\{(?P<braced>[A-Za-z_]\w*)(?:[.:][^}]*)?\}"     # ${var}, ${var:format}
    r"|\[\[(?P<old>[A-Za-z_]\w*)(?::[^\]]*)?\]\]"         # [[var]], [[var:format]]
    r"|\$(?P<plain>[A-Za-z_]\w*)")                        # $var
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_MATCHER = re.compile(rf"(?P<label>[A-Za-z_]\w*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>{_STRING})")
_NEGATED = {"=": "=~", "=~": "=~", "!=": "!~", "!~": "!~"}


def _variable_name(match: re.Match[str]) -> str:
    return match.group("braced") or match.group("old") or match.group("plain")


def substitute_variables(expr: str) -> str:
    """A Grafana panel query as a plain Prometheus can run it: interval variables become
    fixed durations, a variable used as a label matcher value matches anything
    (`stage="$stage"` -> `stage=~".*"`). Any other use of a variable is an error."""
    def matcher(m: re.Match[str]) -> str:
        if not _VARIABLE.search(m.group("value")):
            return m.group(0)
        return f'{m.group("label")}{_NEGATED[m.group("op")]}".*"'

    expr = _MATCHER.sub(matcher, expr)

    def builtin(m: re.Match[str]) -> str:
        name = _variable_name(m)
        return GRAFANA_BUILTINS.get(name, m.group(0))

    expr = _VARIABLE.sub(builtin, expr)
    leftover = [_variable_name(m) for m in _VARIABLE.finditer(_strip_strings(expr))]
    if leftover:
        raise ValueError(f"Grafana variables {leftover} outside label matchers in {expr!r}")
    return expr


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])   # rows (collapsed or not)


def dashboard_files(path_or_dir: str | Path) -> list[Path]:
    path = Path(path_or_dir)
    return sorted(path.glob("*.json")) if path.is_dir() else [path]


def dashboard_panels(path_or_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every panel of the dashboard(s) (rows included, as they are panels too)."""
    return [(file, panel) for file in dashboard_files(path_or_dir)
            for panel in _panels(json.loads(file.read_text()).get("panels") or [])]


def dashboard_queries(path_or_dir: str | Path, substitute: bool = True) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target with an expr of every panel of the dashboard
    file, or of every *.json in the directory; variables substituted unless told not to."""
    queries = []
    for _, panel in dashboard_panels(path_or_dir):
        for target in panel.get("targets") or []:
            expr = (target.get("expr") or "").strip()
            if expr:
                queries.append((panel.get("title", ""),
                                substitute_variables(expr) if substitute else expr))
    return queries


# --------------------------------------------------------------------------- rules

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+|[iI]nf|[nN]a[nN])")


def _top_level_comparisons(expr: str) -> list[tuple[int, str]]:
    """(offset, operator) of every comparison outside (), [], {}, quotes and comments."""
    found, depth, i = [], 0, 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            end = i + 1
            while end < len(expr) and expr[end] != c:
                end += 2 if expr[end] == "\\" and c != "`" else 1
            i = end + 1
            continue
        if c == "#":
            newline = expr.find("\n", i)
            i = len(expr) if newline < 0 else newline
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced brackets in {expr!r}")
        elif depth == 0:
            two = expr[i:i + 2]
            if two in ("=~", "!~"):
                raise ValueError(f"regex matcher outside braces in {expr!r}")
            if two in _COMPARISONS:
                found.append((i, two))
                i += 2
                continue
            if c in "<>":
                found.append((i, c))
        i += 1
    if depth:
        raise ValueError(f"unbalanced brackets in {expr!r}")
    return found


def split_alert_expr(expr: str) -> tuple[str, str, float]:
    """`<SIGNAL> <op> <scalar>` -> (SIGNAL, op, threshold). Comparisons are left-associative,
    so the split is at the last top-level comparison; the right side must be a plain number
    (no `bool`, no and/or/unless after it)."""
    comparisons = _top_level_comparisons(expr)
    if not comparisons:
        raise ValueError(f"no top-level comparison in alert expr {expr!r}")
    offset, op = comparisons[-1]
    signal, threshold = expr[:offset].strip(), expr[offset + len(op):].strip()
    if not signal or not _NUMBER.fullmatch(threshold):
        raise ValueError(f"alert expr is not `<SIGNAL> {op} <scalar>`: {expr!r}")
    return signal, op, float(threshold)


def load_rules(rules_yml: str | Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(Path(rules_yml).read_text()) or {}
    return [rule for group in document.get("groups") or [] for rule in group.get("rules") or []]


def rule_expressions(rules_yml: str | Path) -> list[tuple[str, str]]:
    """(rule name, PromQL to evaluate): a recording rule's expr, an alert rule's SIGNAL."""
    out = []
    for rule in load_rules(rules_yml):
        expr = str(rule["expr"]).strip()
        if "alert" in rule:
            out.append((rule["alert"], split_alert_expr(expr)[0]))
        else:
            out.append((rule["record"], expr))
    return out


# --------------------------------------------------------------------------- names in PromQL

_KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan", "start", "end",
}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")


def _strip_strings(expr: str) -> str:
    expr = re.sub(r"#[^\n]*", "", expr)
    return re.sub(_STRING, '""', expr)


def metric_names(expr: str) -> set[str]:
    """Metric names (and recording rule names) an expression selects."""
    text = _strip_strings(expr)
    text = re.sub(r"\{[^{}]*\}", "{}", text)
    text = re.sub(r"\[[^\[\]]*\]", "[]", text)
    text = _GROUPING.sub(lambda m: m.group(1), text)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        name = m.group(1)
        if name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by."""
    text = re.sub(r"#[^\n]*", "", expr)
    labels = {m.group("label") for m in _MATCHER.finditer(text)}
    text = _strip_strings(text)
    for m in _GROUPING.finditer(text):
        labels.update(x.strip() for x in m.group(2).split(",") if x.strip())
    return labels


def function_arguments(expr: str, functions: tuple[str, ...]) -> list[tuple[str, str]]:
    """(function, its whole argument text) for every call of one of `functions`."""
    text = _strip_strings(expr)
    calls = []
    for m in re.finditer(rf"\b({'|'.join(functions)})\s*\(", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append((m.group(1), text[m.end():i - 1]))
    return calls
