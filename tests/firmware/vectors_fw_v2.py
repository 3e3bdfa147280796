# The contract v2 golden pairs through the firmware's own store and encoder, in MicroPython: each pair's
# readings (its v1 body's values, as the sensors would give them) are appended to a real flash buffer
# (epoch, first seq and lost ranges as the vector says), and the node's batch builder sends them as v2 and
# as v1 (`wire` 2 and 1). Prints one JSON line: [{"name", "v2", "v1"}] with the payloads as text.
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


def rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        os.remove(path + "/" + n)
    os.rmdir(path)


out = []
for k, p in enumerate(vectors["pairs"]):
    v2, v1 = p["v2"]["body"], p["v1"]["body"]
    root = "%s/b%d" % (ROOT, k)
    rmtree(root)
    os.mkdir(root)
    first = v2.get("seq", 1)
    with open(root + "/state.json", "w") as f:
        json.dump({"epoch": v2["epoch"], "next": first, "acked": first - 1, "lost": v2.get("lost", [])}, f)
    s = store.Store(root)
    names = v2.get("m", [])
    for r in v1["r"]:
        seq = s.append(r["t"], wire.head(names), wire.row(r, names))
        assert seq == r["seq"], (seq, r["seq"])
    recs = s.pending_raw(200)
    n = Stub()
    n.store = s
    n.st = {"syncs": [], "synced": v2["tq"] == "ntp", "boot": v2["boot"]}
    n.fw = {"version": v2["fw"]}
    built = {"name": p["name"]}
    for version in (2, 1):
        n.cfg = {"node": v2["node"], "wire": version}
        pieces, count = node.Node._batch_text(n, recs, now=v2["now"])
        assert count == len(recs), (p["name"], count, len(recs))
        built["v%d" % version] = "".join(pieces)
    out.append(built)
print(json.dumps(out))
