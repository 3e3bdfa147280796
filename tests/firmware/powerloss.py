# Power loss during buffer writes, in the real interpreter. Phase "crash": append readings and free some,
# with the power failing at a random point chosen by SEED: inside an append (part of the record
# written, a new segment's columns line too), while replacing state.json (after the temporary file, or
# after the rename), or while removing a freed segment. Phase "check": reopen the buffer, append one reading, print what is there.
import json
import os
import random
import sys

import store
import wire

ROOT = os.getenv("PL_ROOT")
SEED = int(os.getenv("PL_SEED"))
PHASE = os.getenv("PL_PHASE")
random.seed(SEED)


class PowerFails(Exception):
    pass


def die():
    sys.exit(9)  # the process ends here: nothing after this point reaches the flash


if PHASE == "crash":
    appends = random.randint(5, 150)
    where = random.choice(("append", "append", "state", "rename", "remove"))
    if SEED % 8 == 0:  # the first write of a new segment (its columns line and first reading) torn
        appends, where = random.choice((31, 41, 71, 81, 111, 121)), "append"
    ack_at = random.randint(1, appends)
    real_open = open
    real_os = os
    count = [0]

    class Torn:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            count[0] += 1
            if where == "append" and count[0] == appends:
                self.f.write(data[:random.randint(0, len(data) - 1)])
                self.f.close()
                print(json.dumps({"crashed": "append", "at": appends}))
                die()
            return self.f.write(data)

    def fake_open(path, mode="r"):
        f = real_open(path, mode)
        return Torn(f) if "a" in mode else f

    class FakeOS:
        def __getattr__(self, name):
            return getattr(real_os, name)

        def rename(self, a, b):
            if where == "state" and state_writes[0] == 0:
                print(json.dumps({"crashed": "state"}))
                die()
            real_os.rename(a, b)
            if where == "rename" and state_writes[0] == 0:
                print(json.dumps({"crashed": "rename"}))
                die()

        def remove(self, path):
            if where == "remove":
                print(json.dumps({"crashed": "remove"}))
                die()
            real_os.remove(path)

    state_writes = [1]
    s = store.Store(ROOT, capacity=100)
    store.open = fake_open
    store.os = FakeOS()
    for i in range(appends):
        # the columns change now and then: a new segment starts, its columns and first reading in one write
        names = ["air_temp_c"] if i % 40 < 30 else ["air_temp_c", "soil_vwc_pct"]
        s.append(1764300000 + 600 * i, wire.head(names), wire.row({"air_temp_c": 27.0 + i % 7}, names))
        if i + 1 == ack_at:
            state_writes[0] = 0  # the next state replacement is where the power may fail
            s.ack(s.epoch, ack_at)
            state_writes[0] = 1
    print(json.dumps({"crashed": None}))
else:
    s = store.Store(ROOT, capacity=100)
    recs = s.seqs()
    seqs = [r[0] for r in recs]
    new = s.append(1764400000, wire.head(["air_temp_c"]), wire.row({"air_temp_c": 30.0}, ["air_temp_c"]))
    again = store.Store(ROOT, capacity=100)  # and the reading written after the crash reads back
    readable = new in [r[0] for r in again.seqs()]
    print(json.dumps({"seqs": seqs, "acked": s.state["acked"], "lost": s.lost(), "new": new, "epoch": s.epoch,
                      "times": [r[1] for r in recs], "new_readable": readable}))
