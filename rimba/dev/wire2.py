"""A v1 `up` batch as contract v2 batches, for the simulator and the benchmarks (the firmware has
its own encoder, `firmware/lib`, held to the same golden vectors).

A v2 batch is one run of consecutive seqs with one set of columns, so a v1 batch splits where its
seqs jump or where its metrics change. Values become integers in each metric's resolution
(`rimba.metrics`, `dec`); a v1 value finer than that is rounded, as the node would have.

>>> b = {"v": 1, "node": "n-01", "epoch": 7, "now": 1764301800, "tq": "ntp", "fw": "1.0.0",
...      "r": [{"seq": 1, "t": 1764300000, "air_temp_c": 28.31}, {"seq": 2, "t": 1764300600, "air_temp_c": None}]}
>>> to_v2(b, boot=3)[0]["x"], to_v2(b, boot=3)[0]["dt"]
([[2831], [None]], 600)
"""

from __future__ import annotations

from rimba import contract


def to_v2(batch: dict, boot: int) -> list:
    """The v2 batches holding the readings of v1 `batch` (its `lost` goes with the first)."""
    runs: list = []
    for r in batch["r"]:
        names = [k for k in r if k in contract.SCALE]
        if runs and r["seq"] == runs[-1]["seqs"][-1] + 1 and names == runs[-1]["m"]:
            run = runs[-1]
        else:
            run = {"m": names, "seqs": [], "times": [], "x": []}
            runs.append(run)
        run["seqs"].append(r["seq"])
        run["times"].append(r["t"])
        run["x"].append([None if r[k] is None else round(r[k] * contract.SCALE[k]) for k in names])
    head = {"v": 2, "node": batch["node"], "epoch": batch["epoch"], "boot": boot, "now": batch["now"],
            "tq": batch["tq"]}
    if "fw" in batch:
        head["fw"] = batch["fw"]
    out = []
    for run in runs:
        steps = [b - a for a, b in zip(run["times"], run["times"][1:])]
        if any(s < 1 for s in steps):  # v2 times strictly rise: a repeated second starts a new batch
            raise ValueError("readings of one batch share a second")
        dt = 1 if not steps else steps[0] if all(s == steps[0] for s in steps) else steps
        out.append(dict(head, seq=run["seqs"][0], t=run["times"][0], dt=dt, m=run["m"] or ["batt_v"],
                        x=run["x"] if run["m"] else [[None] for _ in run["x"]]))
    if batch.get("lost"):
        if out:
            out[0]["lost"] = batch["lost"]
        else:
            out.append(dict(head, x=[], lost=batch["lost"]))
    return out
