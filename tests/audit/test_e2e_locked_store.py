"""AUDIT F10, end to end (a real fault with several processes on one state dir): a process that holds the
store's write lock for over a minute (frozen: SIGSTOP, a container pause, swap) makes every OTHER ingest
process exit. `sqlite3.connect(timeout=60)`; the processor's periodic stats/sweep transactions raise
StoreError("database is locked") out of `_process_once`, and `run()` stops. The doc says only a broken
store (disk full, I/O error) stops the service; a busy one is not broken. (Fixed: a busy store is retried.)"""

import sqlite3
import time

from rimba.dev.harness import wait_until


def test_a_frozen_sibling_holding_the_store_does_not_stop_ingest(platform_factory):
    p = platform_factory({"ok-04": ("smp29", "forest")})
    ing = p.ingest()
    path = p.settings.state_path / "ingest.sqlite3"
    sibling = sqlite3.connect(path, isolation_level=None)
    sibling.execute("BEGIN IMMEDIATE")  # the frozen process, inside its commit
    try:
        from ingest.store import BUSY_TIMEOUT_S

        deadline = time.monotonic() + 3 * BUSY_TIMEOUT_S  # three of the store's waits, each given up and retried
        while time.monotonic() < deadline and ing.proc.poll() is None:
            time.sleep(0.5)  # noqa: sleep-ok (polling a deadline)
        assert ing.proc.poll() is None, "ingest exited while a sibling held the store:\n" + ing.output()[-800:]
    finally:
        sibling.execute("ROLLBACK")
        sibling.close()
    wait_until(lambda: ing.proc.poll() is None, 5, "ingest alive")
