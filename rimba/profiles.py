"""Node profiles: which sensors a node has, on which pins, and which metrics it sends.

The one source is `hardware/profiles/<name>.toml` (board, pins, sensors with their metrics, power,
enclosure, bill of materials). Everything on the platform reads it here: the fleet file's check, the
simulator, the dashboards' panels, the energy model, provisioning; the node gets the same facts as a
generated block of `firmware/lib/sensors.py` (`python -m hardware.profiles`; a test holds it to the files).
"""

from __future__ import annotations

import copy
import functools
import tomllib
from pathlib import Path

from rimba.errors import ConfigError

DIR = Path(__file__).resolve().parents[1] / "hardware" / "profiles"


def names() -> list:
    return list(_names())


@functools.cache
def _names() -> tuple:
    """The profiles there are: read once a process (the fleet file asks for each of its nodes)."""
    return tuple(sorted(p.stem for p in DIR.glob("*.toml")))


@functools.cache
def _read(name: str) -> dict:
    return tomllib.loads((DIR / f"{name}.toml").read_text(encoding="utf-8"))


def _profile(name: str) -> dict:
    """The profile's parsed file (shared: not to be changed); a ConfigError naming the profiles there are."""
    if name not in _names():
        raise ConfigError(f"profile {name}: one of {', '.join(_names())}")
    return _read(name)


def load(name: str) -> dict:
    """The profile's file as a dict (a fresh copy each call); a ConfigError naming the profiles there are."""
    return copy.deepcopy(_profile(name))


def sensors(name: str) -> tuple:
    """The profile's sensor parts, in the file's order (the order the node reads them)."""
    return tuple(s["part"] for s in _profile(name)["sensors"])


def metrics(name: str) -> tuple:
    """The metrics a node of the profile sends in each reading, in the order of its rows (the sensors in
    the file's order, each sensor's metrics in its order). The battery voltage and the signal are not among
    them: a node sends those in its status."""
    return tuple(m for s in _profile(name)["sensors"] for m in s["metrics"])


def pins(name: str) -> dict:
    return dict(_profile(name)["pins"])
