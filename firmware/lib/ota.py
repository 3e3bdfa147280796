# Over-the-air updates on the node (wire-v2 "Firmware updates"): a release offered in the retained
# `config` is checked (its version newer than the running one and than any rolled back, its signature:
# HMAC-SHA256, RFC 2104, keyed with the node's update key, over the canonical JSON of files and
# version), installed into the slot the good release does not use (/fw/a or /fw/b, see loader.py) and
# switched to on trial by one atomic replace of /fw.json.
#
# Installing: every file of the release is kept if the slot already holds it (a download cut short
# resumes), copied from the running slot if that has the same bytes, or fetched: its bytes are streamed
# to `<path>.part` in pieces (mqtt.py), hashed as they come, and renamed into place only when the
# SHA-256 matches. release.json is written last, so a slot without it is never booted. A power cut at
# any point leaves /fw.json naming the good release; the readings buffer (/data) is never touched.
import binascii
import hashlib
import json
import os

from config import OFFER_FILE as OFFER
from config import exists, read

SLOTS = ("a", "b")
MAX_FILES = 64
SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
PIECE = 512


def _replace(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(obj))
    os.rename(tmp, path)


def _mkdirs(path):
    at = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if part:
            at = at + part if not at or at.endswith("/") else at + "/" + part
            if not exists(at):
                os.mkdir(at)


def version_key(v):
    """(1, 2, 0) for "1.2.0"; None for anything that is not dot-separated decimal numbers."""
    if not isinstance(v, str) or not 0 < len(v) <= 32:
        return None
    parts = v.split(".")
    for p in parts:
        if not p or not p.isdigit():
            return None
    return tuple(int(p) for p in parts)


def _path_ok(p):
    if not isinstance(p, str) or not 0 < len(p) <= 64:
        return False
    for part in p.split("/"):
        if not part or part in (".", "..") or any(c not in SAFE for c in part):
            return False
    return True


def _hex_ok(h, n):
    return isinstance(h, str) and len(h) == n and all(c in "0123456789abcdef" for c in h)


def canonical(files, version):
    """The signed text in pieces: json.dumps({"files": files, "version": version}, sort_keys=True,
    separators=(",", ":")) as CPython writes it (for the safe characters `check` allows), never one string:
    a release's is about 2 KB, a block a fragmented heap may not have."""
    yield '{"files":{'
    first = True
    for p in sorted(files):
        yield ('"%s":"%s"' if first else ',"%s":"%s"') % (p, files[p])
        first = False
    yield '},"version":"%s"}' % version


def hmac_sha256(key, pieces):
    """HMAC-SHA256 (RFC 2104 with SHA-256, FIPS 180-4; block of 64 bytes) of the concatenated pieces."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    for piece in pieces:
        inner.update(piece.encode() if isinstance(piece, str) else piece)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def _same(a, b):
    """Equal bytes, compared in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for x, y in zip(a, b):
        d |= x ^ y
    return d == 0


def record(fs):
    return read(fs + "/fw.json")


def manifest(fs, slot):
    return read(fs + "/fw/" + slot + "/release.json")


def check(offer, key_hex, run):
    """What to do with an offered release, given what runs (`run`, node.running): None (nothing to do: not newer, or already rolled back), a
    refusal reason (str), or the release {"version", "files", "sig"} to install."""
    if not isinstance(offer, dict) or run["slot"] is None or run["state"] == "trial":
        return None
    version = offer.get("version")
    mine = version_key(version)
    if mine is None:
        return "bad-release: version"
    if mine <= version_key(run["version"]) or run["failed"] and mine <= (version_key(run["failed"]) or ()):
        return None
    files = offer.get("files")
    if not isinstance(files, dict) or not 0 < len(files) <= MAX_FILES or "main.py" not in files:
        return "bad-release: files"
    for p in files:
        if not _path_ok(p) or not _hex_ok(files[p], 64) or p == "release.json":
            return "bad-release: file %s" % str(p)[:64]
    sig = offer.get("sig")
    if not _hex_ok(key_hex, 64):
        return "bad-signature: no update key"
    if not _hex_ok(sig, 64):
        return "bad-signature"
    want = hmac_sha256(binascii.unhexlify(key_hex), canonical(files, version))
    if not _same(want, binascii.unhexlify(str(sig))):
        return "bad-signature"
    return {"version": version, "files": files, "sig": sig}


def sha256_file(path):
    h = hashlib.sha256()
    buf = bytearray(PIECE)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(buf[:n] if n < PIECE else buf)
    return binascii.hexlify(h.digest()).decode()


