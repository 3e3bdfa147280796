"""Provisioning: nodes in the fleet file, their broker credentials and the broker's ACL.

`rimba node add --site smp29 --profile forest` registers the node in the fleet file, gives it a random
password (printed once, stored only as a hash in the broker's password file and in the node's own
config file under the state directory, which is never committed), regenerates the ACL and writes
the node's config file for flashing. `rimba node remove` takes it out of all three. The platform's
services have their own users: `rimba-ingest` (reads every node's `up` and `status`, writes `ack`),
`rimba-analyze` (writes `alert`, reads `ack` for overdue checks), `rimba-sim` (the simulator: speaks
for every node) and `rimba-admin` (writes `config`).

Files, under `<state_dir>/broker/`: `passwd` (Mosquitto's format: `user:$7$101$salt$hash`,
PBKDF2-SHA512 with 101 iterations, as `mosquitto_passwd` writes), `acl` (a node publishes only its own
`up` and `status` and reads only its own `ack` and `config`), `secrets.json` (the services' passwords,
mode 600). A running broker rereads them on SIGHUP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

from rimba import names
from rimba.errors import ConfigError
from rimba.fleet import load_fleet
from rimba.settings import OPTIONS
from rimba.stack import INFLUX_GRANTS

SERVICES = {
    "rimba-ingest": ("read rimba/v1/+/+/up", "read rimba/v1/+/+/status", "write rimba/v1/+/+/ack"),
    "rimba-analyze": ("write rimba/v1/+/alert", "read rimba/v1/+/+/ack", "read rimba/v1/+/+/status"),
    "rimba-sim": ("write rimba/v1/+/+/up", "write rimba/v1/+/+/status", "read rimba/v1/+/+/ack",
                  "read rimba/v1/+/+/config"),
    "rimba-admin": ("write rimba/v1/+/+/config", "read rimba/v1/#"),
}
PROFILES = ("forest", "river", "air")


def hash_password(password: str, salt: bytes | None = None, iterations: int = 101) -> str:
    """Mosquitto 2's password hash: $7$iterations$base64(salt)$base64(PBKDF2-HMAC-SHA512(password, salt))."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class Provisioner:
    def __init__(self, settings):
        self.settings = settings
        self.fleet_path = Path(settings.fleet)
        self.dir = settings.state_path / "broker"
        self.nodes_dir = settings.state_path / "nodes"

    # -- the broker's files ----------------------------------------------------------------------------
    def _secrets(self) -> dict:
        path = self.dir / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        self.dir.mkdir(parents=True, exist_ok=True)
        values = {user: secrets.token_urlsafe(18) for user in SERVICES}
        _write_private(path, json.dumps(values, indent=1) + "\n")
        return values

    def service_password(self, user: str) -> str:
        return self._secrets()[user]

    def _hashes(self) -> dict:
        path = self.dir / "passwd"
        out = {}
        if path.exists():
            for line in path.read_text().splitlines():
                user, _, h = line.partition(":")
                if user and h:
                    out[user] = h
        return out

    def write_files(self, hashes: dict | None = None) -> None:
        """Regenerate passwd (services and the fleet's provisioned nodes) and the ACL from the fleet file."""
        fleet = load_fleet(self.fleet_path)
        known = self._hashes() if hashes is None else hashes
        for user, pw in self._secrets().items():
            if user not in known:
                known[user] = hash_password(pw)
        keep = {u: h for u, h in known.items() if u in SERVICES or u in fleet.nodes}
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.dir / "passwd", "".join(f"{u}:{h}\n" for u, h in sorted(keep.items())))
        lines = ["# Written by rimba (hardware/provision.py) from the fleet file; edits are overwritten.", ""]
        for user, rules in SERVICES.items():
            lines += [f"user {user}", *(f"topic {r}" for r in rules), ""]
        for node in sorted(fleet.nodes.values(), key=lambda n: n.id):
            if node.id not in keep:
                continue
            base = f"rimba/v1/{node.site}/{node.id}"
            lines += [f"user {node.id}", f"topic write {base}/up", f"topic write {base}/status",
                      f"topic read {base}/ack", f"topic read {base}/config", ""]
        (self.dir / "acl").write_text("\n".join(lines))

    # -- nodes ---------------------------------------------------------------------------------------
    def add(self, site: str, profile: str, node_id: str | None = None, cadence_s: int = 600) -> tuple:
        """Register a node; return (node id, its password). The password is not kept in the clear except in
        the node's own config file (mode 600, under the state directory)."""
        fleet = load_fleet(self.fleet_path)
        if site not in fleet.sites:
            raise ConfigError(f"--site {site}: not in the fleet file; sites are {', '.join(sorted(fleet.sites))}")
        if profile not in PROFILES:
            raise ConfigError(f"--profile {profile}: one of {', '.join(PROFILES)}")
        if node_id is None:
            taken = {n for n in fleet.nodes}
            node_id = next(f"{site}-{i:02d}" for i in range(1, 1000) if f"{site}-{i:02d}" not in taken)
        elif node_id in fleet.nodes:
            raise ConfigError(f"node {node_id} is already in the fleet file; `rimba node remove {node_id}` first")
        if not names.is_name(node_id) or node_id in SERVICES:
            raise ConfigError(f"node id {node_id!r}: lowercase letters, digits and '-', at most 32 characters")
        with self.fleet_path.open("a", encoding="utf-8") as f:
            f.write(f'\n[nodes.{node_id}]\nsite = "{site}"\nprofile = "{profile}"\ncadence_s = {int(cadence_s)}\n')
        return node_id, self.credentials(node_id, fresh=True)

    def credentials(self, node_id: str, fresh: bool = False) -> str:
        """The broker password of a node in the fleet file: the one in its config file, or (`fresh`, or none
        yet) a new one, hashed into the password file, with the node's config file and label written."""
        path = self.nodes_dir / f"{node_id}.json"
        if not fresh and path.exists() and node_id in self._hashes():
            return json.loads(path.read_text())["mqtt_password"]
        fleet = load_fleet(self.fleet_path)
        if node_id not in fleet.nodes:
            raise ConfigError(f"node {node_id} is not in the fleet file; `rimba node add` registers it")
        password = secrets.token_urlsafe(18)
        hashes = self._hashes()
        hashes[node_id] = hash_password(password)
        self.write_files(hashes)
        from hardware.bundle import node_config

        node = fleet.nodes[node_id]
        cfg = node_config(self.settings, fleet, node_id, mqtt_password=password)
        self.nodes_dir.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(cfg, indent=1, sort_keys=True) + "\n")
        self.label(node_id, node.site, node.profile)
        return password

    def label(self, node_id: str, site: str, profile: str) -> Path:
        """A label for the enclosure: a QR code of the node id and site (what a technician scans in the field to
        open the node's page) and the same in words. SVG, beside the node's config file."""
        import segno

        qr = segno.make(json.dumps({"node": node_id, "site": site}, separators=(",", ":")), error="m")
        code = qr.svg_inline(scale=4, border=2)
        size = qr.symbol_size(scale=4, border=2)
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size[0] + 220}" height="{max(size[1], 90)}" '
               f'font-family="sans-serif"><g>{code}</g>'
               f'<text x="{size[0] + 10}" y="30" font-size="20" font-weight="bold">{node_id}</text>'
               f'<text x="{size[0] + 10}" y="55" font-size="14">{site} · {profile}</text>'
               f'<text x="{size[0] + 10}" y="78" font-size="11">Rimba · jangan dibuka / do not open</text></svg>\n')
        path = self.nodes_dir / f"{node_id}-label.svg"
        path.write_text(svg, encoding="utf-8")
        return path

    def remove(self, node_id: str) -> None:
        text = self.fleet_path.read_text(encoding="utf-8")
        pattern = re.compile(rf"\n?\[nodes\.{re.escape(node_id)}\]\n(?:(?!\[)[^\n]*\n?)*")
        if not pattern.search(text):
            raise ConfigError(f"node {node_id} is not in the fleet file; `rimba node list` shows the nodes")
        self.fleet_path.write_text(pattern.sub("\n", text, count=1), encoding="utf-8")
        hashes = self._hashes()
        hashes.pop(node_id, None)
        self.write_files(hashes)
        (self.nodes_dir / f"{node_id}.json").unlink(missing_ok=True)

    def list(self) -> list:
        fleet = load_fleet(self.fleet_path)
        hashes = self._hashes()
        return [(n.id, n.site, n.profile, n.cadence_s, n.id in hashes) for n in sorted(fleet.nodes.values(),
                                                                                      key=lambda n: n.id)]


