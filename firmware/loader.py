# The boot selector: flashed once as the filesystem's /main.py, never updated over the air, so a node
# always has something that can choose a good release. The application lives in two slots, /fw/a and
# /fw/b (each a release: main.py, lib/*.mpy, release.json), and /fw.json says which one runs:
#   {"good": "a"}                               the good release, run at every boot
#   {"good": "a", "trial": "b", "tries": 1, "wdt": 0}   a new release on trial (lib/ota.py installs it)
#   {"good": "a", "failed": "1.2.0", "why": "..."}      the last release offered was rolled back or refused
# Every boot of a trial counts (`tries`, written before the trial runs), and so does a watchdog reset
# during it (`wdt`); the trial marks itself good (ota.mark_good) when a send cycle gets the platform's
# ack. A trial that has had three boots without that, or two watchdog resets, is rolled back here: the
# record is replaced by the good slot with `failed` (wire-v2 "Firmware updates"). A wake by the rain
# gauge (ext0) only counts a tip, so it is not a boot of the release. The record is replaced atomically
# (a temporary file renamed over it: atomic on LittleFS and POSIX), so a power cut leaves the old
# record or the new one, and either names a complete slot.
import machine
import os
import sys

SLOTS = ("a", "b")
TRIES, WATCHDOGS = 3, 2
TRIAL_WDT_MS = 120000  # a trial that hangs before its own watchdog is armed still resets


def _fs():
    """The filesystem root: "" on the board; the unix port (tests) has the data directory in RIMBA_ROOT."""
    try:
        data = os.getenv("RIMBA_ROOT")
    except AttributeError:  # the ESP32 port has no getenv
        data = None
    return data.rsplit("/", 1)[0] if data else ""


def _json(path):  # its own, as is all of it: the selector depends on no module of any release
    import json

    try:
        with open(path) as f:
            out = json.load(f)
        return out if isinstance(out, dict) else {}
    except (OSError, ValueError):
        return {}


def _complete(fs, slot):
    return slot in SLOTS and "version" in _json(fs + "/fw/" + slot + "/release.json")


def choose(fs, rec, cause, ext0):
    """(slot to run, the record to write or None)."""
    good = rec.get("good")
    if not _complete(fs, good):
        others = [s for s in SLOTS if _complete(fs, s)]
        good = others[0] if others else "a"  # a record naming nothing whole: whatever is whole
        rec = {"good": good}
        return good, rec
    trial = rec.get("trial")
    if trial is None:
        return good, None
    if trial == good or not _complete(fs, trial):
        return good, {"good": good}
    if cause == machine.DEEPSLEEP_RESET and ext0:
        return trial, None
    new = dict(rec)
    if cause == machine.WDT_RESET:
        new["wdt"] = new.get("wdt", 0) + 1
    if new.get("tries", 0) >= TRIES or new.get("wdt", 0) >= WATCHDOGS:
        why = "%d watchdog resets" % new["wdt"] if new.get("wdt", 0) >= WATCHDOGS else \
            "%d boots without an acknowledged send" % new["tries"]
        version = _json(fs + "/fw/" + trial + "/release.json").get("version")
        return good, {"good": good, "failed": version, "why": why}
    new["tries"] = new.get("tries", 0) + 1
    return trial, new


def write(fs, rec):
    import json

    tmp = fs + "/fw.json.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(rec))
    os.rename(tmp, fs + "/fw.json")


def main():
    fs = _fs()
    rec = _json(fs + "/fw.json")
    cause = machine.reset_cause()
    slot, new = choose(fs, rec, cause, cause == machine.DEEPSLEEP_RESET and machine.wake_reason() == machine.EXT0_WAKE)
    if new is not None:
        write(fs, new)
    if new is not None and new.get("trial") == slot:
        machine.WDT(timeout=TRIAL_WDT_MS)
    base = fs + "/fw/" + slot
    sys.path[:0] = [base, base + "/lib"]
    # the slot's main.py, imported: compiled as it is read from flash, never whole in RAM as one string
    __import__("main")


try:
    main()
except Exception as err:  # noqa: BLE001 - a release that cannot even start: reset, and the next boot counts
    print("rimba: boot failed:", err)
    machine.reset()
