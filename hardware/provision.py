"""Provisioning: nodes in the fleet file, their broker credentials and the broker's ACL.

`rimba node add --site smp29 --profile forest` registers the node in the fleet file, gives it a random
password (printed once, stored only as a hash in the broker's password file and in the node's own
config file under the state directory, which is never committed), regenerates the ACL and writes
the node's config file for flashing, with the node's update key (`fw_key`: 32 random bytes in hex, which
signs the firmware releases offered to it; never printed, never sent over the air). `rimba node remove`
takes it out of all three, and its key with its config file. The platform's
services have their own users: one per ingest process, `rimba-ingest-1` ... `rimba-ingest-N` (each reads
every node's `up` and `status` through the shared subscription `$share/rimba-ingest/...` and writes
`ack`), `rimba-analyze` (writes `alert`, reads `ack` for overdue checks), `rimba-sim` (the simulator:
speaks for every node) and `rimba-admin` (writes `config`). Names starting with `rimba-` are the
platform's: no node may have one.

The locked broker makes every client's id its user name (`use_username_as_clientid`), so a user is
one identity with one session: a node that asks for the ingest's client id gets its own, and two
ingest processes never share one. That is why each ingest process has its own user.

Files, under `<state_dir>/broker/`: `passwd` (Mosquitto's format: `user:$7$101$salt$hash`,
PBKDF2-SHA512 with 101 iterations, as `mosquitto_passwd` writes), `acl` (a node publishes only its own
`up` and `status` and reads only its own `ack` and `config`), `secrets.json` (the services' passwords,
mode 600). A running broker rereads them on SIGHUP.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import json
import os
import re
import secrets
import tomllib
from pathlib import Path

from rimba import access, contract, names, profiles, wib
from rimba.errors import ConfigError
from rimba.fleet import REPLACEABLE, load_fleet, parse_fleet
from rimba.settings import OPTIONS

# What each service's broker user may do. Mosquitto 2 checks a shared subscription's filter without its
# `$share/<group>/` prefix, so the ingest's `read` rules cover `$share/rimba-ingest/rimba/v1/+/+/up` too.
_ROOTS = tuple(contract.root(v) for v in contract.VERSIONS)  # every contract version the platform serves


def _each_root(*rules: str) -> tuple:
    return tuple(r.replace("{root}", root) for r in rules for root in _ROOTS)


INGEST_RULES = _each_root("read {root}/+/+/up", "read {root}/+/+/status", "write {root}/+/+/ack")
SERVICES = {
    "rimba-analyze": _each_root("write {root}/+/alert", "read {root}/+/+/ack", "read {root}/+/+/status"),
    "rimba-sim": _each_root("write {root}/+/+/up", "write {root}/+/+/status", "read {root}/+/+/ack",
                            "read {root}/+/+/config"),
    # firmware files (wire-v2 "Firmware updates"): only the admin publishes them
    "rimba-admin": _each_root("write {root}/+/+/config", "read {root}/#") + (f"write {contract.fw_topic()}",),
}
INGEST_SHARE = "rimba-ingest"  # the shared-subscription group of the ingest processes
RESERVED = "rimba-"  # the platform's own user names start so; no node's may
_INGEST_USER = re.compile(r"rimba-ingest-([1-9][0-9]*)\Z")


def ingest_user(k: int) -> str:
    """The broker user (and client id) of ingest process `k`, counted from 1."""
    return f"rimba-ingest-{k}"


def _ingest_number(user: str) -> int:
    """k for `rimba-ingest-<k>`, 0 for any other user."""
    m = _INGEST_USER.match(user)
    return int(m[1]) if m else 0


def service_rules(user: str) -> tuple:
    """The ACL rules of a service user, () for anyone else."""
    return INGEST_RULES if _ingest_number(user) else SERVICES.get(user, ())


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
    def _secrets(self, ingest_processes: int | None = None) -> dict:
        """{service user: password}: made once; `ingest_processes` sets how many ingest users there are
        (None: as many as now, at least one)."""
        path = self.dir / "secrets.json"
        values = json.loads(path.read_text()) if path.exists() else {}
        count = ingest_processes or max((_ingest_number(u) for u in values), default=1)
        wanted = (*SERVICES, *(ingest_user(k) for k in range(1, count + 1)))
        now = {user: values.get(user) or secrets.token_urlsafe(18) for user in wanted}
        if now != values:
            self.dir.mkdir(parents=True, exist_ok=True)
            _write_private(path, json.dumps(now, indent=1, sort_keys=True) + "\n")
        return now

    def ingest_users(self) -> list:
        return sorted((u for u in self._secrets() if _ingest_number(u)), key=_ingest_number)

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

    def write_files(self, hashes: dict | None = None, ingest_processes: int | None = None) -> None:
        """Regenerate passwd (services and the fleet's provisioned nodes) and the ACL from the fleet file."""
        fleet = load_fleet(self.fleet_path)
        known = self._hashes() if hashes is None else hashes
        services = self._secrets(ingest_processes)
        for user, pw in services.items():
            if user not in known:
                known[user] = hash_password(pw)
        keep = {u: h for u, h in known.items()
                if u in services or (u in fleet.nodes and not u.startswith(RESERVED))}
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.dir / "passwd", "".join(f"{u}:{h}\n" for u, h in sorted(keep.items())))
        lines = ["# Written by rimba (hardware/provision.py) from the fleet file; edits are overwritten.", ""]
        for user in sorted(services):
            lines += [f"user {user}", *(f"topic {r}" for r in service_rules(user)), ""]
        for node in sorted(fleet.nodes.values(), key=lambda n: n.id):
            if node.id not in keep or node.id in services:
                continue
            lines.append(f"user {node.id}")
            for root in _ROOTS:  # a node speaks one version at a time, either until it is updated
                base = f"{root}/{node.site}/{node.id}"
                lines += [f"topic write {base}/up", f"topic write {base}/status", f"topic read {base}/ack",
                          f"topic read {base}/config"]
            lines += [f"topic read {contract.fw_topic()}", ""]
        (self.dir / "acl").write_text("\n".join(lines))

    # -- nodes ---------------------------------------------------------------------------------------
    def add(self, site: str, profile: str, node_id: str | None = None, cadence_s: int = 600) -> tuple:
        """Register a node; return (node id, its password). The password is not kept in the clear except in
        the node's own config file (mode 600, under the state directory)."""
        fleet = load_fleet(self.fleet_path)
        if site not in fleet.sites:
            raise ConfigError(f"--site {site}: not in the fleet file; sites are {', '.join(sorted(fleet.sites))}")
        if profile not in profiles.names():
            raise ConfigError(f"--profile {profile}: one of {', '.join(profiles.names())}")
        if node_id is None:
            taken = {n for n in fleet.nodes}
            node_id = next(f"{site}-{i:02d}" for i in range(1, 1000) if f"{site}-{i:02d}" not in taken)
        elif node_id in fleet.nodes:
            raise ConfigError(f"node {node_id} is already in the fleet file; `rimba node remove {node_id}` first")
        if not names.is_name(node_id):
            raise ConfigError(f"node id {node_id!r}: lowercase letters, digits and '-', at most 32 characters")
        _check_not_reserved(node_id)
        with self.fleet_path.open("a", encoding="utf-8") as f:
            f.write(f'\n[nodes.{node_id}]\nsite = "{site}"\nprofile = "{profile}"\ncadence_s = {int(cadence_s)}\n')
        (self.nodes_dir / f"{node_id}.json").unlink(missing_ok=True)  # a stale file: a new node gets a new key
        return node_id, self.credentials(node_id, fresh=True)

    def credentials(self, node_id: str, fresh: bool = False) -> str:
        """The broker password of a node in the fleet file: the one in its config file, or (`fresh`, or none
        yet) a new one, hashed into the password file, with the node's config file and label written. The
        node's update key is kept through a new password, and made when the file has none (a node
        provisioned before firmware updates)."""
        path = self.nodes_dir / f"{node_id}.json"
        if not fresh and path.exists() and node_id in self._hashes():
            self.update_key(node_id)
            return json.loads(path.read_text())["mqtt_password"]
        fleet = load_fleet(self.fleet_path)
        if node_id not in fleet.nodes:
            raise ConfigError(f"node {node_id} is not in the fleet file; `rimba node add` registers it")
        _check_not_reserved(node_id)
        password = secrets.token_urlsafe(18)
        hashes = self._hashes()
        hashes[node_id] = hash_password(password)
        self.write_files(hashes)
        from hardware.bundle import node_config

        node = fleet.nodes[node_id]
        cfg = {**node_config(self.settings, fleet, node_id, mqtt_password=password), **self.node_broker(),
               "fw_key": self._config(node_id).get("fw_key") or new_update_key()}
        self.nodes_dir.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(cfg, indent=1, sort_keys=True) + "\n")
        self.label(node_id, node.site, node.profile)
        return password

    def _config(self, node_id: str) -> dict:
        path = self.nodes_dir / f"{node_id}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def update_key(self, node_id: str) -> str:
        """The node's update key (wire-v2 "Firmware updates"; hex, `fw_key` in its config file), made on first
        need for a node provisioned before there were keys. Never printed, never sent over the air: it goes
        to the node in its flash bundle, and signs the releases offered to it. A ConfigError when the node has
        no config file (not provisioned: `rimba node add`)."""
        cfg = self._config(node_id)
        if not cfg:
            raise ConfigError(f"node {node_id} has no config file in {self.nodes_dir}, so no update key: "
                              "provision it with `rimba node add`")
        if not cfg.get("fw_key"):
            cfg["fw_key"] = new_update_key()
            _write_private(self.nodes_dir / f"{node_id}.json", json.dumps(cfg, indent=1, sort_keys=True) + "\n")
        return cfg["fw_key"]

    def bundle_keys(self, node_id: str) -> dict:
        """What `rimba firmware bundle` adds to a node's node.json from its config file: its update key, when
        the node is provisioned ({} for a node that is not: it cannot be updated over the air)."""
        return {"fw_key": self.update_key(node_id)} if self._config(node_id) else {}

    def node_broker(self) -> dict:
        """What a node's config says about the broker beyond the settings: TLS on the stack's TLS port once
        `rimba broker tls` made the broker's certificate (a node then never sends its password in the clear)."""
        if self.settings.broker.tls or not (self.dir / "server.crt").exists():
            return {}
        return {"mqtt_tls": True, "mqtt_port": self.settings.broker_tls_port}

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

    def replaced(self, node_id: str, part: str, at: int, undo: bool = False) -> tuple:
        """Record in the fleet file that the node's `part` sensor was replaced at `at` (UNIX seconds), beside the
        replacements recorded before, or with `undo` take that record back (one made by mistake); return them all.
        The analytics reads it on its next run (`analytics.quality`: FAN starts again from the new sensor). The
        file is edited in place, the rest of it as it was (comments, line endings), and written only once the new
        text reads as intended; it stays the same file (its owner, mode, and a container's bind mount of it)."""
        fleet = load_fleet(self.fleet_path)
        if node_id not in fleet.nodes:
            raise ConfigError(f"node {node_id} is not in the fleet file; `rimba node list` shows the nodes")
        if part not in REPLACEABLE:
            raise ConfigError(f"{part}: the sensors recorded as replaced are {', '.join(REPLACEABLE)}")
        profile = fleet.nodes[node_id].profile
        if not set(REPLACEABLE[part]) & set(profiles.metrics(profile)):
            raise ConfigError(f"{node_id} ({profile}) has no {part} sensor; check the node id (`rimba node list`)")
        had = fleet.nodes[node_id].replaced(part)
        if undo and int(at) not in had:
            raise ConfigError(f"{node_id}'s {part} sensor has no replacement recorded at {_wib_iso(at)}; recorded: "
                              f"{', '.join(_wib_iso(t) for t in had) or 'none'}")
        times = tuple(sorted(set(had) - {int(at)} if undo else set(had) | {int(at)}))
        key = f"{part}_replaced"
        line = f"{key} = [{', '.join(_wib_iso(t) for t in times)}]"
        text = self.fleet_path.read_bytes().decode("utf-8")
        nl = "\r\n" if "\r\n" in text else "\n"
        q = "[\"']?"
        head = re.search(rf"^[ \t]*\[[ \t]*nodes[ \t]*\.[ \t]*{q}{re.escape(node_id)}{q}[ \t]*\][ \t]*"
                         r"(#[^\r\n]*)?(\r?\n|\Z)", text, re.M)
        new = None
        if head is not None:  # the node's table runs to the next table header (not an array's continuation line)
            header = re.compile(r"^[ \t]*\[\[?[ \t]*[A-Za-z0-9_.\"' -]+\]\]?[ \t]*(#[^\r\n]*)?\r?$", re.M)
            nxt = header.search(text, head.end())
            stop = nxt.start() if nxt else len(text)
            body = re.sub(rf"^[ \t]*(?:{key}|\"{key}\"|'{key}')[ \t]*=[^\r\n]*(\r?\n|\Z)", "", text[head.end():stop],
                          count=1, flags=re.M)
            new = text[:head.end()] + ("" if head.group(2) else nl) + (line + nl if times else "") + body + text[stop:]
        try:  # what the file would say, before it is touched
            ok = new is not None and parse_fleet(tomllib.loads(new)).nodes[node_id].replaced(part) == times
        except (tomllib.TOMLDecodeError, ConfigError, KeyError):
            ok = False
        if not ok:
            raise ConfigError(f"nodes.{node_id}.{key} in {self.fleet_path} cannot be set in place (a value over "
                              f"several lines, or no [nodes.{node_id}] table); set it by hand: {line}")
        data = new.encode("utf-8")
        with self.fleet_path.open("r+b") as f:  # the same file: a new one would not be the one a container mounts
            if hasattr(os, "posix_fallocate"):  # a full disk fails here, before a byte is changed (not on macOS)
                try:
                    os.posix_fallocate(f.fileno(), 0, len(data))
                except OSError as err:
                    if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot reserve
                        raise
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        return times

    def list(self) -> list:
        fleet = load_fleet(self.fleet_path)
        hashes = self._hashes()
        return [(n.id, n.site, n.profile, n.cadence_s, n.id in hashes) for n in sorted(fleet.nodes.values(),
                                                                                      key=lambda n: n.id)]


