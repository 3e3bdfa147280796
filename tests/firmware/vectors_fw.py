# The golden vectors through the firmware's own batch builder: for each valid `up` vector with a `body`,
# the readings, epoch, clock quality and lost ranges go in, the firmware's JSON comes out (one line each).
import json
import os

import node

with open(os.getenv("RIMBA_VECTORS")) as f:
    vectors = json.load(f)


class FakeStore:
    def __init__(self, epoch, lost):
        self.epoch = epoch
        self._lost = lost

    def lost(self):
        return self._lost


class Stub:
    pass


out = []
for v in vectors["up_valid"]:
    body = v.get("body")
    if not isinstance(body, dict):
        continue
    n = Stub()
    n.cfg = {"node": body["node"]}
    n.st = {"syncs": [], "synced": body["tq"] == "ntp"}
    n.store = FakeStore(body["epoch"], body.get("lost") or [])
    payload = "".join(node.Node._batch_text(n, [(r["seq"], r["t"], json.dumps(r)) for r in body["r"]], now=body["now"]))
    out.append({"name": v["name"], "payload": payload})
print(json.dumps(out))
