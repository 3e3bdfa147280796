"""The server programs the platform runs beside it (Mosquitto, influxd): found on PATH or where Debian puts
them, with a one-line fix when missing."""

from __future__ import annotations

import os
import shutil

from rimba.errors import StackError

_INSTALL_HINT = {
    "mosquitto": "sudo apt-get install mosquitto",
    "influxd": "sudo apt-get install influxdb",
}


def find_binary(name: str, search_path: str | None = None) -> str:
    """The server binary, on PATH or where Debian puts it; a one-line fix when missing."""
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
    found = shutil.which(name, path=search_path)
    if found:
        return found
    raise StackError(f"{name} is not installed: run `{_INSTALL_HINT[name]}` (or ./dev demo, which installs it)")
