# The node's entry point: one wake, then deep sleep (which resets the chip: main.py runs again).
# Anything unexpected resets the board; the boot-loop counter in cycle.json turns repeated crashes
# into safe mode (no sensors, status only) instead of a flat battery.
import machine

try:
    import os
    ROOT = os.getenv("RIMBA_ROOT") or "/data"  # the unix port (tests) says where; the board has no getenv
except (ImportError, AttributeError):
    ROOT = "/data"


def main():
    if machine.reset_cause() == machine.DEEPSLEEP_RESET and machine.wake_reason() == machine.EXT0_WAKE:
        import sensors

        ms = sensors.tip_wake()  # a rain tip woke the chip: counted; back to sleep unless a sample is due
        if ms:
            machine.deepsleep(ms)
    import config
    import node

    if node.update_due(ROOT):
        n = node.Node(ROOT, None)
        n.update()  # a boot of its own for a firmware update: nothing else in the heap
        if n.reboot:
            machine.reset()  # into the release just installed, on trial (loader.py)
        import sensors  # not installed: sleep on until the sample that was due

        machine.deepsleep(sensors.resume(n.cfg["profile"], n.cfg["sample_s"] * 1000))
    import sensors

    cfg = config.load(ROOT)
    reader = sensors.reader(cfg["profile"], cfg)
    n = node.Node(ROOT, reader)
    ms = n.wake()
    if n.reboot:
        machine.reset()  # a release was offered: the next boot installs it
    sensors.before_sleep(reader, ms)
    machine.deepsleep(ms)


try:
    main()
except Exception as err:  # noqa: BLE001 - the last line of defence on a board nobody visits
    print("rimba: crashed:", err)
    import sys

    sys.print_exception(err)  # the serial log of a board on the bench shows where
    machine.reset()
