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
    import sensors

    cfg = config.load(ROOT)
    reader = sensors.reader(cfg["profile"], cfg)
    n = node.Node(ROOT, reader)
    ms = n.wake()
    if n.reboot:
        machine.reset()  # into the release just installed, on trial (loader.py)
    sensors.before_sleep(reader, ms)
    machine.deepsleep(ms)


try:
    main()
except Exception as err:  # noqa: BLE001 - the last line of defence on a board nobody visits
    print("rimba: crashed:", err)
    machine.reset()
