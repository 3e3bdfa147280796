"""The firmware type-checked against micropython-esp32-stubs (the ESP32 port's modules and MicroPython's own
standard library), with mypy. The stubs are written for pyright and trip over mypy in places; what matters
here is that our files have no errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rimba.dev.harness import ROOT

SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))


def _record(dist: str) -> list:
    info = next(SITE.glob(f"{dist}-*.dist-info"), None)
    if info is None:
        pytest.fail(f"{dist} is not installed; ./dev test installs it")
    return [line.split(",")[0] for line in (info / "RECORD").read_text().splitlines()]


def test_firmware_type_checks_against_the_esp32_stubs(tmp_path):
    stubs = tmp_path / "stubs"
    for rel in _record("micropython_esp32_stubs"):
        if rel.endswith(".pyi") and not rel.startswith(("stdlib/", "../")):
            (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SITE / rel, stubs / rel)
    assert (stubs / "machine.pyi").exists() and (SITE / "stdlib" / "VERSIONS").exists()
    lib = ROOT / "firmware" / "lib"
    files = sorted(str(p) for p in lib.glob("*.py")) + [str(ROOT / "firmware" / "main.py")]
    r = subprocess.run([sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(SITE), "--python-version", "3.11",
                        "--check-untyped-defs", "--follow-imports=silent", "--no-error-summary", *files],
                       env={"MYPYPATH": f"{stubs}:{lib}", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                       cwd=lib, timeout=300, check=False)
    ours = [line for line in r.stdout.splitlines() if ": error:" in line and not line.startswith(str(stubs))
            and "/stubs/" not in line]
    assert not ours, "\n".join(ours)
    assert "error" in r.stdout or r.returncode == 0  # it ran (the stubs' own complaints are expected)
