"""`rimba node flash`: the exact step plan, clear errors for the serial port, and the upload step run for real:
mpremote over a pseudo-terminal to the MicroPython unix port standing in for the board."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
import tty
from pathlib import Path

from hardware import bundle, flash
from rimba.dev.hostnode import micropython
from rimba.dev.harness import ROOT, env_for


def test_the_plan_is_exact(tmp_path):
    b = tmp_path / "b"
    steps = flash.plan("smp29-01", "/dev/ttyUSB0", b, "/fw/esp32.bin")
    argv = [[Path(a).name if a.startswith("/") and a.endswith(("esptool", "mpremote")) else a for a in s.argv]
            for s in steps]
    assert [s.what for s in steps] == ["erase the flash", "write MicroPython", "copy the firmware and the node's config",
                                       "reset the board"]
    assert argv == [
        ["esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "erase-flash"],
        ["esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800", "write-flash", "-z", "0x1000",
         "/fw/esp32.bin"],
        ["mpremote", "connect", "/dev/ttyUSB0", "resume", "fs", "cp", "-r", str(b / "fw"), str(b / "data"), str(b / "loader.mpy"),
         str(b / "main.py"), ":"],
        ["mpremote", "connect", "/dev/ttyUSB0", "reset"],
    ]
    assert [s.what for s in flash.plan("n", "/dev/ttyACM0", b, None)][0].startswith("copy")  # MicroPython kept


def run(args, values):
    return subprocess.run([sys.executable, "-m", "rimba", "node", "flash", *args], env=env_for(values),
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_dry_run_prints_every_step_and_port_problems_are_one_line(tmp_path):
    values = {"fleet": str(ROOT / "fleet.toml"), "state_dir": str(tmp_path)}
    r = run(["smp29-01", "--port", "/dev/ttyUSB0", "--dry-run"], values)
    assert r.returncode == 0 and "1. copy the firmware" in r.stdout and "first reading" in r.stdout
    r = run(["smp29-01", "--port", str(tmp_path / "ttyUSB7")], values)
    assert r.returncode == 2 and "no serial port" in r.stderr and r.stderr.count("\n") == 1
    plain = tmp_path / "not-a-tty"
    plain.write_text("")
    r = run(["smp29-01", "--port", str(plain)], values)
    assert r.returncode == 2 and "not a serial port" in r.stderr
    master, slave = pty.openpty()
    import fcntl
    port = os.ttyname(slave)
    holder = os.open(port, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another program holds it
    try:
        r = run(["smp29-01", "--port", port], values)
        assert r.returncode == 2 and "busy" in r.stderr and r.stderr.count("\n") == 1
    finally:
        os.close(holder)
        os.close(master)
        os.close(slave)
    r = run(["nobody", "--port", "/dev/ttyUSB0", "--dry-run"], values)
    assert r.returncode == 2 and "not in the fleet file" in r.stderr


class FakeBoard:
    """The MicroPython unix port on one pseudo-terminal, relayed to a second whose path mpremote opens: a serial
    port with a MicroPython REPL behind it. The unix port's working folder stands in for the board's flash."""

    def __init__(self, folder: Path):
        self.a_master, a_slave = pty.openpty()
        self.b_master, self.b_slave = pty.openpty()
        tty.setraw(a_slave)
        tty.setraw(self.b_slave)
        self.proc = subprocess.Popen([micropython(), "-i"], stdin=a_slave, stdout=a_slave, stderr=a_slave,
                                     cwd=folder, close_fds=True)
        os.close(a_slave)
        self.port = os.ttyname(self.b_slave)
        self.stop = threading.Event()
        self.relay = threading.Thread(target=self._relay, daemon=True)
        self.relay.start()

    def _relay(self):
        while not self.stop.is_set():
            ready, _, _ = select.select([self.a_master, self.b_master], [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                os.write(self.b_master if fd == self.a_master else self.a_master, data)

    def close(self):
        """Leave the REPL as a person would (Ctrl-D: the unix port exits, its files closed), then stop the relay
        before its descriptors are closed under it."""
        try:
            os.write(self.a_master, b"\r\x04")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.stop.set()
        self.relay.join(timeout=5)
        for fd in (self.a_master, self.b_master, self.b_slave):
            os.close(fd)


def test_the_upload_step_copies_the_bundle_through_mpremote(tmp_path):
    from rimba import settings as settings_mod
    from rimba.fleet import load_fleet

    s = settings_mod.build(overrides={"fleet": str(ROOT / "fleet.toml")}, env={})
    b = tmp_path / "bundle"
    bundle.build(b, bundle.node_config(s, load_fleet(s.fleet), "bansir-laut-01"))
    board_fs = tmp_path / "board"
    board_fs.mkdir()
    board = FakeBoard(board_fs)
    try:
        copy = flash.plan("bansir-laut-01", board.port, b, None)[0]
        argv = copy.argv[:-1] + [":."]  # the unix port's root is the host's: its working folder stands in
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        board.close()
    sent = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    got = sorted(str(p.relative_to(board_fs)) for p in board_fs.rglob("*") if p.is_file())
    assert got == sent and len(got) >= 15
    assert all((board_fs / f).read_bytes() == (b / f).read_bytes() for f in sent)
    assert json.loads((board_fs / "data" / "node.json").read_text())["node"] == "bansir-laut-01"
