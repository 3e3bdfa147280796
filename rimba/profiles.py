"""Node profiles: which sensors a node has, on which pins, and which metrics it sends.

The one source is `hardware/profiles/<name>.toml` (board, pins, sensors with their metrics, power,
enclosure, bill of materials). Everything on the platform reads it here: the fleet file's check, the
simulator, the dashboards' panels, the energy model, provisioning; the node gets the same facts as a
generated block of `firmware/lib/sensors.py` (`python -m hardware.profiles`; a test holds it to the files).
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from rimba.errors import ConfigError

DIR = Path(__file__).resolve().parents[1] / "hardware" / "profiles"


def names() -> list:
    return sorted(p.stem for p in DIR.glob("*.toml"))


@functools.cache
def _read(name: str) -> dict:
    return tomllib.loads((DIR / f"{name}.toml").read_text(encoding="utf-8"))


def load(name: str) -> dict:
    """The profile's file as a dict (a fresh copy each call); a ConfigError naming the profiles there are."""
    if name not in names():
        raise ConfigError(f"profile {name}: one of {', '.join(names())}")
    import copy

    return copy.deepcopy(_read(name))


def sensors(name: str) -> tuple:
    """The profile's sensor parts, in the file's order (the order the node reads them)."""
    load(name)
    return tuple(s["part"] for s in _read(name)["sensors"])


def metrics(name: str) -> tuple:
    """The metrics a node of the profile sends in each reading, in the order of its rows (the sensors in
    the file's order, each sensor's metrics in its order). The battery voltage and the signal are not among
    them: a node sends those in its status."""
    load(name)
    return tuple(m for s in _read(name)["sensors"] for m in s["metrics"])


def pins(name: str) -> dict:
    load(name)
    return dict(_read(name)["pins"])
