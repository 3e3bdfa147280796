"""The fleet file (`fleet.toml`): which sites and nodes exist.

Ingest accepts readings only from nodes listed here; the simulator, analytics,
dashboards and provisioning read the same file. Extra keys are allowed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rimba import profiles
from rimba.errors import ConfigError
from rimba.names import is_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    lat: float
    lon: float
    extra: dict = field(default_factory=dict, compare=False)


SEND_EVERY = 6  # samples per send session when the fleet file sets none (what `rimba firmware bundle` writes)
SEND_EVERY_MAX = 144  # what the node accepts (firmware/lib/config.py REMOTE)
# the sensors a technician records replacing, each as the node's `<part>_replaced` (`rimba node replaced`): the
# checks that judge a sensor by its own past start again from the new one (analytics.quality, FAN)
REPLACEABLE = {"pm": ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3")}  # part -> the metrics it measures


@dataclass(frozen=True)
class Node:
    id: str
    site: str
    profile: str
    cadence_s: int
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def send_every(self) -> int:
        """Samples per send session: the node sends, and with it a status, every send_every x cadence_s."""
        return self.extra.get("send_every", SEND_EVERY)  # checked when the fleet file is read

    def replaced(self, part: str) -> tuple:
        """When the node's `part` sensor was replaced (UNIX seconds, oldest first; checked when the fleet file is
        read)."""
        value = self.extra.get(f"{part}_replaced", [])
        return tuple(sorted(int(t.timestamp()) for t in (value if isinstance(value, list) else [value])))


@dataclass(frozen=True)
class Fleet:
    sites: dict[str, Site]
    nodes: dict[str, Node]

    def nodes_of(self, site: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.site == site]


def _need(table: dict, key: str, kind: type | tuple, where: str):
    if key not in table:
        raise ConfigError(f"fleet file: {where}.{key} is required")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"fleet file: {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def parse_fleet(data: dict, source: str = "fleet file") -> Fleet:
    sites: dict[str, Site] = {}
    for sid, t in (data.get("sites") or {}).items():
        where = f"sites.{sid}"
        if not is_name(sid) or not isinstance(t, dict):
            raise ConfigError(f"{source}: {where} is not a valid site name ([a-z0-9][a-z0-9-]{{0,31}})")
        lat = float(_need(t, "lat", (int, float), where))
        lon = float(_need(t, "lon", (int, float), where))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ConfigError(f"{source}: {where}.lat/lon out of range")
        extra = {k: v for k, v in t.items() if k not in ("name", "lat", "lon")}
        sites[sid] = Site(sid, _need(t, "name", str, where), lat, lon, extra)
    nodes: dict[str, Node] = {}
    for nid, t in (data.get("nodes") or {}).items():
        where = f"nodes.{nid}"
        if not is_name(nid) or not isinstance(t, dict):
            raise ConfigError(f"{source}: {where} is not a valid node name ([a-z0-9][a-z0-9-]{{0,31}})")
        site = _need(t, "site", str, where)
        if site not in sites:
            raise ConfigError(f"{source}: {where}.site names unknown site {site!r}")
        cadence = _need(t, "cadence_s", int, where)
        if cadence <= 0:
            raise ConfigError(f"{source}: {where}.cadence_s must be positive")
        profile = _need(t, "profile", str, where)
        if profile not in profiles.names():
            raise ConfigError(f"{source}: {where}.profile {profile!r} is not one of {', '.join(profiles.names())} "
                              "(hardware/profiles/*.toml)")
        extra = {k: v for k, v in t.items() if k not in ("site", "profile", "cadence_s")}
        every = extra.get("send_every", SEND_EVERY)
        if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= SEND_EVERY_MAX:
            raise ConfigError(f"{source}: {where}.send_every must be a whole number of samples, 1 to {SEND_EVERY_MAX}")
        for part in REPLACEABLE:
            if f"{part}_replaced" in extra:
                _replacements(extra[f"{part}_replaced"], f"{part}_replaced", f"{source}: {where}")
        nodes[nid] = Node(nid, site, profile, cadence, extra)
    return Fleet(sites, nodes)


def _replacements(value, key: str, where: str) -> None:
    for t in value if isinstance(value, list) else [value]:
        if not isinstance(t, dt.datetime) or t.tzinfo is None:
            raise ConfigError(f"{where}.{key} must be a date and time with its offset, e.g. 2026-11-20T10:00:00+07:00 "
                              "(unquoted), or a list of them")


def load_fleet(path: str | os.PathLike) -> Fleet:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"fleet file {p} does not exist (set RIMBA_FLEET or --fleet)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"fleet file {p} is not valid TOML: {err}") from err
    return parse_fleet(data, f"fleet file {p}")


class FleetWatcher:
    """Reloads the fleet file when it changes on disk. It looks at every call (a stat, about a microsecond; the
    ingest calls it once a commit): a message handled after the file changed is judged by the new file. (It
    looked at most every 0.2 s: a node added and resending at once could be refused by the old file.)"""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._mtime = self._stat()
        self.fleet = load_fleet(self.path)

    def _stat(self):
        try:
            st = self.path.stat()
            return (st.st_mtime_ns, st.st_size, st.st_ctime_ns)  # ctime: a chmod or chown, which fix an unreadable file
        except FileNotFoundError:
            return None

    def current(self) -> Fleet:
        mtime = self._stat()
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.fleet = load_fleet(self.path)
            except (ConfigError, OSError) as err:  # OSError: unreadable (its owner or mode changed), or gone
                log.error("keeping the last good fleet: %s", err)
            else:
                log.info("fleet file reloaded: %d nodes", len(self.fleet.nodes))
        return self.fleet
