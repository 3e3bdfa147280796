"""AUDIT F1, end to end: one 130-byte `up` whose `now` is below -2**63 stops `rimba ingest` for good.

`now` and `t` are only checked to be JSON integers. received - now then exceeds SQLite's 64-bit
INTEGER, the re-basing is plausible (t = now - 10), so the batch is accepted and `min_offset` is
kept in NodeState. The commit raises OverflowError (not sqlite3.Error): Transaction._finish does
not roll back, the connection stays inside BEGIN IMMEDIATE, the one-by-one retry and the
`internal` fallback both fail with "cannot start a transaction within a transaction", and the
process exits. The message is unacknowledged, so every restart gets it again: a crash loop.
"""

import time

from tests.audit.helpers import Node, up
from rimba.dev.harness import wait_until


def test_one_message_with_a_huge_now_does_not_stop_ingest(platform_factory):
    p = platform_factory({"ho-01": ("smp29", "forest"), "ok-01": ("smp29", "forest")})
    ing = p.ingest()
    hostile, honest = Node(p.settings, "smp29", "ho-01"), Node(p.settings, "smp29", "ok-01")
    try:
        now = -(2**63)
        hostile.flush([hostile.pub("up", up("ho-01", [1], now=now, tq="rtc", times=[now - 10]))])
        t = int(time.time())
        honest.flush([honest.pub("up", up("ok-01", [1], now=t, t0=t - 60))])
        # the honest node's reading is stored and ingest still runs
        wait_until(lambda: p.count() >= 1 or ing.proc.poll() is not None, 30, "the honest reading")
        assert ing.proc.poll() is None, "ingest exited:\n" + ing.output()[-2000:]
        assert p.count() == 1
        # and a restart does not fall over the same message again
        ing.stop()
        again = p.ingest()
        honest.flush([honest.pub("up", up("ok-01", [2], now=t, t0=t - 60))])
        wait_until(lambda: p.count() >= 2 or again.proc.poll() is not None, 30, "the second honest reading")
        assert again.proc.poll() is None, "ingest exits at every restart:\n" + again.output()[-1500:]
    finally:
        hostile.close()
        honest.close()