class Sink:
    """A file arriving in pieces: written to `<path>.part`, hashed, renamed into place if it matches."""

    def __init__(self, path, sha, feed=None):
        self.path = path
        self.sha = sha
        self.feed = feed
        self.hash = hashlib.sha256()
        self.f = open(path + ".part", "wb")
        self.ok = None

    def write(self, piece):
        self.f.write(piece)
        self.hash.update(piece)
        if self.feed:
            self.feed()

    def abandon(self):
        """Cut off mid-file: the piece stays as .part, removed and fetched again by the next attempt."""
        self.f.close()

    def close(self):
        self.f.close()
        self.ok = binascii.hexlify(self.hash.digest()).decode() == self.sha
        if self.ok:
            os.rename(self.path + ".part", self.path)
        else:
            os.remove(self.path + ".part")
        return self.ok


def _copy(src, dst, feed=None):
    buf = bytearray(PIECE)
    with open(src, "rb") as a, open(dst + ".part", "wb") as b:
        while True:
            n = a.readinto(buf)
            if not n:
                break
            b.write(buf[:n] if n < PIECE else buf)
            if feed:
                feed()
    os.rename(dst + ".part", dst)


def _tree(base):
    """Every file under base, as paths relative to it."""
    out = []
    todo = [""]
    while todo:
        rel = todo.pop()
        for entry in os.ilistdir(base + ("/" + rel if rel else "")):
            name, kind = entry[0], entry[1]
            path = rel + "/" + name if rel else name
            if kind == 0x4000:
                todo.append(path)
            else:
                out.append(path)
    return out


def target(run):
    return "b" if run["slot"] == "a" else "a"


def install(fs, run, release, fetch, feed=None):
    """Put `release` into the slot the running release (`run`, node.running) does not use. `fetch(sha, path)`
    streams one file from the broker into a Sink (an OSError or MQTTError if it cannot finish: the next
    session resumes). Returns None when the slot is complete, or a refusal reason (bytes that do not match)."""
    slot = target(run)
    base = fs + "/fw/" + slot
    _mkdirs(base + "/lib")
    if exists(base + "/release.json"):
        os.remove(base + "/release.json")  # from here on the slot is incomplete, and never booted
    files = release["files"]
    for rel in _tree(base):  # what the release does not have, and pieces of interrupted downloads
        if rel not in files:
            os.remove(base + "/" + rel)
    old = manifest(fs, run["slot"]).get("files", {})
    missing = []
    for rel in sorted(files):
        path = base + "/" + rel
        _mkdirs(path.rsplit("/", 1)[0])
        if exists(path) and sha256_file(path) == files[rel]:
            continue  # there already: an earlier attempt's
        src = fs + "/fw/" + run["slot"] + "/" + rel
        if old.get(rel) == files[rel] and exists(src) and sha256_file(src) == files[rel]:
            _copy(src, path, feed)  # unchanged since the running release: no need to fetch it
        else:
            missing.append(rel)
    old = None
    for rel in missing:  # one at a time: one file's bookkeeping in the heap
        fetch(files[rel], base + "/" + rel)
    for rel in sorted(files):  # every file once more, as it is in flash now
        path = base + "/" + rel
        if not exists(path) or sha256_file(path) != files[rel]:
            return "bad-hash: %s" % rel
    _write_release(base + "/release.json", release)
    return None


def _write_release(path, release):
    """A release as JSON, written in pieces (about 2 KB as one string: a block a fragmented heap may not
    have), to a temporary file renamed over `path`."""
    with open(path + ".tmp", "w") as f:
        f.write('{"sig":"%s","version":"%s","files":{' % (release.get("sig", ""), release["version"]))
        first = True
        for p in sorted(release["files"]):
            f.write(('"%s":"%s"' if first else ',"%s":"%s"') % (p, release["files"][p]))
            first = False
        f.write("}}")
    os.rename(path + ".tmp", path)


def keep_offer(root, release):
    """The checked release, kept for the boot that installs it."""
    _write_release(root + "/" + OFFER, release)


def take_offer(root):
    """The kept offer, removed from flash as it is read (one attempt per offer), or None."""
    out = read(root + "/" + OFFER)
    if exists(root + "/" + OFFER):
        os.remove(root + "/" + OFFER)
    return out if out.get("files") else None


def switch(fs, run):
    """Boot the installed release on trial at the next start (the loader counts its boots)."""
    _replace(fs + "/fw.json", {"good": run["slot"], "trial": target(run), "tries": 0, "wdt": 0})


def mark_good(fs):
    rec = record(fs)
    if rec.get("trial"):
        _replace(fs + "/fw.json", {"good": rec["trial"]})


def refuse(fs, version, why):
    """An offered release the node will not run: reported as rolled back, not tried again."""
    rec = record(fs)
    _replace(fs + "/fw.json", {"good": rec.get("good", "a"), "failed": version, "why": why})
