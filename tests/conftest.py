"""The test session starts its own Mosquitto and InfluxDB on free loopback ports.

Each test that needs them gets its own database, state directory, MQTT client
id and node names (the `platform` fixture), so tests do not see each other's data.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from hypothesis import settings as hypothesis_settings

from rimba import settings as settings_mod
from rimba.adapters.influx import Influx
from rimba.dev.stack import Stack, free_port
from rimba.dev.harness import IngestProcess, env_for, fleet_text


def pytest_collection_modifyitems(items):
    """A test not marked `unit` is an integration test: `./dev test -m unit` and `-m integration` split the
    suite in two, and together they are all of it."""
    for item in items:
        if item.get_closest_marker("unit") is None:
            item.add_marker(pytest.mark.integration)

_counter = itertools.count(1)

# the suite checks the same generated examples on every run (a test that fails one run in ten is a
# defect); `python -m bench.fuzz` explores with fresh randomness
hypothesis_settings.register_profile("rimba", derandomize=True, database=None, deadline=None, print_blob=True)
hypothesis_settings.load_profile("rimba")


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"), free_port(), free_port())
    s.up()
    yield s
    s.down()


class Platform:
    """Settings, a fleet file and helpers for one test, on the session's stack."""

    def __init__(self, stack: Stack, tmp_path, fleet_text: str):
        n = next(_counter)
        self.stack = stack
        self.tmp = tmp_path
        self.fleet_path = tmp_path / "fleet.toml"
        self.fleet_path.write_text(fleet_text)
        self.values = {
            "mqtt_url": stack.mqtt_url, "influx_url": stack.influx_url, "influx_db": f"t{n}",
            "state_dir": str(tmp_path / "state"), "fleet": str(self.fleet_path),
            "mqtt_client_id": f"ingest-t{n}", "stats_every_s": 1, "flush_ms": 20,
        }
        self.settings = settings_mod.build(overrides=self.values, env={})
        self.influx = Influx(stack.influx_url, self.values["influx_db"])
        self.influx.create_database()
        self.procs: list[IngestProcess] = []

    def ingest(self, **over) -> IngestProcess:
        values = dict(self.values, **over)
        p = IngestProcess(env_for(values), self.tmp / f"ingest-{self.values['influx_db']}-{len(self.procs)}.log").start()
        self.procs.append(p)
        return p.wait_subscribed()

    def count(self, q: str = "SELECT count(seq) FROM reading") -> int:
        rows = self.influx.rows(q)
        return rows[0]["count"] if rows else 0

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        self._forget_sessions()
        self._clear_retained()
        self.influx.query(f'DROP DATABASE "{self.values["influx_db"]}"')
        self.influx.close()

    def _clear_retained(self) -> None:
        """Clear what this test left retained for its nodes (status, ack, config): the broker is shared, and
        a later test's ingest would otherwise receive them as messages from nodes it does not know."""
        from rimba.fleet import load_fleet
        from rimba.adapters.mqtt import Mqtt

        fleet = load_fleet(self.fleet_path)
        m = Mqtt(self.settings.broker, f"clear-{self.values['influx_db']}", v5=False, persistent=False).start()
        try:
            mids = [m.publish(f"rimba/v{v}/{n.site}/{n.id}/{kind}", b"", qos=1, retain=True)
                    for v in (1, 2) for n in fleet.nodes.values() for kind in ("status", "ack", "config")]
            m.wait_published(mids, timeout=10)
        finally:
            m.stop()

    def _forget_sessions(self) -> None:
        """Remove the ingest's persistent sessions from the broker (a clean-session connect)."""
        from rimba.adapters.mqtt import Mqtt

        for p in self.procs:
            cid = p.env["RIMBA_MQTT_CLIENT_ID"]
            m = Mqtt(self.settings.broker, cid, v5=False, persistent=False)
            m.start()
            m.stop()


@pytest.fixture
def platform_factory(stack, tmp_path):
    made = []

    def make(nodes: dict) -> Platform:
        p = Platform(stack, tmp_path, fleet_text(nodes))
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# --- receivers for alerts: a local SMTP server and a webhook endpoint ---


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"


@pytest.fixture
def smtp():
    box = Mailbox()
    c = Controller(box, hostname="127.0.0.1", port=free_port())
    c.start()
    box.url = f"mailto://127.0.0.1:{c.port}?from=rimba@example.org&to=officer@example.org"
    yield box
    c.stop()


@pytest.fixture
def webhook():
    posts = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.posts = posts
    srv.url = f"json://127.0.0.1:{srv.server_port}/hook"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="session")
def compiled(tmp_path_factory):
    """The firmware as the device loads it: every module compiled with mpy-cross, main.py as source."""
    from rimba.dev.hostnode import compile_firmware

    return compile_firmware(tmp_path_factory.mktemp("fw"))


@pytest.fixture(scope="session")
def heap(compiled):
    """96 KiB for the firmware, plus what the compiled fakes themselves take: on the board `machine`,
    `network` and `esp32` are C in flash, not heap, so their code must not eat the firmware's 96 KiB."""
    from rimba.dev.hostnode import heap_for

    return heap_for(compiled)
