"""`rimba node flash NODE --port /dev/ttyUSB0 [--firmware FILE.bin] [--dry-run]`.

The plan, each step a command a technician could type: erase the flash and write MicroPython (esptool),
copy the compiled firmware, `main.py` and the node's config file onto the board (mpremote), reset it,
then wait for the node's first reading to arrive in InfluxDB and show it ("first reading OK"). A node
powered on (not woken from deep sleep) sends at once, so the answer comes within a minute. `--dry-run`
prints the plan and runs nothing. A port that does not exist, or that another program holds, gives
one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

from rimba.errors import ConfigError


@dataclass
class Step:
    what: str
    argv: list


def _tool(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name) or name


def plan(node: str, port: str, bundle: Path, firmware: str | None) -> list:
    """The steps for a node whose bundle (rimba firmware bundle) is in `bundle`."""
    steps = []
    if firmware:
        esptool = _tool("esptool")
        steps += [Step("erase the flash", [esptool, "--chip", "esp32", "--port", port, "erase-flash"]),
                  Step("write MicroPython", [esptool, "--chip", "esp32", "--port", port, "--baud", "460800",
                                             "write-flash", "-z", "0x1000", firmware])]
    mp = [_tool("mpremote"), "connect", port, "resume"]  # no soft reset: an old main.py could start sleeping
    parts = [str(bundle / name) for name in ("fw", "data", "loader.mpy", "main.py")]
    steps.append(Step("copy the firmware and the node's config", mp + ["fs", "cp", "-r", *parts, ":"]))
    steps.append(Step("reset the board", [_tool("mpremote"), "connect", port, "reset"]))
    return steps


def check_port(port: str) -> None:
    """One line if the port is missing or held by another program."""
    if not os.path.exists(port):
        raise ConfigError(f"no serial port {port}: is the board plugged in? (ls /dev/ttyUSB* /dev/ttyACM*)")
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as err:
        if err.errno in (errno.EBUSY, errno.EACCES, errno.EPERM):
            why = "busy (another program has it open)" if err.errno == errno.EBUSY else \
                "not allowed (add yourself to the dialout group)"
            raise ConfigError(f"serial port {port} is {why}") from None
        raise ConfigError(f"cannot open serial port {port}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"serial port {port} is busy (another program has it locked)") from None
        try:
            termios.tcgetattr(fd)
        except termios.error:
            raise ConfigError(f"{port} is not a serial port") from None
    finally:
        os.close(fd)


def first_reading(settings, node: str, since: float, timeout_s: float) -> dict | None:
    from hardware.provision import as_service
    from rimba.adapters.influx import Influx

    if not (settings.influx_user or settings.influx_token):
        settings = as_service(settings, "viewer")  # the provisioning state's reader, once the stack is locked
    influx = Influx.from_settings(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            rows = influx.rows(f"SELECT * FROM reading WHERE node = '{node}' AND time >= {int(since) - 3600}s "
                               "ORDER BY time DESC LIMIT 1")
            if rows:
                return rows[0]
            time.sleep(2.0)  # noqa: sleep-ok (polling the database for a board's first reading)
    finally:
        influx.close()
    return None


def main(settings, args) -> int:
    from hardware import bundle as bundle_mod
    from rimba.fleet import load_fleet
    from rimba.metrics import METRICS

    fleet = load_fleet(settings.fleet)
    if args.node not in fleet.nodes:
        raise ConfigError(f"node {args.node} is not in the fleet file; rimba node add first")
    if args.firmware and not Path(args.firmware).exists():
        raise ConfigError(f"--firmware {args.firmware}: no such file (MicroPython for ESP32, from micropython.org)")
    config_file = settings.state_path / "nodes" / f"{args.node}.json"
    out = Path(args.bundle or settings.state_path / "bundles" / args.node)
    if config_file.exists():
        import json

        cfg = json.loads(config_file.read_text())
    else:
        cfg = bundle_mod.node_config(settings, fleet, args.node)
    steps = plan(args.node, args.port, out, args.firmware)
    if args.dry_run:
        print(f"would build the bundle for {args.node} in {out}, then:")
        for i, s in enumerate(steps, 1):
            print(f"  {i}. {s.what}: {' '.join(s.argv)}")
        print(f"  {len(steps) + 1}. wait for {args.node}'s first reading in InfluxDB")
        return 0
    check_port(args.port)
    bundle_mod.build(out, cfg, ca_pem=settings.state_path / "broker" / "ca.crt")
    steps = plan(args.node, args.port, out, args.firmware)
    started = time.time()
    for i, s in enumerate(steps, 1):
        print(f"{i}/{len(steps)} {s.what} ...", flush=True)
        r = subprocess.run(s.argv, capture_output=True, text=True, timeout=600, check=False)
        if r.returncode:
            last = (r.stderr or r.stdout).strip().splitlines()
            raise ConfigError(f"{s.what} failed: {last[-1] if last else 'exit ' + str(r.returncode)}")
    if args.no_wait:
        return 0
    print(f"waiting up to {args.wait:.0f} s for {args.node}'s first reading ...", flush=True)
    row = first_reading(settings, args.node, started, args.wait)
    if row is None:
        raise ConfigError(f"no reading from {args.node} within {args.wait:.0f} s: check Wi-Fi and broker settings "
                          f"in {config_file}, and the serial console (mpremote connect {args.port})")
    values = ", ".join(f"{METRICS[k].label_en} {v} {METRICS[k].unit}" for k, v in row.items()
                       if k in METRICS and v is not None)
    print(f"first reading OK: {values}")
    return 0
