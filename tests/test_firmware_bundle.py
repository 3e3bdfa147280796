"""`rimba firmware bundle`: the compiled firmware and the node's configuration, and its size."""

import hashlib
import json
import re
import subprocess
import sys

from rimba.dev.harness import ROOT, env_for


def test_bundle_compiles_every_module_and_writes_the_nodes_config(tmp_path):
    env = env_for({"mqtt_url": "mqtt://broker.example:8883", "fleet": str(ROOT / "fleet.toml")})
    env.update(RIMBA_WIFI_SSID="sekolah", RIMBA_WIFI_PASSWORD="rahasia-wifi")
    r = subprocess.run([sys.executable, "-m", "rimba", "firmware", "bundle", "--node", "smp29-01", "--out",
                        str(tmp_path)], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    modules = {p.stem for p in (ROOT / "firmware" / "lib").glob("*.py")}
    slot = tmp_path / "fw" / "a"  # the factory release, in the first of the two slots
    assert {p.stem for p in (slot / "lib").glob("*.mpy")} == modules and not list((slot / "lib").glob("*.py"))
    assert all(p.read_bytes()[:2] == b"M\x06" for p in (slot / "lib").glob("*.mpy"))  # .mpy version 6
    release = json.loads((slot / "release.json").read_text())
    assert set(release["files"]) == {"main.py"} | {f"lib/{m}.mpy" for m in modules}
    assert release["version"] == re.search(r'FW = "(.*)"', (ROOT / "firmware/lib/node.py").read_text()).group(1)
    assert all(hashlib.sha256((slot / rel).read_bytes()).hexdigest() == sha for rel, sha in release["files"].items())
    assert (tmp_path / "main.py").read_text().startswith("import loader") and (tmp_path / "loader.mpy").exists()
    cfg = json.loads((tmp_path / "data" / "node.json").read_text())
    assert (cfg["node"], cfg["site"], cfg["profile"], cfg["sample_s"]) == ("smp29-01", "smp29", "forest", 600)
    assert (cfg["mqtt_host"], cfg["mqtt_port"], cfg["wifi_ssid"]) == ("broker.example", 8883, "sekolah")
    assert "rahasia-wifi" not in r.stdout + r.stderr  # secrets only in the file
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert f"{total:,} bytes" in r.stdout and total < 64_000


def test_bundle_for_an_unknown_node_says_what_to_do(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rimba", "firmware", "bundle", "--node", "nobody", "--out",
                        str(tmp_path)], env=env_for({"fleet": str(ROOT / "fleet.toml")}), capture_output=True, text=True,
                       cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 2 and "not in the fleet file" in r.stderr and r.stderr.count("\n") == 1


def test_a_node_kept_on_contract_v1_gets_wire_1_and_a_wrong_version_stops_the_bundle(tmp_path):
    from rimba.dev.harness import FLEET

    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET + '\n[nodes.old-01]\nsite = "smp29"\nprofile = "forest"\ncadence_s = 600\nwire = 1\n'
                             '\n[nodes.bad-02]\nsite = "smp29"\nprofile = "forest"\ncadence_s = 600\nwire = 3\n')
    env = env_for({"fleet": str(fleet)})
    r = subprocess.run([sys.executable, "-m", "rimba", "firmware", "bundle", "--node", "old-01", "--out",
                        str(tmp_path / "a")], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "a" / "data" / "node.json").read_text())["wire"] == 1
    r = subprocess.run([sys.executable, "-m", "rimba", "firmware", "bundle", "--node", "bad-02", "--out",
                        str(tmp_path / "b")], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 2 and "wire must be one of 1, 2" in r.stderr and r.stderr.count("\n") == 1, r.stderr
