"""Settings: one validated schema, built at start-up from defaults, a TOML file,
environment variables and command-line flags (later ones win).

An invalid value stops start-up with a `ConfigError` naming the key. The
commented sample `rimba.sample.toml` lists every option; a test keeps it in step
with `OPTIONS`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rimba.errors import ConfigError


@dataclass(frozen=True)
class Option:
    key: str
    env: str
    kind: type
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()


OPTIONS = (
    Option("mqtt_url", "RIMBA_MQTT_URL", str, "mqtt://127.0.0.1:1883",
           "broker: mqtt://user:pass@host:port or mqtts://... (TLS)"),
    Option("mqtt_user", "RIMBA_MQTT_USER", str, "", "broker user (instead of the one in mqtt_url)"),
    Option("mqtt_password", "RIMBA_MQTT_PASSWORD", str, "", "broker password (instead of the one in mqtt_url)"),
    Option("mqtt_password_file", "RIMBA_MQTT_PASSWORD_FILE", str, "",
           "a file holding the broker password (instead of mqtt_password)"),
    Option("mqtt_ca_file", "RIMBA_MQTT_CA", str, "", "CA certificate for mqtts:// (empty: the system's CAs)"),
    Option("mqtt_client_id", "RIMBA_MQTT_CLIENT_ID", str, "rimba-ingest",
           "fixed client id of this ingest process (its persistent session)"),
    Option("mqtt_share_group", "RIMBA_MQTT_SHARE", str, "",
           "shared-subscription group: ingest processes with the same group split the load"),
    Option("influx_url", "RIMBA_INFLUX_URL", str, "http://127.0.0.1:8086",
           "InfluxDB base URL (1.x, or 2.x/3.x through their v1-compatible API)"),
    Option("influx_db", "RIMBA_INFLUX_DB", str, "rimba", "database (1.x) or bucket mapped to a database (2.x/3.x)"),
    Option("influx_token", "RIMBA_INFLUX_TOKEN", str, "", "API token for InfluxDB 2.x/3.x"),
    Option("influx_token_file", "RIMBA_INFLUX_TOKEN_FILE", str, "", "a file holding the API token (instead of influx_token)"),
    Option("influx_user", "RIMBA_INFLUX_USER", str, "", "user for InfluxDB 1.x with authentication"),
    Option("influx_password", "RIMBA_INFLUX_PASSWORD", str, "", "password for InfluxDB 1.x"),
    Option("influx_password_file", "RIMBA_INFLUX_PASSWORD_FILE", str, "",
           "a file holding the InfluxDB 1.x password (instead of influx_password)"),
    Option("influx_timeout_s", "RIMBA_INFLUX_TIMEOUT_S", float, 10.0, "seconds before a write counts as failed",
           0.1, 300),
    Option("fleet", "RIMBA_FLEET", str, "fleet.toml", "the fleet file"),
    Option("state_dir", "RIMBA_STATE_DIR", str, "~/.local/state/rimba",
           "where the stack's data, the spool and the dead letters live"),
    Option("spool_max_mb", "RIMBA_SPOOL_MAX_MB", float, 512.0,
           "spool size at which ingest stops acknowledging (the broker keeps the rest)", 0.01, 1_000_000),
    Option("batch_lines", "RIMBA_BATCH_LINES", int, 5000, "lines per InfluxDB write", 1, 100_000),
    Option("flush_ms", "RIMBA_FLUSH_MS", int, 50, "longest a received message waits before it is made durable",
           1, 60_000),
    Option("gap_timeout_s", "RIMBA_GAP_TIMEOUT_S", int, 3600,
           "a missing seq range still open after this long is recorded as a gap", 1, 30 * 86400),
    Option("stats_every_s", "RIMBA_STATS_EVERY_S", float, 10.0, "how often ingest stores its own counters",
           0.1, 3600),
    Option("broker_tls_port", "RIMBA_BROKER_TLS_PORT", int, 8883,
           "the local stack's TLS listener, once `rimba broker tls` made its certificate", 1, 65535),
    Option("analyze_every_s", "RIMBA_ANALYZE_EVERY_S", int, 60, "how often `rimba analyze` runs the analytics",
           5, 86400),
    Option("analyze_days", "RIMBA_ANALYZE_DAYS", float, 8.0,
           "days of data each run looks at (the anomaly baselines need three)", 0.1, 60),
    Option("analyze_step_s", "RIMBA_ANALYZE_STEP_S", int, 600, "the analytics' time grid, seconds", 60, 3600),
    Option("analyze_sites", "RIMBA_ANALYZE_SITES", str, "",
           "the sites this analytics process owns, separated by commas or spaces (empty: see analyze_partition)"),
    Option("analyze_partition", "RIMBA_ANALYZE_PARTITION", str, "1/1",
           "K/N: this process owns the sites whose name hashes to K of N (when analyze_sites is empty)"),
    Option("analyze_reread_s", "RIMBA_ANALYZE_REREAD_S", int, 7200,
           "each run re-reads this much of the recent past per node (nodes send their readings late)", 60, 86400),
    Option("analyze_audit_s", "RIMBA_ANALYZE_AUDIT_S", int, 3600,
           "how often readings that arrived behind a node's newest (resends, replays) are looked for", 60, 86400),
    Option("analyze_snapshot_s", "RIMBA_ANALYZE_SNAPSHOT_S", int, 900,
           "how often the analytics' state is saved (a restart re-reads from InfluxDB what came since)", 0, 86400),
    Option("fire_wind_kmh", "RIMBA_FIRE_WIND_KMH", float, 6.0,
           "10-m noon wind for the fire weather index (the nodes measure none)", 0, 100),
    Option("alert_rules", "RIMBA_ALERT_RULES", str, "", "TOML file of [[rule]] tables (empty: the built-in rules)"),
    Option("alert_notify", "RIMBA_ALERT_NOTIFY", str, "",
           "Apprise URLs for people, separated by spaces (tgram://, mailto://, json://, ...)"),
    Option("alert_quiet_hours", "RIMBA_ALERT_QUIET_HOURS", str, "",
           "HH:MM-HH:MM (WIB) when only critical alerts reach people; the rest wait"),
    Option("alert_repeat_s", "RIMBA_ALERT_REPEAT_S", int, 14400,
           "an unacknowledged firing alert is repeated to people this often", 60, 30 * 86400),
    Option("alert_clear_s", "RIMBA_ALERT_CLEAR_S", int, 600,
           "a condition must stay clear this long before its alert resolves", 0, 86400),
    Option("alert_group_min", "RIMBA_ALERT_GROUP_MIN", int, 3,
           "this many overdue nodes of one site make one site alert", 2, 10000),
    Option("overdue_sends", "RIMBA_OVERDUE_SENDS", float, 2.0,
           "a node is overdue after missing this many of its sends", 1, 1000),
    Option("overdue_grace_s", "RIMBA_OVERDUE_GRACE_S", int, 300,
           "slack after a node's expected contact before it counts as overdue", 0, 86400),
    Option("log_level", "RIMBA_LOG_LEVEL", str, "info", "logging level",
           choices=("debug", "info", "warning", "error")),
)
_BY_KEY = {o.key: o for o in OPTIONS}
# Secrets can come from a file (a path on the command line shows in `ps`; the secret itself must not):
# the `<key>_file` option's file holds the value of `<key>`.
SECRET_FILES = {"mqtt_password_file": "mqtt_password", "influx_token_file": "influx_token",
                "influx_password_file": "influx_password"}


@dataclass(frozen=True)
class Broker:
    tls: bool
    host: str
    port: int
    user: str | None
    password: str | None


@dataclass(frozen=True)
class Settings:
    values: dict

    def __getattr__(self, key):
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(key) from None

    @property
    def broker(self) -> Broker:
        b = parse_mqtt_url(self.values["mqtt_url"])
        if self.values["mqtt_user"]:
            return Broker(b.tls, b.host, b.port, self.values["mqtt_user"], self.values["mqtt_password"] or None)
        return b

    @property
    def state_path(self) -> Path:
        return Path(os.path.expanduser(self.values["state_dir"]))

    def env(self) -> dict:
        """These settings as RIMBA_* environment variables, to hand to a child process."""
        return {o.env: str(self.values[o.key]) for o in OPTIONS}

    def with_(self, **changes) -> Settings:
        return build(overrides=changes, base=self.values)


def parse_mqtt_url(url: str, key: str = "mqtt_url") -> Broker:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"{key}: {url!r} must start with mqtt:// or mqtts://")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(f"{key}: {url!r} has an invalid port") from None
    if not parts.hostname:
        raise ConfigError(f"{key}: {url!r} names no host")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return Broker(parts.scheme == "mqtts", parts.hostname, port, user, password)


def read_toml(path, what: str) -> dict:
    """A TOML file, or a ConfigError naming `what` and the path."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{what} {path}: {err}") from None


