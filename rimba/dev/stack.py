"""The local stack: Mosquitto and InfluxDB run as Rimba's own processes.

Configuration files are written under `<state_dir>/stack/`, data lives beside
them, both servers listen on loopback only, and `up` returns only once both
answer. The demo, the tests and the benchmarks run on it, and so do the commands that manage it on a
development or single-machine setup (`rimba stack`, `rimba node add`'s broker reload, a restore into it).
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rimba import access
from rimba.adapters.influx import json_error
from rimba.adapters.servers import find_binary
from rimba.errors import StackError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def mqtt_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an MQTT broker answers CONNECT with a CONNACK (any return code)."""
    connect = b"\x10\x12\x00\x04MQTT\x04\x02\x00\x05\x00\x06rimba?"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(connect)
            return s.recv(4)[:1] == b"\x20"
    except OSError:
        return False


def influx_answers(base_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/ping", timeout=timeout) as r:
            return r.status == 204
    except (OSError, urllib.error.URLError):
        return False


def _poll(check, deadline_s: float, what: str, proc: Service) -> None:
    deadline = time.monotonic() + deadline_s
    delay = 0.02
    while time.monotonic() < deadline:
        if check():
            return
        if not proc.running():
            raise StackError(f"{what} exited during start-up; see {proc.log}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    raise StackError(f"{what} did not answer within {deadline_s:.0f} s; see {proc.log}")


@dataclass
class Service:
    name: str
    dir: Path

    @property
    def pidfile(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: list[str], fingerprint: str = "") -> None:
        """Start unless running; a running one started with another `fingerprint` (its configuration:
        say, the stack was locked since) is restarted."""
        stamp = self.dir / f"{self.name}.config"
        if self.running():
            if not stamp.exists() or stamp.read_text() == fingerprint:
                return
            self.stop()
        stamp.write_text(fingerprint)
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.dir)
        self.pidfile.write_text(str(proc.pid))

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            _reap(pid)
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Stack:
    """Mosquitto on `mqtt_port` and InfluxDB on `influx_port`, data under `state_dir/stack`."""

    def __init__(self, state_dir: str | os.PathLike, mqtt_port: int = 1883, influx_port: int = 8086,
                 host: str = "127.0.0.1", database: str = "rimba", tls_port: int | None = None):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise StackError(f"the local stack listens on loopback only, not {host}")
        self.dir = Path(state_dir) / "stack"
        self.auth_dir = access.broker_dir(state_dir)  # passwd and acl from `rimba node add`: then no anonymous access
        self.tls_port = tls_port  # with server.crt from `rimba broker tls`: a TLS listener here too
        self.host = "127.0.0.1" if host == "localhost" else host
        self.mqtt_port = mqtt_port
        self.influx_port = influx_port
        self.database = database
        self.mosquitto = Service("mosquitto", self.dir)
        self.influxd = Service("influxd", self.dir)

    @classmethod
    def from_settings(cls, settings) -> Stack:
        b = settings.broker
        influx = urllib.parse.urlsplit(settings.influx_url)
        return cls(settings.state_path, b.port, influx.port or 8086, b.host, settings.influx_db,
                   settings.broker_tls_port)

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.host}:{self.mqtt_port}"

    @property
    def influx_url(self) -> str:
        return f"http://{self.host}:{self.influx_port}"

    @property
    def rpc_address(self) -> str:
        """host:port of InfluxDB's backup RPC: a free loopback port, chosen once and kept in the stack's
        folder, so that `rimba backup` finds the server that is running."""
        path = self.dir / "influxd.rpc"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.dir.mkdir(parents=True, exist_ok=True)
        address = f"{self.host}:{free_port(self.host)}"
        path.write_text(address + "\n")
        return address

    # -- configuration -------------------------------------------------------------------------
    def _write_mosquitto_conf(self) -> Path:
        data = self.dir / "mosquitto-data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "# Written by `rimba stack up`; edits are overwritten.\n"
            f"listener {self.mqtt_port} {self.host}\n"
            + self._identity() + self._access() +
            f"user {getpass.getuser()}\n"
            "# Queued QoS 1 messages survive a restart.\n"
            "persistence true\n"
            f"persistence_location {data}/\n"
            "autosave_interval 5\n"
            "# Never drop a queued message: no count or byte limit on a client's queue.\n"
            "max_queued_messages 0\n"
            "max_queued_bytes 0\n"
            "# Large in-flight window for MQTT 3.1.1 clients (MQTT 5 clients set Receive Maximum).\n"
            "max_inflight_messages 2000\n"
            "max_packet_size 1048576\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "connection_messages false\n"
            + self._tls_listener()
        )
        return conf

    def _tls_listener(self) -> str:
        d = self.auth_dir
        if self.tls_port is None or not (d / "server.crt").exists():
            return ""
        return (f"# TLS with the project's CA (`rimba broker tls`)\nlistener {self.tls_port} {self.host}\n"
                + self._identity() + f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
                "tls_version tlsv1.2\n")

    def _locked(self) -> bool:
        return (self.auth_dir / "passwd").exists() and (self.auth_dir / "acl").exists()

    def _identity(self) -> str:
        """For a listener of the locked broker: the client id is the user name, whatever the client asks for,
        so a node cannot take over the session of ingest or of another node (it only replaces its own
        connection). In Mosquitto 2.0 this is a listener's option (mosquitto.conf(5), "Listeners"): it
        follows each `listener` line; before the first, it would open a default listener on 1883 instead."""
        return "use_username_as_clientid true\n" if self._locked() else ""

    def _access(self) -> str:
        passwd, acl = self.auth_dir / "passwd", self.auth_dir / "acl"
        if self._locked():
            return (f"# Per-node users and the ACL (`rimba node add`): nobody anonymous.\nallow_anonymous false\n"
                    f"password_file {passwd}\nacl_file {acl}\n")
        return "allow_anonymous true\n"

    def _write_influx_conf(self) -> Path:
        base = self.dir / "influxdb-data"
        conf = self.dir / "influxdb.conf"
        conf.write_text(
            "# Written by `rimba stack up`; edits are overwritten.\n"
            "reporting-disabled = true\n"
            "# The backup and restore RPC (`rimba backup`): it has no authentication, so loopback only.\n"
            f'bind-address = "{self.rpc_address}"\n'
            f'[meta]\n  dir = "{base}/meta"\n  logging-enabled = false\n'
            f'[data]\n  dir = "{base}/data"\n  wal-dir = "{base}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "{self.host}:{self.influx_port}"\n  log-enabled = false\n'
            "  max-body-size = 0\n"
            # 1.6 has no pprof-auth-enabled (1.7.9 and later do) and serves /debug/vars and
            # /debug/requests to anyone whatever this says; loopback is what protects them.
            "  pprof-enabled = false\n"
            + ("  auth-enabled = true\n" if self.influx_users() else "")
            + "[monitor]\n  store-enabled = false\n"
            "[logging]\n  level = \"warn\"\n"
        )
        return conf

    # -- lifecycle -----------------------------------------------------------------------------
    def start_mosquitto(self, timeout: float = 20.0) -> None:
        binary = find_binary("mosquitto")
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self._write_mosquitto_conf()
        self.mosquitto.start([binary, "-c", str(conf)], conf.read_text())
        _poll(lambda: mqtt_answers(self.host, self.mqtt_port), timeout, "mosquitto", self.mosquitto)

    def start_influx(self, timeout: float = 60.0) -> None:
        binary = find_binary("influxd")
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self._write_influx_conf()
        self.influxd.start([binary, "-config", str(conf)],
                           "".join(line for line in conf.read_text().splitlines(True)
                                   if line.startswith(("  auth", "  pprof", "bind-address"))))
        _poll(lambda: influx_answers(self.influx_url), timeout, "influxd", self.influxd)
        self.create_database()

    def influx_users(self) -> dict:
        """{admin, writer, analyst, reader: (user, password)} once `rimba stack lock` made them; {} for an open database."""
        return {k: tuple(v) for k, v in access.influx_users(self.auth_dir.parent).items()}

    def query(self, q: str, auth: tuple | None = None, db: str | None = None) -> dict:
        import base64
        import json

        form = {"q": q, **({"db": db} if db else {})}
        req = urllib.request.Request(self.influx_url + "/query", data=urllib.parse.urlencode(form).encode())
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def create_database(self) -> None:
        users = self.influx_users()
        try:
            if users:
                admin = users["admin"]
                try:  # the first user may be made without credentials; afterwards it is there
                    self.query(f"CREATE USER \"{admin[0]}\" WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES")
                except urllib.error.HTTPError:
                    pass
                self.query(f'CREATE DATABASE "{self.database}"', admin)
                for role, grant in access.INFLUX_GRANTS.items():
                    if role not in users:
                        continue
                    user, pw = users[role]
                    result = self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{pw}'", admin)
                    if "already exists" in json_error(result):
                        self.query(f"SET PASSWORD FOR \"{user}\" = '{pw}'", admin)
                    self.query(f'GRANT {grant} ON "{self.database}" TO "{user}"', admin)
            else:
                self.query(f'CREATE DATABASE "{self.database}"')
        except (OSError, urllib.error.URLError) as err:
            raise StackError(f"influxd is up but setting up the database failed: {err}") from err

    def up(self) -> None:
        for port, what in ((self.mqtt_port, "mosquitto"), (self.influx_port, "influxd")):
            service = self.mosquitto if what == "mosquitto" else self.influxd
            if not service.running() and _port_taken(self.host, port):
                raise StackError(f"port {port} for {what} is taken by another program: choose another "
                                 f"(RIMBA_{'MQTT' if what == 'mosquitto' else 'INFLUX'}_URL)")
        self.start_mosquitto()
        self.start_influx()

    def stop_mosquitto(self, sig=signal.SIGTERM) -> None:
        self.mosquitto.stop(sig)

    def stop_influx(self, sig=signal.SIGTERM) -> None:
        self.influxd.stop(sig)

    def down(self) -> None:
        self.stop_mosquitto()
        self.stop_influx()

    def status(self) -> dict:
        return {
            "mosquitto": {"pid": self.mosquitto.pid(), "url": self.mqtt_url,
                          "answers": mqtt_answers(self.host, self.mqtt_port)},
            "influxd": {"pid": self.influxd.pid(), "url": self.influx_url,
                        "answers": influx_answers(self.influx_url)},
        }


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def reload_broker(settings) -> bool:
    """Ask the stack's running Mosquitto to reread its password file and ACL (SIGHUP); False when none runs."""
    pid = Stack.from_settings(settings).mosquitto.pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    return True