def _wib_iso(t: int) -> str:
    """A TOML offset date-time of the UNIX time `t`, in WIB (what the technicians read)."""
    return dt.datetime.fromtimestamp(int(t), wib.TZ).isoformat()


def new_update_key() -> str:
    """32 random bytes from the operating system's CSPRNG, as 64 lowercase hex characters."""
    return secrets.token_hex(32)


def _check_not_reserved(node_id: str) -> None:
    if node_id.startswith(RESERVED):
        raise ConfigError(f"node id {node_id!r}: names starting with {RESERVED!r} are the platform's own users")


# Who each part of the platform is: its broker user and its InfluxDB role. Ingest only writes readings
# (`ingest` is its first process, `ingest-2` ... the others); the analytics reads them and writes flags,
# indices and alerts; the viewer (Grafana, the reports, the demo's terminal view) only reads.
SERVICE_USERS = {"ingest": (ingest_user(1), "writer"), "analyze": ("rimba-analyze", "analyst"),
                 "sim": ("rimba-sim", None), "admin": ("rimba-admin", None), "viewer": (None, "reader")}


def _who(service: str) -> tuple:
    m = re.fullmatch(r"ingest-([1-9][0-9]*)", service)
    return (ingest_user(int(m[1])), "writer") if m else SERVICE_USERS[service]