def parse_partition(text: str) -> tuple:
    """`analyze_partition` "K/N" as (k, n), 1 <= k <= n; ConfigError naming the key otherwise."""
    k, slash, n = text.strip().partition("/")
    if not (slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ConfigError(f"analyze_partition: {text!r} is not K/N with 1 <= K <= N (e.g. 2/3)")
    return int(k), int(n)


def parse_quiet(text: str) -> tuple | None:
    """'21:00-06:00' -> (1260, 360), the minutes of the day (WIB) quiet hours start and end; '' -> None."""
    if not text:
        return None
    try:
        out = []
        for part in text.split("-", 1):
            h, m = part.strip().split(":")
            if not (0 <= int(h) < 24 and 0 <= int(m) < 60):
                raise ValueError
            out.append(int(h) * 60 + int(m))
        if len(out) != 2:
            raise ValueError
        return tuple(out)
    except ValueError:
        raise ConfigError(f"alert_quiet_hours: {text!r} is not HH:MM-HH:MM") from None


def _coerce(opt: Option, value, source: str):
    where = f"{opt.key} (from {source})"
    if opt.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        raise ConfigError(f"{where}: {value!r} is not true or false")
    if opt.kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not a number")
        try:
            v = opt.kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {value!r} is not {'an integer' if opt.kind is int else 'a number'}") from None
        if opt.kind is int and isinstance(value, float) and value != v:
            raise ConfigError(f"{where}: {value!r} is not an integer")
        if (opt.low is not None and v < opt.low) or (opt.high is not None and v > opt.high):
            raise ConfigError(f"{where}: {v} is outside {opt.low:g}..{opt.high:g}")
        return v
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {value!r} is not a string")
    if opt.choices and value not in opt.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(opt.choices)}")
    return value


