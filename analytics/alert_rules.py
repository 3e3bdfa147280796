"""Alert rules: what may raise an alert, as configuration (the built-in rules, or a TOML file of them)."""

from __future__ import annotations

from dataclasses import dataclass

from rimba import names
from rimba.errors import ConfigError
from rimba.metrics import DERIVED as DERIVED_FIELDS
from rimba.metrics import METRICS
from rimba.settings import read_toml

KINDS = ("threshold", "ispu", "fire", "anomaly", "overdue")
SEVERITIES = ("info", "warning", "critical")
DERIVED = tuple(DERIVED_FIELDS)  # a threshold rule may watch any derived field (rimba/metrics.py)


@dataclass(frozen=True)
class Rule:
    """One alert rule (configuration; see `DEFAULT_RULES` and `load_rules`).

    threshold: `metric` (a measurement or a derived index) above `above` or below `below` for
    `for_s`; clears past `clear` (hysteresis; the threshold itself when not given).
    ispu: the ISPU category (0 Baik .. 4 Berbahaya) of PM2.5 or PM10 at least `above`.
    fire: the fire weather index danger class (0 Rendah .. 3 Ekstrem) at least `above`.
    anomaly: an anomaly event of at least `severity` (warning or critical).
    overdue: a node silent for `overdue_sends` of its send intervals past its announced wake.
    Severity escalates to critical at `critical` when it is given (same units as `above`).
    """

    name: str
    kind: str
    severity: str = "warning"
    metric: str | None = None
    above: float | None = None
    below: float | None = None
    clear: float | None = None
    critical: float | None = None
    for_s: int = 0
    clear_s: int | None = None  # None: the engine's default

    def crosses(self, value: float, firing: bool) -> bool:
        """Whether value is past the threshold (or, for a firing incident, not yet past `clear`)."""
        if self.above is not None:
            return value > (self.clear if firing and self.clear is not None else self.above)
        return value < (self.clear if firing and self.clear is not None else self.below)

    def severity_of(self, value: float) -> str:
        if self.critical is None:
            return self.severity
        hot = value >= self.critical if self.below is None else value <= self.critical
        return "critical" if hot else self.severity


DEFAULT_RULES = (
    # NWS heat index "danger" starts at 103 °F (39.4 °C) (NOAA NWS heat index chart, weather.gov/safety/heat-index)
    Rule("heat-danger", "threshold", "warning", metric="heat_index_c", above=39.4, clear=38.0, critical=51.0,
         for_s=1800),
    # Bansir Laut: forecast high tides 1.7-1.9 m, the annual maximum about 2.0 m above MLLW (BMKG's tide warnings
    # as reported, e.g. kalbarnews.co.id/2026/01/pasang-tinggi-di-pontianak-dan.html)
    Rule("river-high", "threshold", "warning", metric="water_level_cm", above=190.0, clear=185.0, critical=200.0,
         for_s=600),
    # ISPU category 2 is "Tidak Sehat" (101-200), 3 "Sangat Tidak Sehat" (Permen LHK P.14/2020)
    Rule("ispu-unhealthy", "ispu", "warning", above=2, critical=3),
    # FWI class 2 is "Tinggi" (ASEAN SEA-FDRS)
    Rule("fire-danger", "fire", "warning", above=2, critical=3),
    Rule("anomaly", "anomaly", "critical"),
    Rule("overdue", "overdue", "warning", clear_s=0),
)


def load_rules(path: str | None) -> tuple:
    """Rules from a TOML file of `[[rule]]` tables (the built-in ones when path is empty)."""
    if not path:
        return DEFAULT_RULES
    data = read_toml(path, "alert_rules")
    rules = []
    fields = set(Rule.__dataclass_fields__)
    for i, t in enumerate(data.get("rule", [])):
        where = f"alert_rules: {path}: rule {i + 1}"
        unknown = set(t) - fields
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        try:
            rule = Rule(**t)
        except TypeError as err:
            raise ConfigError(f"{where}: {err}") from None
        _validate(rule, where)
        rules.append(rule)
    if len({r.name for r in rules}) != len(rules):
        raise ConfigError(f"alert_rules: {path}: rule names must be unique")
    return tuple(rules)


def _validate(rule: Rule, where: str) -> None:
    if rule.kind not in KINDS:
        raise ConfigError(f"{where}: kind {rule.kind!r} is not one of {', '.join(KINDS)}")
    if rule.severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity {rule.severity!r} is not one of {', '.join(SEVERITIES)}")
    if not names.is_name(rule.name):
        raise ConfigError(f"{where}: name {rule.name!r} must be lowercase letters, digits and '-'")
    if rule.kind == "threshold":
        if rule.metric not in METRICS and rule.metric not in DERIVED:
            raise ConfigError(f"{where}: metric {rule.metric!r} is not a measurement or derived index")
        if (rule.above is None) == (rule.below is None):
            raise ConfigError(f"{where}: a threshold rule needs exactly one of above and below")
    if rule.kind in ("ispu", "fire") and rule.above is None:
        raise ConfigError(f"{where}: an {rule.kind} rule needs above (the lowest category that fires)")
