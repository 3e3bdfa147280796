"""What Grafana 11.3 does with a panel's query before and after InfluxDB answers, written out for the tests.

- `$__interval`: Grafana's query runner (scenes' SceneQueryRunner.prepareRequests) calls
  `rangeutil.calculateInterval(range, maxDataPoints, minInterval || datasource interval)`, where maxDataPoints
  is the panel's `maxDataPoints` or else its width in pixels; calculateInterval divides the range by it,
  rounds with `roundInterval`'s table, and never goes below the lower limit (`intervalToMs`). The text is
  `secondsToHms` (600 s -> "10m"). `calculate_interval` below is that, and a test compares it with
  @grafana/data's own on a grid of inputs (tests/grafana/grafana.cjs).
- `$timeFilter`: the InfluxDB plugin writes `time >= <from>ms and time <= <to>ms`.
- a panel's width: react-grid-layout's 24 columns with 8 px margins inside the dashboard's container; below
  769 px (the theme's `md` breakpoint) every panel takes the whole width.
- what InfluxDB returns, as Grafana's frames: one series per InfluxDB series and value column (time series), or
  one table with the time, the GROUP BY tags and the value columns (table).

Run `node` through `grafana()` with one request (see tests/grafana/grafana.cjs); ./dev installs the packages.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

GRAFANA_DIR = Path(__file__).resolve().parent / "grafana"
# (name, viewport width px, the px the page takes around the dashboard grid): a phone, a laptop, a desktop with
# Grafana's docked menu open (300 px)
SCREENS = (("phone", 390, 16), ("laptop", 1366, 32), ("desktop", 1920, 332))
GRID_COLUMNS, GRID_MARGIN, PANEL_PADDING, MOBILE_BELOW = 24, 8, 16, 769
_ROUND = ((10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
          (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
          (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
          (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
          (32400000, 21600000), (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
          (3628800000, 2592000000))
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}


def round_interval(ms: float) -> int:
    for below, value in _ROUND:
        if ms < below:
            return value
    return 31536000000


def interval_to_ms(text: str) -> int:
    """rangeutil.intervalToMs: "10m" -> 600000; a bare number is seconds."""
    if text.isdigit():
        return int(text) * 1000
    m = re.search(r"(-?\d+(?:\.\d+)?)(ms|[Mwdhmsy])", text)
    if not m:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return int(_UNIT_S[m.group(2)] * 1000 * int(float(m.group(1))))


def seconds_to_hms(seconds: float) -> str:
    """rangeutil.secondsToHms: the largest whole unit (600 -> "10m", 5400 -> "1h")."""
    years = int(seconds // 31536000)
    if years:
        return f"{years}y"
    rest = seconds % 31536000
    for size, suffix in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        n = int(rest // size)
        if n:
            return f"{n}{suffix}"
        rest %= size
    ms = int(seconds * 1000)
    return f"{ms}ms" if ms else "less than a millisecond"


def calculate_interval(range_ms: int, resolution: int, low_limit: str | None) -> tuple:
    """(intervalMs, interval text), as rangeutil.calculateInterval."""
    low = interval_to_ms(low_limit) if low_limit else 1
    ms = max(round_interval(range_ms / resolution), low)
    return ms, seconds_to_hms(ms / 1000)


def panel_width(grid_w: int, screen: tuple) -> int:
    """The panel's data width in px (what Grafana takes as maxDataPoints) on a screen of SCREENS."""
    _name, viewport, chrome = screen
    container = viewport - chrome
    if viewport < MOBILE_BELOW:
        return container - PANEL_PADDING
    column = (container - GRID_MARGIN * (GRID_COLUMNS - 1)) / GRID_COLUMNS
    return int(column * grid_w + GRID_MARGIN * (grid_w - 1) - PANEL_PADDING)


def expand(query: str, from_ms: int, to_ms: int, interval_ms: int, interval_text: str) -> str:
    return (query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
            .replace("$__interval_ms", str(interval_ms)).replace("$__interval", interval_text))


def span_ms(relative: str) -> int:
    """`24h`, `now-7d` -> milliseconds."""
    return interval_to_ms(relative.removeprefix("now-"))


def frames(result: list, table: bool) -> list:
    """InfluxDB's answer (epoch ms) as Grafana's frames, DataFrameJSON."""
    series = [s for r in result for s in r.get("series", [])]
    if not table:
        out = []
        for s in series:
            for j, col in enumerate(s["columns"][1:], start=1):
                out.append({"schema": {"name": f"{s['name']}.{col}", "fields": [
                    {"name": "Time", "type": "time"}, {"name": "Value", "type": "number",
                                                       "labels": s.get("tags", {})}]},
                    "data": {"values": [[row[0] for row in s["values"]], [row[j] for row in s["values"]]]}})
        return out
    if not series:
        return []
    tags = sorted({k for s in series for k in s.get("tags", {})})
    cols = [c for c in series[0]["columns"][1:]]
    values = [[] for _ in range(1 + len(tags) + len(cols))]
    for s in series:
        for row in s["values"]:
            values[0].append(row[0])
            for i, t in enumerate(tags, start=1):
                values[i].append(s.get("tags", {}).get(t, ""))
            for i, v in enumerate(row[1:], start=1 + len(tags)):
                values[i].append(v)
    kinds = ["number" if any(isinstance(v, int | float) for v in col) else "string" for col in values[1 + len(tags):]]
    fields = ([{"name": "Time", "type": "time"}] + [{"name": t, "type": "string"} for t in tags]
              + [{"name": c, "type": k} for c, k in zip(cols, kinds, strict=True)])
    return [{"schema": {"fields": fields}, "data": {"values": values}}]


def grafana(request: dict) -> dict:
    """Ask Grafana's own code (tests/grafana/grafana.cjs with @grafana/data 11.3.0)."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None or not (GRAFANA_DIR / "node_modules" / "@grafana" / "data").is_dir():
        raise RuntimeError("Grafana's packages are not installed: run ./dev test (it installs node, npm and "
                           "tests/grafana's packages)")
    r = subprocess.run([node, str(GRAFANA_DIR / "grafana.cjs")], input=json.dumps(request), capture_output=True,
                       text=True, cwd=GRAFANA_DIR, timeout=120, check=False)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def tsc(ts_files: dict, workdir: Path) -> subprocess.CompletedProcess:
    """Type-check TypeScript sources {name: text} against tests/grafana/rimba-dashboard.ts with Grafana's types."""
    for name, text in ts_files.items():
        (workdir / name).write_text(text, encoding="utf-8")
    (workdir / "tsconfig.json").write_text(json.dumps({
        "extends": str(GRAFANA_DIR / "tsconfig.json"),
        "compilerOptions": {"baseUrl": str(GRAFANA_DIR), "paths": {"*": ["node_modules/*"]}, "typeRoots": []},
        "include": list(ts_files)}))
    node = shutil.which("node") or shutil.which("nodejs")
    return subprocess.run([node, str(GRAFANA_DIR / "node_modules" / "typescript" / "bin" / "tsc"), "-p", str(workdir)],
                          capture_output=True, text=True, timeout=300, check=False)


def dashboard_ts(model: dict) -> str:
    return (f"import type {{ RimbaDashboard }} from '{GRAFANA_DIR / 'rimba-dashboard'}';\n"
            f"export const d: RimbaDashboard = {json.dumps(model, indent=1, ensure_ascii=False)};\n")
