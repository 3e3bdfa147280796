"""The broker's TLS: a project CA and a server certificate signed by it, made with the openssl command.

`rimba broker tls` writes `ca.crt`, `ca.key`, `server.crt` and `server.key` under `<state_dir>/broker/`
(keys mode 600); the stack then adds a TLS listener, and nodes, services and officers' tools trust
`ca.crt` (RIMBA_MQTT_CA for Rimba's own services). EC P-256 keys: small for the ESP32's TLS stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rimba.errors import ConfigError


def _openssl(*args, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise ConfigError("openssl is not installed (Debian package openssl)")
    # umask 077 in openssl: a key is never readable by others, not even between its creation and a chmod
    r = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
                       umask=0o077)
    if r.returncode:
        raise ConfigError(f"openssl {args[0]} failed: {r.stderr.strip().splitlines()[-1] if r.stderr else ''}")


def make(directory, hosts=("localhost", "127.0.0.1"), days: int = 3650, name: str = "Rimba") -> dict:
    """A CA (if none yet) and a server certificate for `hosts`; returns the paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if not (d / "ca.crt").exists():
        _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days), "-subj",
                 f"/CN={name} CA", cwd=d)
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
    (d / "server.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={hosts[0]}", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
             "server.crt", "-days", str(days), "-extfile", "server.ext", cwd=d)
    for key in ("ca.key", "server.key"):
        os.chmod(d / key, 0o600)
    for cert in ("ca.crt", "server.crt"):
        os.chmod(d / cert, 0o644)  # certificates are public: nodes, services and tools are given the CA
    return {"ca": d / "ca.crt", "cert": d / "server.crt", "key": d / "server.key"}
