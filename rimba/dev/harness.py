"""What the tests and the benchmarks share: the golden vectors, polling with a deadline, `rimba ingest` as a
real process, the environment of a child `rimba`, a fleet file of given nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rimba.errors import StackError
from rimba.fleet import parse_fleet

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "contract-v1.json").read_text(encoding="utf-8"))
VECTOR_FLEET = parse_fleet(VECTORS["fleet"])


def payload_of(vector: dict) -> bytes:
    if "body" in vector:
        return json.dumps(vector["body"], separators=(",", ":"), ensure_ascii=False).encode()
    if "raw" in vector:
        return vector["raw"].encode()
    return bytes.fromhex(vector["hex"])


def wait_until(condition, timeout: float = 30.0, what: str = "condition", interval: float = 0.05):
    """Poll `condition` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)  # noqa: sleep-ok (polling interval of a deadline loop)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


class IngestProcess:
    """`rimba ingest` as a child process with the given environment."""

    def __init__(self, env: dict, log_path: Path, extra_args=()):
        self.env = env
        self.log_path = log_path
        self.extra = list(extra_args)
        self.proc: subprocess.Popen | None = None

    def start(self) -> IngestProcess:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "rimba", "ingest", *self.extra], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def wait_subscribed(self, timeout: float = 30.0) -> IngestProcess:
        """Wait until the ingest's subscriptions stand: from then on the broker queues for it."""
        wait_until(lambda: " ready: " in self.output() or self.proc.poll() is not None, timeout,
                   "ingest to subscribe")
        if self.proc.poll() is not None:
            raise StackError(f"rimba ingest exited with {self.proc.returncode}:\n{self.output()}")
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def env_for(settings_values: dict) -> dict:
    """The environment of a child `rimba` process with these settings (and no RIMBA_* of ours)."""
    from rimba.settings import build

    env = {k: v for k, v in os.environ.items() if not k.startswith("RIMBA_")}
    return {**env, **build(overrides=settings_values, env={}).env(), "PYTHONPATH": str(ROOT)}


FLEET = """
[sites.smp29]
name = "SMP 29"
lat = -0.0263
lon = 109.3425

[sites.bansir-laut]
name = "Bansir Laut"
lat = -0.04
lon = 109.35
"""


def fleet_text(nodes: dict) -> str:
    """A fleet file of the two sites and `nodes` ({node: (site, profile)}), every node every 600 s."""
    out = [FLEET]
    for node, (site, profile) in nodes.items():
        out.append(f'[nodes.{node}]\nsite = "{site}"\nprofile = "{profile}"\ncadence_s = 600\n')
    return "\n".join(out)
