"""AUDIT F2, end to end: one node fills the disk limit with `partial` dead letters (not budgeted),
and then the ingest stops acknowledging every node, for good (dead letters never expire)."""

import json
import time

from tests.audit.helpers import Node, up
from rimba.dev.harness import wait_until


def payload(node: str, k: int, now: int) -> bytes:
    seqs = list(range(k * 150 + 1, k * 150 + 151))
    body = json.loads(up(node, seqs, epoch=1, now=now, t0=now - 200_000))
    for r in body["r"]:
        r.update({"air_rh_pct": None, "air_pressure_hpa": None, "soil_temp_c": None})
    body["r"][0]["air_temp_c"] = 999.0  # out of range: a `partial` dead letter of ~16 KB, no budget taken
    return json.dumps(body, separators=(",", ":")).encode()


def test_one_node_cannot_stop_the_acknowledgements_of_the_others(platform_factory):
    p = platform_factory({"ho-02": ("smp29", "forest"), "ok-02": ("smp29", "forest")})
    ing = p.ingest(spool_max_mb=4)  # 4 MB: the node's whole dead-letter burst (100 x 16 KiB) is 1.6 MB
    hostile, honest = Node(p.settings, "smp29", "ho-02"), Node(p.settings, "smp29", "ok-02")
    try:
        now = int(time.time())
        hostile.flush([hostile.pub("up", payload("ho-02", k, now)) for k in range(400)])  # 6.5 MB, 400 messages
        wait_until(lambda: p.count() >= 400 * 149 * 0.5, 60, "the hostile node's readings")  # spool drains
        honest.flush([honest.pub("up", up("ok-02", [1], now=now, t0=now - 60))])
        wait_until(lambda: p.count("SELECT count(seq) FROM reading WHERE node = 'ok-02'") == 1, 30,
                   "the honest node's reading (ingest log: " + ing.output()[-600:] + ")")
    finally:
        hostile.close()
        honest.close()
