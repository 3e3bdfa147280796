# The node's configuration: defaults, then the node's file (written by provisioning), then the last
# good update from the platform's retained `config` mailbox (contract v1 and v2: a higher `rev` is
# applied at the next wake; unknown keys are ignored; an invalid value rejects the update and the node
# keeps its last good configuration). `wire` is the contract version the node speaks, all its topics
# under that version's root: 2, or 1 for a node kept on v1 while the platform it talks to needs it. Only the sampling keys can change remotely: a wrong Wi-Fi or broker
# setting sent over the air could cut the node off for good.
import json

DEFAULTS = {
    "node": "", "site": "", "profile": "forest", "rev": 0,
    "sample_s": 600, "send_every": 6, "batch": 200, "capacity": 4000, "wire": 2,
    "wifi_ssid": "", "wifi_password": "", "wifi_timeout_ms": 15000,
    "mqtt_host": "", "mqtt_port": 1883, "mqtt_user": "", "mqtt_password": "", "mqtt_tls": False,
    "ntp_host": "pool.ntp.org", "puback_ms": 5000, "wdt_ms": 60000, "safe_after": 5,
    "send_at_power_on": True,  # a freshly flashed or powered node reports at once
    # the probe and the mount, measured for each node at installation (hardware/bundle.py writes them)
    "soil_dry_mv": 2750, "soil_wet_mv": 1250, "mount_cm": 310.0,
    "wifi_ip": [],  # [ip, netmask, gateway, dns]: a static address skips DHCP (about half a connect's charge)
    # firmware updates (ota.py): the node's update key (64 hex digits, made at provisioning, never sent
    # over the air), how long a trial release waits for the platform's ack, how long a download may take
    "fw_key": "", "ack_ms": 10000, "fw_ms": 120000,
}
# key: (type, low, high) for what the mailbox may set
REMOTE = {"sample_s": (int, 10, 86400), "send_every": (int, 1, 144), "batch": (int, 1, 200)}
CHOICES = {"wire": (1, 2)}  # keys of the node's file with a few valid values
NODE_FILE = "node.json"
GOOD_FILE = "remote.json"
OFFER_FILE = "offer.json"  # a checked firmware release, for the boot that installs it (ota.py)


def exists(path):
    """Whether a file or directory of the node's is there."""
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def read(path):
    """A JSON object from a file of the node's, or {} when it is missing, torn or not an object."""
    try:
        with open(path) as f:
            out = json.load(f)
        return out if isinstance(out, dict) else {}
    except (OSError, ValueError):
        return {}


def _fits(v, default):
    """A value of the default's type (an int where a float is expected too; a bool is not a number)."""
    if isinstance(default, bool) or isinstance(v, bool):
        return isinstance(v, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(v, (int, float))
    return isinstance(v, type(default))


def load(root, notes=None):
    """Defaults, the node's file, the last good remote update. A key the firmware does not know, or a
    value of the wrong type, keeps the default and is named in `notes` (logged at the next wake)."""
    cfg = dict(DEFAULTS)
    for path in (root + "/" + NODE_FILE, root + "/" + GOOD_FILE):
        for k, v in read(path).items():
            if k not in DEFAULTS:
                if notes is not None:
                    notes.append("config: unknown key %s ignored" % k)
            elif not _fits(v, DEFAULTS[k]):
                if notes is not None:
                    notes.append("config: %s must be %s, kept %r" % (k, type(DEFAULTS[k]).__name__, DEFAULTS[k]))
            elif k in CHOICES and v not in CHOICES[k]:
                if notes is not None:
                    notes.append("config: %s must be one of %s, kept %r" % (k, CHOICES[k], cfg[k]))
            else:
                cfg[k] = v
    return cfg


def check(update, version=2):
    """The settable keys of a mailbox payload of contract `version`, or an error string."""
    if not isinstance(update, dict) or update.get("v") != version or isinstance(update.get("v"), bool):
        return "not a version %d config" % version
    rev = update.get("rev")
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 1:
        return "rev must be a positive integer"
    out = {"rev": rev}
    for k, (kind, low, high) in REMOTE.items():
        if k in update:
            v = update[k]
            if not isinstance(v, kind) or isinstance(v, bool) or not low <= v <= high:
                return "%s must be %s in %s..%s" % (k, kind.__name__, low, high)
            out[k] = v
    return out


def apply(root, cfg, payload):
    """Apply a mailbox payload if its rev is newer and it is valid. Returns (cfg, note)."""
    try:
        update = json.loads(payload)
    except ValueError:
        return cfg, "config: not JSON"
    if isinstance(update, dict) and isinstance(update.get("rev"), int) and update["rev"] <= cfg["rev"]:
        return cfg, None  # nothing new
    good = check(update, cfg["wire"])
    if isinstance(good, str):
        return cfg, "config rev %s rejected: %s" % (update.get("rev") if isinstance(update, dict) else "?", good)
    new = dict(cfg)
    new.update(good)
    saved = read(root + "/" + GOOD_FILE)
    saved.update(good)
    tmp = root + "/" + GOOD_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(saved, f)
    import os
    os.rename(tmp, root + "/" + GOOD_FILE)
    return new, "config rev %d applied" % good["rev"]
