"""`rimba backup` and `rimba restore`: what a Rimba server cannot rebuild, in one folder.

Why it exists: InfluxDB 1.x has no privilege for "write points only". Its WRITE privilege also
allows `DELETE` and `DROP SERIES`, so the ingest's login (and anyone who steals it) can erase
readings. The database cannot forbid it; what we can do is keep copies it cannot reach.

A backup is a folder `<to>/rimba-<UTC time>/` (mode 700, every file 600), written under a
`.partial` name and renamed when complete, so a folder named `rimba-*Z` is always whole:

    influxdb/       the database in InfluxDB's portable format (`influxd backup -portable`, 1.5 and
                    later), through its backup RPC (no authentication there: loopback only)
    fleet.toml      the fleet file
    broker/         the broker's password file and ACL, the services' passwords and env files, the
                    InfluxDB users, the CA and the broker's certificate and keys
    nodes/          the nodes' config files (their broker passwords) and labels
    sqlite/         the ingest's store (seq marks, spool, dead letters) and the alerts, each copied
                    with SQLite's online backup API (a consistent copy of a live WAL database,
                    which a file copy is not)
    manifest.json   every file with its size and SHA-256, the database name, the time

`rimba restore FOLDER` puts it all back into a fresh state directory (it refuses one that has a
broker or an ingest store already), starts the local stack locked with the restored users when no
other InfluxDB is named, replaces the stack's new empty database with the backup's, and grants the
users their privileges again (a portable restore brings the database, not the users).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
import urllib.error
from pathlib import Path

from rimba.errors import ConfigError, StackError
from rimba.adapters.influx import json_error
from rimba.adapters.servers import find_binary

PREFIX = "rimba-"
SQLITE_SUFFIXES = (".sqlite", ".sqlite3")
_COPIED = ("broker", "nodes")  # folders of the state directory kept whole


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (WAL or not), through SQLite's backup API."""
    source = sqlite3.connect(src, timeout=60)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            check = target.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            target.close()
    finally:
        source.close()
    if check != "ok":
        raise StackError(f"the copy of {src} failed SQLite's integrity check: {check}")


def _influxd(*args: str) -> None:
    r = subprocess.run([find_binary("influxd"), *args], capture_output=True, text=True, timeout=3600, check=False)
    if r.returncode:
        last = (r.stderr or r.stdout).strip().splitlines()
        raise StackError(f"influxd {args[0]} failed: {last[-1] if last else 'exit ' + str(r.returncode)}")


def rpc_address(settings, given: str | None) -> str:
    """Where InfluxDB's backup RPC listens: `given`, else the local stack's while it runs, else InfluxDB's
    default (127.0.0.1:8088, as the Debian package and deploy/ configure it)."""
    if given:
        return given
    from rimba.dev.stack import Stack  # the local stack's, on a development or demo machine

    stack = Stack.from_settings(settings)
    return stack.rpc_address if stack.influxd.running() else "127.0.0.1:8088"