# Who each part of the platform is: its broker user and its InfluxDB role. Ingest only writes readings;
# the analytics reads them and writes flags, indices and alerts; the viewer (Grafana, the reports, the
# demo's terminal view) only reads.
SERVICE_USERS = {"ingest": ("rimba-ingest", "writer"), "analyze": ("rimba-analyze", "analyst"),
                 "sim": ("rimba-sim", None), "admin": ("rimba-admin", None), "viewer": (None, "reader")}


def lock_influx(settings) -> dict:
    """Users for the stack's InfluxDB, {role: [user, password]}: an admin, a writer (ingest), an analyst
    (the analytics: reads and writes the database) and a reader (Grafana, reports). Made once; a role
    added later is added to the file."""
    path = settings.state_path / "broker" / "influx.json"
    users = json.loads(path.read_text()) if path.exists() else {}
    roles = ("admin", *INFLUX_GRANTS)
    if set(users) >= set(roles):
        return users
    for role in roles:
        users.setdefault(role, [f"rimba-{role}", secrets.token_urlsafe(18)])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, json.dumps(users, indent=1) + "\n")
    return users


def service_env(settings, service: str) -> dict:
    """The RIMBA_* variables that make `service` (a key of SERVICE_USERS) log in as itself; {} while the
    stack is open (`rimba stack lock` not run)."""
    broker_dir = settings.state_path / "broker"
    mqtt_user, role = SERVICE_USERS[service]
    env = {}
    if mqtt_user and (broker_dir / "secrets.json").exists():
        env.update(RIMBA_MQTT_USER=mqtt_user,
                   RIMBA_MQTT_PASSWORD=json.loads((broker_dir / "secrets.json").read_text())[mqtt_user])
    if role and (broker_dir / "influx.json").exists():
        user, password = json.loads((broker_dir / "influx.json").read_text())[role]
        env.update(RIMBA_INFLUX_USER=user, RIMBA_INFLUX_PASSWORD=password)
    return env


