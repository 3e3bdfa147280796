"""Firmware releases, the platform's side: the signature against the golden vector, what a release may
contain (properties), the node's update key from provisioning to its bundle, and `rimba firmware
release` against the real broker: every file retained under its SHA-256, recorded, idempotent, and a
changed release under the same version refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hardware import release as rel
from rimba import image
from hardware.fwstore import FirmwareStore
from hardware.provision import Provisioner
from rimba.errors import ConfigError
from rimba.adapters.mqtt import Mqtt
from rimba.dev.harness import ROOT, env_for, wait_until

VECTOR = json.loads((ROOT / "tests" / "vectors" / "fw-sig.json").read_text())


# -- the signature -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", VECTOR["valid"], ids=lambda c: c["version"])
def test_the_signature_is_the_golden_vectors(case):
    assert rel.canonical(case["files"], case["version"]).decode() == case["canonical"]
    assert rel.sign(case["key"], case["files"], case["version"]) == case["sig"]
    assert rel.manifest({p: b.encode("latin-1") for p, b in case["blobs"].items()}) == case["files"]
    offered = rel.offer(case["key"], case["files"], case["version"])
    assert offered == {"version": case["version"], "files": case["files"], "sig": case["sig"]}


@pytest.mark.parametrize("case", VECTOR["refused"], ids=lambda c: c["why"])
def test_a_changed_release_or_another_key_does_not_match_the_signature(case):
    assert rel.sign(case["key"], case["files"], case["version"]) != case["sig"]


def test_the_module_doctests_hold():
    import doctest

    from hardware import rollout

    assert doctest.testmod(rel).failed == 0 and doctest.testmod(rollout).failed == 0


# -- what a release may contain ----------------------------------------------------------------------------
SEGMENT_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def path_allowed(path: str) -> bool:
    """The rule read plainly: relative segments of the allowed characters, none empty, no '..' anywhere,
    no '.' segment, at most PATH_MAX characters."""
    if not path or len(path) > rel.PATH_MAX or ".." in path:
        return False
    return all(seg and seg != "." and set(seg) <= SEGMENT_CHARS for seg in path.split("/"))


paths = st.one_of(st.text(max_size=80),
                  st.lists(st.text(alphabet="ab._-/Z9\\ \n", max_size=12), min_size=1, max_size=5).map("/".join))


@given(paths)
@example("lib/node.mpy")
@example("../main.py")
@example("lib/../../boot.py")
@example("/main.py")
@example("lib//x.mpy")
@example("lib/./x.mpy")
@example("a..b")
@example("main.py\n")
@example("ｍain.py")  # a full-width letter: not ASCII
def test_a_release_path_is_accepted_exactly_when_it_is_a_plain_relative_path(path):
    try:
        rel.check_path(path)
        accepted = True
    except ConfigError as err:
        accepted = False
        assert "\n" not in str(err)
    assert accepted == path_allowed(path)


@given(st.one_of(st.text(max_size=40), st.lists(st.integers(0, 10**6), min_size=1, max_size=6)
                 .map(lambda xs: ".".join(map(str, xs)))))
@example("1.2.0")
@example("1..2")
@example(".1")
@example("1.2.")
@example("v1.2")
@example("١.٢")  # Arabic-Indic digits: digits to Python, not to the contract
def test_a_version_is_integers_joined_by_dots_and_compares_as_integers(text):
    plain = bool(text) and len(text) <= image.VERSION_MAX and all(p and set(p) <= set("0123456789")
                                                              for p in text.split("."))
    try:
        key = rel.version_key(text)
    except ConfigError:
        assert not plain
        return
    assert plain and key == tuple(int(p) for p in text.split("."))


@given(st.lists(st.lists(st.integers(0, 300), min_size=1, max_size=4), min_size=2, max_size=6))
def test_versions_sort_as_the_node_compares_them(parts):
    versions = [".".join(map(str, p)) for p in parts]
    assert sorted(versions, key=rel.version_key) == [".".join(map(str, p)) for p in sorted(parts)]


@given(st.dictionaries(st.text(alphabet="abc/._", min_size=1, max_size=10), st.binary(max_size=20), min_size=1,
                       max_size=4), st.sampled_from(["1", "1.2.0", "20.1"]))
def test_the_signature_covers_every_path_hash_and_the_version(blobs, version):
    blobs = {p: b for p, b in blobs.items() if path_allowed(p)}
    if not blobs:
        return
    key = VECTOR["valid"][0]["key"]
    files = rel.manifest(blobs)
    sig = rel.sign(key, files, version)
    assert sig == hmac.new(bytes.fromhex(key), json.dumps({"files": files, "version": version}, sort_keys=True,
                                                          separators=(",", ":")).encode(), hashlib.sha256).hexdigest()
    first = sorted(files)[0]
    assert rel.sign(key, {**files, first: hashlib.sha256(b"x" + blobs[first]).hexdigest()}, version) != sig
    assert rel.sign(key, {**files, first + "x": files[first]}, version) != sig
    assert rel.sign(key, files, version + ".1") != sig


def test_bad_hashes_keys_and_trees_are_refused_in_one_line(tmp_path):
    for files in ({}, {"main.py": "AB" * 32}, {"main.py": "ab" * 31}, {"../x": "ab" * 32}, ["main.py"]):
        with pytest.raises(ConfigError):
            rel.check_files(files)
    for key in ("", "AB" * 32, "ab" * 16, None):
        with pytest.raises(ConfigError):
            rel.sign(key, {"main.py": "ab" * 32}, "1")
    with pytest.raises(ConfigError, match="lib/ and main.py"):
        rel.build(tmp_path)
    with pytest.raises(ConfigError, match="--version"):
        image.tree_version(tmp_path)
    assert image.tree_version(ROOT / "firmware") == re.search(r'^FW = "(.*)"', (ROOT / "firmware" / "lib" / "node.py")
                                                             .read_text(), re.M)[1]


# -- the node's update key ---------------------------------------------------------------------------------
def _cli(values: dict, *argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "rimba", *argv], env=env_for(values), capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, check=False)


def test_node_add_makes_the_update_key_beside_the_password_and_remove_drops_it(tmp_path):
    from rimba.dev.harness import fleet_text

    (tmp_path / "fleet.toml").write_text(fleet_text({}))
    values = {"state_dir": str(tmp_path / "state"), "fleet": str(tmp_path / "fleet.toml"),
              "mqtt_url": "mqtt://127.0.0.1:1"}
    r = _cli(values, "node", "add", "--site", "smp29", "--profile", "forest")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "state" / "nodes" / "smp29-01.json"
    cfg = json.loads(path.read_text())
    key = cfg["fw_key"]
    assert re.fullmatch(r"[0-9a-f]{64}", key) and oct(path.stat().st_mode & 0o777) == "0o600"
    assert key not in r.stdout + r.stderr  # never printed
    from rimba import settings as settings_mod

    p = Provisioner(settings_mod.build(overrides=values, env={}))
    assert p.update_key("smp29-01") == key and p.credentials("smp29-01") == cfg["mqtt_password"]
    p.credentials("smp29-01", fresh=True)  # a new password keeps the key the node was flashed with
    again = json.loads(path.read_text())
    assert again["fw_key"] == key and again["mqtt_password"] != cfg["mqtt_password"]
    # a node provisioned before there were keys gets one on first need, once
    del again["fw_key"]
    path.write_text(json.dumps(again))
    assert p.credentials("smp29-01") == again["mqtt_password"]
    made = json.loads(path.read_text())["fw_key"]
    assert made != key and p.update_key("smp29-01") == made and oct(path.stat().st_mode & 0o777) == "0o600"
    # the bundle carries it to the node, and says nothing of it
    r = _cli(values, "firmware", "bundle", "--node", "smp29-01", "--out", str(tmp_path / "bundle"))
    assert r.returncode == 0 and made not in r.stdout + r.stderr, r.stderr
    assert json.loads((tmp_path / "bundle" / "data" / "node.json").read_text())["fw_key"] == made
    r = _cli(values, "node", "remove", "smp29-01")
    assert r.returncode == 0 and not path.exists(), r.stderr
    with pytest.raises(ConfigError, match="no config file"):
        p.update_key("smp29-01")
    r = _cli(values, "node", "add", "--site", "smp29", "--profile", "forest", "--id", "smp29-01")
    assert json.loads(path.read_text())["fw_key"] not in (key, made)  # a node added again: a new key


# -- `rimba firmware release` on the real broker ---------------------------------------------------------
def retained(settings, topics, timeout=10.0) -> dict:
    """{topic: payload} of the retained messages on `topics` (subscribed one by one; each waited for)."""
    got = {}
    m = Mqtt(settings.broker, f"spy-{time.monotonic_ns()}", v5=False, subscriptions=tuple(topics),
             on_message=lambda topic, payload, *_: got.__setitem__(topic, payload)).start()
    try:
        wait_until(lambda: set(got) >= set(topics), timeout, f"retained messages on {len(topics)} topics")
    finally:
        m.stop()
    return got


def clear_retained(settings, topics) -> None:
    m = Mqtt(settings.broker, f"clear-{time.monotonic_ns()}", v5=False).start()
    try:
        m.wait_published([m.publish(t, b"", qos=1, retain=True) for t in topics], 10)
    finally:
        m.stop()


def firmware_tree(tmp_path, name: str, main: str = "import node\n"):
    """A copy of the firmware tree with its own main.py (a release with one file changed)."""
    import shutil

    out = tmp_path / name
    shutil.copytree(ROOT / "firmware" / "lib", out / "lib")
    (out / "main.py").write_text(main)
    return out


@pytest.fixture
def released(platform_factory):
    """A platform with a fleet, whose retained firmware files are cleared at the end."""
    p = platform_factory({"smp29-01": ("smp29", "forest")})
    yield p
    store = FirmwareStore.in_state_dir(p.settings.state_path)
    shas = {sha for _v, files, _c in store.releases() for sha in files.values()}
    store.close()
    clear_retained(p.settings, [f"rimba/v2/fw/{sha}" for sha in sorted(shas)])


def test_a_release_publishes_every_file_retained_by_its_hash_and_is_recorded_once(released, tmp_path):
    p = released
    tree = firmware_tree(tmp_path, "a")
    r = _cli(p.values, "firmware", "release", "--from", str(tree), "--version", "7.0.1")
    assert r.returncode == 0, r.stderr
    store = FirmwareStore.in_state_dir(p.settings.state_path)
    files = store.release("7.0.1")
    built = rel.build(tree)
    assert files == rel.manifest(built) and set(files) == {"main.py", *(f"lib/{m.stem}.mpy" for m in
                                                                        (tree / "lib").glob("*.py"))}
    on_broker = retained(p.settings, [f"rimba/v2/fw/{sha}" for sha in files.values()])
    for path, sha in files.items():
        assert hashlib.sha256(on_broker[f"rimba/v2/fw/{sha}"]).hexdigest() == sha == image.digest(built[path])
        assert store.blob(sha) == built[path]  # kept: it can be published again
    assert f"release 7.0.1: {len(files)} files" in r.stdout
    # again, the same files: nothing changes
    r = _cli(p.values, "firmware", "release", "--from", str(tree), "--version", "7.0.1")
    assert r.returncode == 0 and "nothing changed" in r.stdout, r.stderr
    assert [v for v, _f, _c in store.releases()] == ["7.0.1"]
    # the same version with one file changed: refused in one line, nothing of it published
    other = firmware_tree(tmp_path, "b", main="import node\nnode.main()\n")
    r = _cli(p.values, "firmware", "release", "--from", str(other), "--version", "7.0.1")
    assert r.returncode == 2 and "bump the version" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    changed = image.digest((other / "main.py").read_bytes())
    assert store.release("7.0.1") == files and store.blob(changed) is None
    r = _cli(p.values, "firmware", "release", "--from", str(other), "--version", "7.0.01")
    assert r.returncode == 2 and "is 7.0.1" in r.stderr, r.stderr
    r = _cli(p.values, "firmware", "release", "--from", str(other), "--version", "7.x")
    assert r.returncode == 2 and "integers joined by dots" in r.stderr, r.stderr
    store.close()


def test_a_release_from_the_tree_takes_its_version_from_node_py(released):
    p = released
    r = _cli(p.values, "firmware", "release")
    assert r.returncode == 0, r.stderr
    store = FirmwareStore.in_state_dir(p.settings.state_path)
    assert [v for v, _f, _c in store.releases()] == [image.tree_version(ROOT / "firmware")]
    store.close()