def _set(values: dict, opt: Option, value, source: str) -> None:
    """Set one option from `source`; a secret file's contents become its secret, in the same layer."""
    values[opt.key] = _coerce(opt, value, source)
    if opt.key in SECRET_FILES and values[opt.key]:
        values[SECRET_FILES[opt.key]] = read_secret(values[opt.key], f"{opt.key} (from {source})")


def read_secret(path: str, where: str) -> str:
    """The secret in a file: its text without the final newline; a ConfigError naming `where` otherwise."""
    try:
        text = Path(os.path.expanduser(path)).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    if not text:
        raise ConfigError(f"{where}: {path} is empty")
    return text


def _check(values: dict) -> None:
    parse_mqtt_url(values["mqtt_url"])
    influx = urlsplit(values["influx_url"])
    if influx.scheme not in ("http", "https") or not influx.hostname:
        raise ConfigError(f"influx_url: {values['influx_url']!r} must be http(s)://host:port")
    if values["influx_token"] and values["influx_user"]:
        raise ConfigError("influx_token: set either a token (2.x/3.x) or a user and password (1.x), not both")
    if bool(values["influx_user"]) != bool(values["influx_password"]):
        raise ConfigError("influx_user: a 1.x user needs influx_password too (and the other way round)")
    if values["mqtt_password"] and not values["mqtt_user"]:
        raise ConfigError("mqtt_password: set mqtt_user too")
    if values["mqtt_share_group"] and "/" in values["mqtt_share_group"] + values["mqtt_client_id"]:
        raise ConfigError("mqtt_share_group: may not contain '/'")
    parse_quiet(values["alert_quiet_hours"])
    parse_partition(values["analyze_partition"])
    for key in ("mqtt_client_id", "influx_db"):
        if not values[key]:
            raise ConfigError(f"{key}: may not be empty")


def build(config_file: str | None = None, overrides: dict | None = None, env=None, base: dict | None = None) -> Settings:
    """Defaults → config file → environment → overrides (flags). Raises ConfigError."""
    env = os.environ if env is None else env
    values = dict(base) if base else {o.key: o.default for o in OPTIONS}
    path = config_file if config_file is not None else env.get("RIMBA_CONFIG")
    if path and base is None:
        data = read_toml(path, "config file")
        for key, value in data.items():
            if key not in _BY_KEY:
                raise ConfigError(f"{key} (from {path}): unknown setting")
            _set(values, _BY_KEY[key], value, path)
    if base is None:
        for opt in OPTIONS:
            if opt.env in env:
                _set(values, opt, env[opt.env], opt.env)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _BY_KEY:
            raise ConfigError(f"{key}: unknown setting")
        _set(values, _BY_KEY[key], value, "--" + key.replace("_", "-"))
    _check(values)
    return Settings(values)


def sample() -> str:
    """The commented sample configuration file: every option with its default."""
    lines = ["# Rimba settings. Every key is optional; shown with its default.",
             "# Precedence: defaults < this file (RIMBA_CONFIG or --config) < environment < flags.", ""]
    for o in OPTIONS:
        default = o.default
        lines.append(f"# {o.help} [env {o.env}]")
        if isinstance(default, str):
            lines.append(f'# {o.key} = "{default}"')
        else:
            lines.append(f"# {o.key} = {default}")
        lines.append("")
    return "\n".join(lines)