def as_service(settings, service: str):
    """These settings, logged in as `service`."""
    env = service_env(settings, service)
    return settings.with_(**{o.key: env[o.env] for o in OPTIONS if o.env in env})


def write_env_files(settings) -> list:
    """One env file per service (mode 600) under `<state>/broker/env/`, for compose's `env_file` and the
    systemd units' `EnvironmentFile`; plus `influxdb.env`, which makes the InfluxDB 1.x image create the
    same users on its first start."""
    users = lock_influx(settings)  # made first: the services' files name these users
    out = settings.state_path / "broker" / "env"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for service in SERVICE_USERS:
        env = service_env(settings, service)
        path = out / f"{service}.env"
        _write_private(path, f"# {service}: written by `rimba stack lock`; never commit.\n"
                       + "".join(f"{k}={v}\n" for k, v in env.items()))
        written.append(path)
    image = {"INFLUXDB_HTTP_AUTH_ENABLED": "true", "INFLUXDB_DB": settings.influx_db,
             "INFLUXDB_ADMIN_USER": users["admin"][0], "INFLUXDB_ADMIN_PASSWORD": users["admin"][1],
             "INFLUXDB_WRITE_USER": users["writer"][0], "INFLUXDB_WRITE_USER_PASSWORD": users["writer"][1],
             "INFLUXDB_USER": users["analyst"][0], "INFLUXDB_USER_PASSWORD": users["analyst"][1],
             "INFLUXDB_READ_USER": users["reader"][0], "INFLUXDB_READ_USER_PASSWORD": users["reader"][1]}
    path = out / "influxdb.env"
    _write_private(path, "# the influxdb:1.8 image's users: written by `rimba stack lock`; never commit.\n"
                   + "".join(f"{k}={v}\n" for k, v in image.items()))
    written.append(path)
    return written


def lock(settings) -> list:
    """`rimba stack lock`: broker users and ACL, InfluxDB users, the services' env files. Idempotent:
    existing passwords are kept."""
    Provisioner(settings).write_files()
    return write_env_files(settings)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def reload_broker(settings) -> bool:
    """Ask the stack's running Mosquitto to reread its password file and ACL (SIGHUP)."""
    import signal

    from rimba.stack import Stack

    pid = Stack.from_settings(settings).mosquitto.pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    return True