def backup(settings, to, influx_rpc: str | None = None, keep: int = 0, clock=time.time) -> Path:
    """Write a complete backup under `to`; return its folder. `keep` > 0: delete all but the newest `keep`."""
    name = PREFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    root = _private_dir(Path(to))
    final = root / name
    if final.exists():
        raise ConfigError(f"backup {final} exists already (one backup per second at most)")
    work = root / (name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    try:
        _write(settings, _private_dir(work), influx_rpc, clock)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # never a half backup that looks like one
        raise
    os.rename(work, final)
    if keep > 0:
        prune(root, keep)
    return final


def _write(settings, work: Path, influx_rpc: str | None, clock) -> None:
    state = settings.state_path
    fleet = Path(settings.fleet)
    if not fleet.exists():
        raise ConfigError(f"fleet file {fleet} does not exist: nothing to back up the fleet from")
    shutil.copyfile(fleet, work / "fleet.toml")
    _influxd("backup", "-portable", "-db", settings.influx_db, "-host", rpc_address(settings, influx_rpc),
             str(_private_dir(work / "influxdb")))
    for folder in _COPIED:
        if (state / folder).is_dir():
            shutil.copytree(state / folder, work / folder, ignore=shutil.ignore_patterns("*.tmp"))
    databases = sorted(p for p in state.iterdir() if p.suffix in SQLITE_SUFFIXES and p.is_file()) \
        if state.is_dir() else []
    if databases:
        _private_dir(work / "sqlite")
    for db in databases:
        copy_sqlite(db, work / "sqlite" / db.name)
    files = {}
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        os.chmod(path, 0o600)
        files[str(path.relative_to(work))] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    for path in (p for p in work.rglob("*") if p.is_dir()):
        os.chmod(path, 0o700)
    manifest = {"format": 1, "created": int(clock()), "influx_db": settings.influx_db, "files": files}
    fd = os.open(work / "manifest.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


def prune(root, keep: int) -> None:
    """Delete all but the newest `keep` complete backups in `root` (a `.partial` one is left alone)."""
    for old in complete_backups(root)[:-keep]:
        shutil.rmtree(old)


def complete_backups(root) -> list:
    """The complete backups in `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name.endswith("Z"))


def verify(source) -> dict:
    """The backup's manifest, once every file in it is present with its recorded size and checksum."""
    source = Path(source)
    try:
        manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{source} is not a complete Rimba backup (no readable manifest.json: {err})") from None
    for rel, meta in manifest["files"].items():
        path = source / rel
        if not path.is_file() or path.stat().st_size != meta["bytes"] or _sha256(path) != meta["sha256"]:
            raise ConfigError(f"backup {source}: {rel} is missing or does not match its checksum")
    return manifest


def _check_fresh(settings) -> None:
    state = settings.state_path
    taken = [state / folder for folder in _COPIED if (state / folder).exists()]
    if state.is_dir():
        taken += [p for p in state.iterdir() if p.suffix in SQLITE_SUFFIXES]
    if taken:
        raise ConfigError(f"restore wants a fresh state directory: {taken[0]} exists (RIMBA_STATE_DIR names another)")


def restore(settings, source, influx_rpc: str | None = None) -> dict:
    """Put a backup back: files into the (fresh) state directory, the database into InfluxDB. Returns what
    was restored, for the command's summary."""
    source = Path(source)
    manifest = verify(source)
    if manifest["influx_db"] != settings.influx_db:
        raise ConfigError(f"influx_db: the backup holds database {manifest['influx_db']!r}, the settings name "
                          f"{settings.influx_db!r}")
    _check_fresh(settings)
    fleet = Path(settings.fleet)
    theirs = (source / "fleet.toml").read_bytes()
    if fleet.exists() and fleet.read_bytes() != theirs:
        raise ConfigError(f"fleet: {fleet} exists and differs from the backup's; move it away or name another "
                          "(RIMBA_FLEET)")
    state = _private_dir(settings.state_path)
    for folder in _COPIED:
        if (source / folder).is_dir():
            shutil.copytree(source / folder, state / folder)
    for db in sorted((source / "sqlite").glob("*")) if (source / "sqlite").is_dir() else []:
        shutil.copyfile(db, state / db.name)
        os.chmod(state / db.name, 0o600)
    fleet.parent.mkdir(parents=True, exist_ok=True)
    if not fleet.exists():
        fleet.write_bytes(theirs)
    from rimba.dev.stack import Stack  # the database's admin client, and the local stack where none is named

    stack = Stack.from_settings(settings)
    if influx_rpc is None:
        stack.up()  # the local stack, locked with the restored users
    _replace_database(stack, source / "influxdb", rpc_address(settings, influx_rpc))
    return {"files": len(manifest["files"]), "database": settings.influx_db, "state": str(state),
            "fleet": str(fleet)}


def _replace_database(stack, dump: Path, rpc: str) -> None:
    """The backup's database instead of the empty one the stack made; refuses to replace one with data."""
    admin = stack.influx_users().get("admin")
    db = stack.database
    try:
        shown = stack.query(f'SHOW MEASUREMENTS ON "{db}"', admin)
        if any("series" in r for r in shown.get("results", [])):
            raise ConfigError(f"influx_db: database {db} at {stack.influx_url} holds data already; restore into "
                              "a fresh InfluxDB")
        dropped = stack.query(f'DROP DATABASE "{db}"', admin)
    except (OSError, urllib.error.URLError) as err:  # HTTPError included: the restored admin refused
        raise StackError(f"InfluxDB at {stack.influx_url} as the restored admin: {err}") from err
    if json_error(dropped):
        raise StackError(f"could not drop the empty database {db} before restoring: {json_error(dropped)}")
    _influxd("restore", "-portable", "-db", db, "-host", rpc, str(dump))
    stack.create_database()  # the grants went with the empty database: give them back
