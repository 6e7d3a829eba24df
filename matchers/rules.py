"""The feedback, trust, hygiene and escalation settings, read once from the configuration.

`rules_from(raw)` takes the parsed TOML document (deploy/threatroute.toml: `[feedback]`,
`[trust]`, `[hygiene]`, `[escalation]`) and returns one frozen `RoutingRules` the match stage
and `explain` are given. Durations are hours in the file (floats, so a demo or a test can use
seconds); 0 means "never" where a duration can be absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from threatroute.errors import ConfigError
from threatroute.expiry import StateWindows
from threatroute.matchers.escalation import EscalationPolicy
from threatroute.matchers.hygiene import HygienePolicy
from threatroute.matchers.suppression import SuppressionList, load_suppressions
from threatroute.matchers.trust import TrustPolicy
from threatroute.matchers.verdicts import FeedbackPolicy
from threatroute.taxonomy import classification_type


@dataclass(frozen=True)
class RoutingRules:
    feedback: FeedbackPolicy = field(default_factory=FeedbackPolicy)
    trust: TrustPolicy = field(default_factory=TrustPolicy)
    hygiene: HygienePolicy = field(default_factory=HygienePolicy)
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    escalation_tick: timedelta = timedelta(seconds=60)  # how often the match stage checks
    suppressions: Path | None = None  # the operator's suppression list (YAML)
    state: StateWindows = field(default_factory=StateWindows)  # [state]: what is kept how long

    def suppression_list(self) -> SuppressionList:
        """Read and validate the suppression file (an empty list when none is configured)."""
        if self.suppressions is None:
            return SuppressionList()
        try:
            return load_suppressions(self.suppressions.read_text())
        except FileNotFoundError:
            raise ConfigError(f"suppression list not found: {self.suppressions}") from None


def _hours(section: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}.{key}: expected a number of hours >= 0, got {value!r}")
    return float(value)


def _optional(hours: float) -> timedelta | None:
    return timedelta(hours=hours) if hours > 0 else None


def _per_key(section: Mapping[str, Any], key: str, where: str,
             canonical: Any = str) -> dict[str, timedelta]:
    table = section.get(key, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}.{key}: expected a table of name = hours")
    out: dict[str, timedelta] = {}
    for name in table:
        hours = _hours(table, name, 0, f"{where}.{key}")
        try:
            out[canonical(name)] = timedelta(hours=hours)
        except Exception as exc:  # an unknown classification type names itself
            raise ConfigError(f"{where}.{key}.{name}: {exc}") from None
    return out


def rules_from(raw: Mapping[str, Any], base: Path | None = None) -> RoutingRules:
    """The rules from a parsed configuration document; relative paths are under `base`."""
    feedback, trust, hygiene, escalation, state = (
        raw.get(k, {}) for k in ("feedback", "trust", "hygiene", "escalation", "state"))
    windows = state_windows(state)
    try:
        trust_policy = TrustPolicy(
            prior_reports=float(trust.get("prior_reports", 5)),
            not_ours_weight=float(trust.get("not_ours_weight", 0.5)),
            min_factor=float(trust.get("min_factor", 0.2)),
            max_factor=float(trust.get("max_factor", 1.0)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"trust: {exc}") from None
    if not 0 <= trust_policy.min_factor <= trust_policy.max_factor:
        raise ConfigError("trust: need 0 <= min_factor <= max_factor")
    path = hygiene.get("suppressions") or ""
    suppressions = None
    if path:
        suppressions = Path(path).expanduser()
        if not suppressions.is_absolute() and base is not None:
            suppressions = base / suppressions
    return RoutingRules(
        feedback=FeedbackPolicy(timedelta(hours=_hours(
            feedback, "false_positive_mute_hours", 720, "feedback")),
            not_ours_kept=windows.alerts),
        trust=trust_policy,
        hygiene=HygienePolicy(
            feed_expiry=_per_key(hygiene, "feed_expiry_hours", "hygiene"),
            default_expiry=_optional(_hours(hygiene, "default_expiry_hours", 0, "hygiene"))),
        escalation=EscalationPolicy(
            acknowledge_within=_per_key(escalation, "acknowledge_within_hours", "escalation",
                                        classification_type),
            default=_optional(_hours(escalation, "default_hours", 0, "escalation"))),
        escalation_tick=timedelta(seconds=float(escalation.get("tick_seconds", 60))),
        suppressions=suppressions,
        state=windows,
    )


def state_windows(state: Mapping[str, Any]) -> StateWindows:
    """`[state]`: `expiry_seconds`, `alert_days`, `watch_days` (floats: a test uses seconds)."""
    defaults = StateWindows()
    days = {}
    for key, default in (("alert_days", defaults.alerts), ("watch_days", defaults.watch)):
        value = state.get(key, default.total_seconds() / 86400)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"state.{key}: expected a number of days > 0, got {value!r}")
        days[key] = timedelta(days=value)
    every = state.get("expiry_seconds", defaults.every.total_seconds())
    if isinstance(every, bool) or not isinstance(every, int | float) or every <= 0:
        raise ConfigError(f"state.expiry_seconds: expected seconds > 0, got {every!r}")
    return StateWindows(timedelta(seconds=every), days["alert_days"], days["watch_days"])


__all__ = ["RoutingRules", "rules_from", "state_windows"]
