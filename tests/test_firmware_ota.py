"""Over-the-air updates on the node (firmware/lib/ota.py, firmware/loader.py), in the real MicroPython: the
signature and the canonical text against CPython's hmac and json, what an offer may be, the loader's trial and
rollback rules, and fifty power cuts during a download and the switch. The updates over the real broker and
ingest are in test_firmware_ota_live.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import subprocess

from hypothesis import given
from hypothesis import strategies as st

from rimba.dev.hostnode import FAKES, micropython
from rimba.dev.harness import ROOT

LIB = ROOT / "firmware" / "lib"


def run_mpy(tmp_path, script: str, world: dict | None = None, **env) -> list:
    """The script in MicroPython with the firmware's lib and the fakes; its printed JSON lines."""
    w = tmp_path / "world.json"
    w.write_text(json.dumps(world or {"true": 1764301800, "rtc": [1764301800, 1764301800]}))
    path = tmp_path / "script.py"
    path.write_text(script)
    r = subprocess.run([micropython(), "-X", "heapsize=1m", str(path)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MICROPYPATH": f"{FAKES}:{LIB}", "RIMBA_WORLD": str(w), **env}, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith(("{", "["))]


def sign(key: bytes, files: dict, version: str) -> str:
    """The platform's signature (wire-v2 "Firmware updates"), written here from the contract's words."""
    text = json.dumps({"files": files, "version": version}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
part = st.text(SAFE, min_size=1, max_size=12).filter(lambda p: p not in (".", ".."))
paths = st.lists(part, min_size=1, max_size=3).map("/".join).filter(lambda p: len(p) <= 64 and p != "release.json")
releases = st.tuples(st.dictionaries(paths, st.binary(min_size=32, max_size=32).map(bytes.hex), min_size=1,
                                     max_size=8),
                     st.lists(st.integers(0, 999), min_size=1, max_size=4).map(lambda v: ".".join(map(str, v))),
                     st.binary(min_size=1, max_size=100))


@given(st.lists(releases, min_size=20, max_size=20))
def test_the_node_signs_and_writes_the_canonical_text_as_cpython_does(tmp_path_factory, cases):
    """Twenty generated releases at a time in one interpreter: the node's canonical text is CPython's json.dumps
    with sorted keys, and its HMAC-SHA256 (written on the node: MicroPython has no hmac) is CPython's hmac."""
    tmp = tmp_path_factory.mktemp("sig")
    (tmp / "cases.json").write_text(json.dumps([[f, v, k.hex()] for f, v, k in cases]))
    script = (f"import json, binascii, ota\ncases = json.load(open({str(tmp / 'cases.json')!r}))\n"
              "for files, version, key in cases:\n"
              "    text = ''.join(ota.canonical(files, version))\n"
              "    mac = ota.hmac_sha256(binascii.unhexlify(key), ota.canonical(files, version))\n"
              "    print(json.dumps([text, binascii.hexlify(mac).decode()]))\n")
    got = run_mpy(tmp, script)
    for (files, version, key), (text, mac) in zip(cases, got, strict=True):
        assert text == json.dumps({"files": files, "version": version}, sort_keys=True, separators=(",", ":"))
        assert mac == sign(key, files, version)


def test_the_node_agrees_with_the_platforms_signature_vectors(tmp_path):
    """tests/vectors/fw-sig.json (computed with CPython's hmac, the platform's tests read it too): the node's
    canonical text and signature for every valid case, and every refused case refused by the node."""
    vectors = json.loads((ROOT / "tests" / "vectors" / "fw-sig.json").read_text())
    (tmp_path / "v.json").write_text(json.dumps(vectors))
    script = (f"import json, binascii, ota\nv = json.load(open({str(tmp_path / 'v.json')!r}))\n"
              "run = {'version': '0.0.1', 'state': 'good', 'failed': None, 'slot': 'a'}\n"
              "for c in v['valid']:\n"
              "    mac = ota.hmac_sha256(binascii.unhexlify(c['key']), ota.canonical(c['files'], c['version']))\n"
              "    print(json.dumps([''.join(ota.canonical(c['files'], c['version'])), binascii.hexlify(mac).decode(),"
              " isinstance(ota.check(c, c['key'], run), dict)]))\n"
              "for c in v['refused']:\n"
              "    print(json.dumps([ota.check(c, c['key'], run)]))\n")
    got = run_mpy(tmp_path, script)
    valid, refused = got[:len(vectors["valid"])], got[len(vectors["valid"]):]
    for case, (text, mac, installs) in zip(vectors["valid"], valid, strict=True):
        assert (text, mac, installs) == (case["canonical"], case["sig"], True), case
    assert len(refused) == len(vectors["refused"])
    for case, (verdict,) in zip(vectors["refused"], refused, strict=True):
        assert isinstance(verdict, str) and verdict.startswith(("bad-signature", "bad-release")), (case, verdict)


KEY = bytes(range(32))
KEY_HEX = KEY.hex()
FILES = {"main.py": "ab" * 32, "lib/node.mpy": "cd" * 32}
RUN = {"version": "0.4.0", "state": "good", "failed": None, "slot": "a"}


def verdicts(tmp_path, offers: list, run=RUN, key: str = KEY_HEX) -> list:
    (tmp_path / "offers.json").write_text(json.dumps([offers, run, key]))
    script = (f"import json, ota\noffers, run, key = json.load(open({str(tmp_path / 'offers.json')!r}))\n"
              "for o in offers:\n    v = ota.check(o, key, run)\n    print(json.dumps([v]))\n")
    return [v[0] for v in run_mpy(tmp_path, script)]


def offer(version="0.5.0", files=FILES, key=KEY, **over) -> dict:
    return {"version": version, "files": files, "sig": sign(key, files, version), **over}


def test_an_offer_is_installed_only_when_newer_well_formed_and_signed_with_the_nodes_key(tmp_path):
    flipped = offer()
    flipped["sig"] = ("0" if flipped["sig"][0] != "0" else "1") + flipped["sig"][1:]
    cases = [
        (offer(), "install"),
        (offer("0.4.0"), None),  # what runs
        (offer("0.3.9"), None),  # older: an offer never downgrades
        (offer("0.10.0"), "install"),  # versions compare as numbers, not text
        (flipped, "bad-signature"),
        (offer(key=bytes(32)), "bad-signature"),  # signed with another node's key
        (offer(files={"main.py": "ab" * 32, "../boot.py": "cd" * 32}), "bad-release: file ../boot.py"),
        (offer(files={"main.py": "ab" * 32, "/lib/x.mpy": "cd" * 32}), "bad-release: file /lib/x.mpy"),
        (offer(files={"lib/node.mpy": "cd" * 32}), "bad-release: files"),  # no main.py: nothing to start
        (offer(files={"main.py": "AB" * 32}), "bad-release: file main.py"),  # hashes are lowercase hex
        (offer("1.2.0-rc1"), "bad-release: version"),
        ({"version": "0.5.0", "files": FILES}, "bad-signature"),  # unsigned
        ("0.5.0", None), (None, None),  # not a release
    ]
    got = verdicts(tmp_path, [c for c, _ in cases])
    for (case, want), v in zip(cases, got, strict=True):
        assert (("install" if isinstance(v, dict) else v) == want), (case, v)
    assert verdicts(tmp_path, [offer()], key="")[0] == "bad-signature: no update key"


def test_a_rolled_back_version_is_not_tried_again_until_a_newer_one_is_offered(tmp_path):
    after = dict(RUN, state="rolled-back", failed="0.5.0")
    got = verdicts(tmp_path, [offer("0.5.0"), offer("0.5.1")], run=after)
    assert got[0] is None and isinstance(got[1], dict)
    on_trial = dict(RUN, state="trial")
    assert verdicts(tmp_path, [offer("0.6.0")], run=on_trial) == [None]  # no update on top of a trial
    unslotted = dict(RUN, slot=None)
    assert verdicts(tmp_path, [offer("0.6.0")], run=unslotted) == [None]


def slots(fs, versions: dict) -> None:
    for slot, version in versions.items():
        (fs / "fw" / slot).mkdir(parents=True, exist_ok=True)
        (fs / "fw" / slot / "release.json").write_text(json.dumps({"version": version, "files": {}}))


def choose(tmp_path, rec: dict, cause: str, ext0: bool = False, fs=None) -> list:
    """loader.choose for one boot: [slot, the record it writes or None]."""
    fs = fs or tmp_path / "fs"
    script = ("import json, machine\n"
              "import loader_under_test as L\n"
              f"print(json.dumps(list(L.choose({str(fs)!r}, {json.dumps(rec)}, machine.{cause}, {ext0}))))\n")
    lib = tmp_path / "loaderlib"
    lib.mkdir(exist_ok=True)
    src = (ROOT / "firmware" / "loader.py").read_text()
    # the module without its last lines (the boot itself), so that choose() can be called on its own
    (lib / "loader_under_test.py").write_text(src[:src.index("\ntry:\n    main()")])
    w = tmp_path / "world.json"
    w.write_text(json.dumps({"true": 1764301800, "rtc": [1764301800, 1764301800]}))
    (tmp_path / "s.py").write_text(script)
    r = subprocess.run([micropython(), str(tmp_path / "s.py")], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MICROPYPATH": f"{FAKES}:{lib}", "RIMBA_WORLD": str(w)}, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_loader_rolls_a_trial_back_after_three_boots_or_two_watchdog_resets(tmp_path):
    slots(tmp_path / "fs", {"a": "0.4.0", "b": "0.5.0"})
    trial = {"good": "a", "trial": "b", "tries": 0, "wdt": 0}
    assert choose(tmp_path, trial, "SOFT_RESET") == ["b", dict(trial, tries=1)]
    assert choose(tmp_path, dict(trial, tries=2), "DEEPSLEEP_RESET") == ["b", dict(trial, tries=3)]
    assert choose(tmp_path, dict(trial, tries=3), "DEEPSLEEP_RESET") == \
        ["a", {"good": "a", "failed": "0.5.0", "why": "3 boots without an acknowledged send"}]
    assert choose(tmp_path, dict(trial, tries=1, wdt=0), "WDT_RESET") == ["b", dict(trial, tries=2, wdt=1)]
    assert choose(tmp_path, dict(trial, tries=2, wdt=1), "WDT_RESET") == \
        ["a", {"good": "a", "failed": "0.5.0", "why": "2 watchdog resets"}]
    # a rain tip's wake (ext0) only counts a tip: not a boot of the release
    assert choose(tmp_path, dict(trial, tries=2), "DEEPSLEEP_RESET", ext0=True) == ["b", None]
    assert choose(tmp_path, {"good": "b"}, "DEEPSLEEP_RESET") == ["b", None]


def test_the_loader_boots_whatever_release_is_whole_when_the_record_names_none(tmp_path):
    fs = tmp_path / "fs"
    slots(fs, {"b": "0.5.0"})
    assert choose(tmp_path, {}, "PWRON_RESET") == ["b", {"good": "b"}]  # no record, or a torn one
    assert choose(tmp_path, {"good": "a"}, "PWRON_RESET") == ["b", {"good": "b"}]  # a names no whole release
    slots(fs, {"a": "0.4.0"})
    (fs / "fw" / "b" / "release.json").unlink()  # b's install was cut short
    assert choose(tmp_path, {"good": "a", "trial": "b", "tries": 0}, "SOFT_RESET") == ["a", {"good": "a"}]


# --- power cuts ----------------------------------------------------------------------------------------

POWERCUT = r"""
import json, os, sys
import ota

FS, SEED, PHASE, CUT = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
writes = [0]
real_open, real_rename, real_remove = open, os.rename, os.remove


def tick():
    writes[0] += 1
    return PHASE == "cut" and writes[0] == CUT


def cut(what):
    print(json.dumps({"cut": what, "at": writes[0]}))
    sys.exit(9)  # the power is gone: nothing after this reaches the flash


class Torn:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        if tick():
            if SEED % 2 and len(data) > 1:
                self.f.write(data[:len(data) // 2])  # half of this piece reaches the flash
                self.f.close()
                cut("torn write")
            cut("write")
        return self.f.write(data)

    def readinto(self, buf):
        return self.f.readinto(buf)

    def read(self, *a):
        return self.f.read(*a)

    def close(self):
        self.f.close()


def fake_open(path, mode="r"):
    f = real_open(path, mode)
    return Torn(f) if "w" in mode or "a" in mode else f


class FakeOS:
    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, a, b):
        if tick():
            if SEED % 2:
                real_rename(a, b)
                cut("after a rename")
            cut("rename")
        real_rename(a, b)

    def remove(self, p):
        if tick():
            cut("remove")
        real_remove(p)


ota.open = fake_open
ota.os = FakeOS()
release = json.load(real_open(FS + "/offer.json"))
store = json.load(real_open(FS + "/store.json"))


def fetch(sha, path):
    s = ota.Sink(path, sha)
    data = store[sha].encode()
    for i in range(0, len(data), 100):
        s.write(data[i:i + 100])
    s.close()


run = {"version": "0.4.0", "state": "good", "failed": None, "slot": json.load(real_open(FS + "/fw.json"))["good"]}
why = ota.install(FS, run, release, fetch)
if why is None:
    ota.switch(FS, run)
    ota.mark_good(FS)
print(json.dumps({"done": why, "writes": writes[0]}))
"""


def tree_hashes(base) -> dict:
    return {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(base.rglob("*")) if p.is_file()}


OLD = {"main.py": "import node  # 0.4.0\n", "lib/node.mpy": "n" * 700, "lib/wire.mpy": "w" * 300}
NEW = {"main.py": "import node  # 0.5.0\n", "lib/node.mpy": "N" * 900, "lib/wire.mpy": "w" * 300,
       "lib/ota.mpy": "o" * 450}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def node_fs(fs) -> None:
    """A node that runs 0.4.0 from slot a, with a buffer, and in slot b a stale file and a piece of a download."""
    for rel, text in OLD.items():
        (fs / "fw" / "a" / rel).parent.mkdir(parents=True, exist_ok=True)
        (fs / "fw" / "a" / rel).write_text(text)
    (fs / "fw" / "a" / "release.json").write_text(json.dumps({"version": "0.4.0",
                                                               "files": {k: digest(v) for k, v in OLD.items()}}))
    (fs / "fw" / "b" / "lib").mkdir(parents=True)
    (fs / "fw" / "b" / "lib" / "stale.mpy").write_text("from 0.3.0")
    (fs / "fw" / "b" / "lib" / "node.mpy.part").write_text("NNN")
    (fs / "fw.json").write_text(json.dumps({"good": "a"}))
    (fs / "data" / "buf").mkdir(parents=True)
    (fs / "data" / "buf" / "state.json").write_text('{"epoch": 7, "next": 42, "acked": 40, "lost": []}')
    (fs / "data" / "buf" / "s41.log").write_text('0badc0de ["air_temp_c"]\n')
    (fs / "offer.json").write_text(json.dumps({"version": "0.5.0", "files": {k: digest(v) for k, v in NEW.items()},
                                               "sig": "00" * 32}))
    (fs / "store.json").write_text(json.dumps({digest(v): v for v in NEW.values()}))


def whole(fs, slot: str) -> str:
    """The version in `slot`, after checking that every file of its release.json has its bytes."""
    manifest = json.loads((fs / "fw" / slot / "release.json").read_text())
    for path, sha in manifest["files"].items():
        assert hashlib.sha256((fs / "fw" / slot / path).read_bytes()).hexdigest() == sha, (slot, path)
    return manifest["version"]


def test_a_power_cut_at_fifty_points_of_a_download_and_the_switch_leaves_a_good_release_and_the_buffer(tmp_path):
    """The node runs 0.4.0 from slot a and takes 0.5.0 (one file unchanged, copied from a; three fetched in
    pieces; a stale file and a piece of an earlier download in b). The power fails at the k-th write, rename or
    remove of install, switch and mark_good (k drawn from a seeded generator over the whole run; the write a cut
    lands next to is sometimes torn in half); then the loader boots. Every time it boots a slot whose every file
    matches its release.json, 0.4.0 or 0.5.0; the readings buffer is byte for byte what it was; and the update,
    taken again at the next session, completes."""
    script = tmp_path / "powercut.py"
    script.write_text(POWERCUT)
    counted = tmp_path / "count"
    node_fs(counted)
    total = run_powercut(script, counted, 0, "count", 0)["writes"]  # the flash operations of a whole update
    assert whole(counted, boot(tmp_path, counted)) == "0.5.0"
    rng = random.Random(29)
    seen = {}
    for seed in range(50):
        fs = tmp_path / f"fs{seed}"
        node_fs(fs)
        buffer_before = tree_hashes(fs / "data")
        cut = rng.randint(1, total)
        out = run_powercut(script, fs, seed, "cut", cut)
        seen[out.get("cut")] = seen.get(out.get("cut"), 0) + 1
        assert whole(fs, boot(tmp_path, fs)) in ("0.4.0", "0.5.0"), (seed, cut)
        assert tree_hashes(fs / "data") == buffer_before, (seed, cut)
        assert run_powercut(script, fs, seed, "again", 0)["done"] is None, (seed, cut)
        assert whole(fs, boot(tmp_path, fs)) == "0.5.0", (seed, cut)
        assert tree_hashes(fs / "data") == buffer_before, (seed, cut)
    assert {"write", "torn write", "rename", "after a rename", "remove"} <= set(seen), seen


def run_powercut(script, fs, seed: int, phase: str, cut: int) -> dict:
    r = subprocess.run([micropython(), str(script), str(fs), str(seed), phase, str(cut)], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "MICROPYPATH": str(LIB)}, check=False)
    assert r.returncode in (0, 9), r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def boot(tmp_path, fs) -> str:
    """The slot the loader runs at the next power-on, given the record the cut left (an unreadable one: none)."""
    try:
        rec = json.loads((fs / "fw.json").read_text())
    except (OSError, ValueError):
        rec = {}
    return choose(tmp_path, rec, "PWRON_RESET", fs=fs)[0]


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=80),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=70), inner,
                                                                                        max_size=4), max_leaves=12)
hostile = st.one_of(
    json_values,
    st.fixed_dictionaries({"version": json_values, "files": json_values, "sig": json_values}),
    st.fixed_dictionaries({"version": st.sampled_from(["0.5.0", "9.9.9", "1" * 40, "0..1", ""]),
                           "files": st.dictionaries(st.text(max_size=70), json_values, max_size=6),
                           "sig": st.text("0123456789abcdef", min_size=0, max_size=70)}))


@given(st.lists(hostile, min_size=25, max_size=25))
def test_whatever_a_config_carries_as_fw_the_node_answers_and_never_crashes(tmp_path_factory, offers):
    """Generated `fw` values, hostile or broken (wrong types, odd versions, paths and hashes of any text),
    through the node's own check in MicroPython, 25 at a time: each is nothing to do, a refusal, or a release,
    and a release only when it is well formed and signed with the node's key (none of these is)."""
    tmp = tmp_path_factory.mktemp("hostile")
    got = verdicts(tmp, offers)
    assert len(got) == len(offers)
    assert all(v is None or isinstance(v, str) for v in got), [v for v in got if isinstance(v, dict)]
