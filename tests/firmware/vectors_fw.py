# The contract v1 golden vectors through the firmware's own store and batch builder with `wire` 1: for each
# valid `up` vector with a `body`, its readings are appended to a real flash buffer (epoch, first seq and lost
# ranges as the vector says) and sent as v1 batches (one per run of the same columns and rising times).
# Prints one JSON line: [{"name", "payloads": [text, ...]}].
import json
import os

import node
import store
import wire

with open(os.getenv("RIMBA_VECTORS")) as f:
    vectors = json.load(f)
ROOT = os.getenv("RIMBA_BUF")


class Stub:
    pass


out = []
for k, v in enumerate(vectors["up_valid"]):
    body = v.get("body")
    if not isinstance(body, dict):
        continue
    root = "%s/v%d" % (ROOT, k)
    os.mkdir(root)
    first = body["r"][0]["seq"] if body["r"] else 1
    with open(root + "/state.json", "w") as f:
        json.dump({"epoch": body["epoch"], "next": first, "acked": first - 1, "lost": body.get("lost") or []}, f)
    s = store.Store(root)
    for r in body["r"]:
        names = sorted(m for m in r if m in wire.DEC)
        assert s.append(r["t"], wire.head(names), wire.row(r, names)) == r["seq"]
    n = Stub()
    n.cfg = {"node": body["node"], "wire": 1}
    n.fw = {"version": body["fw"]}
    n.st = {"syncs": [], "synced": body["tq"] == "ntp"}
    n.store = s
    payloads = []
    recs = s.pending_raw(200)
    while True:
        pieces, count = node.Node._batch_text(n, recs, now=body["now"])
        payloads.append("".join(pieces))
        recs = recs[count:]
        if not recs:
            break
    out.append({"name": v["name"], "payloads": payloads})
print(json.dumps(out))