def lock_influx(settings) -> dict:
    """Users for the stack's InfluxDB, {role: [user, password]}: an admin, a writer (ingest), an analyst
    (the analytics: reads and writes the database) and a reader (Grafana, reports). Made once; a role
    added later is added to the file."""
    path = access.broker_dir(settings.state_path) / "influx.json"
    users = access.influx_users(settings.state_path)
    if set(users) >= set(access.INFLUX_ROLES):
        return users
    for role in access.INFLUX_ROLES:
        users.setdefault(role, [f"rimba-{role}", secrets.token_urlsafe(18)])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, json.dumps(users, indent=1) + "\n")
    return users


def service_env(settings, service: str) -> dict:
    """The RIMBA_* variables that make `service` (a key of SERVICE_USERS, or `ingest-<k>`) log in as itself;
    {} while the stack is open (`rimba stack lock` not run). An ingest process also gets its client id (the
    broker forces it to the user name anyway) and the shared-subscription group, so that adding processes
    later changes nothing for the first one."""
    broker_dir = settings.state_path / "broker"
    mqtt_user, role = _who(service)
    env = {}
    if mqtt_user and (broker_dir / "secrets.json").exists():
        env.update(RIMBA_MQTT_USER=mqtt_user,
                   RIMBA_MQTT_PASSWORD=json.loads((broker_dir / "secrets.json").read_text())[mqtt_user])
        if role == "writer":
            env.update(RIMBA_MQTT_CLIENT_ID=mqtt_user, RIMBA_MQTT_SHARE=INGEST_SHARE)
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
    ingest = [u.removeprefix("rimba-") for u in Provisioner(settings).ingest_users()]
    for stale in out.glob("ingest*.env"):
        if stale.stem not in ingest:
            stale.unlink()  # a process no longer configured, or the single ingest.env of before
    for service in (*ingest, *(s for s in SERVICE_USERS if s != "ingest")):
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


def lock(settings, ingest_processes: int | None = None) -> list:
    """`rimba stack lock`: broker users and ACL, InfluxDB users, the services' env files, one per ingest
    process (`ingest_processes` of them; None: as many as before, at least one). Idempotent: existing
    passwords are kept."""
    p = Provisioner(settings)
    p.write_files(ingest_processes=ingest_processes)
    p.nodes_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the nodes' configs go here (deploy/ mounts it)
    return write_env_files(settings)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
