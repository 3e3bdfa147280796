"""The quality checks written as plainly as possible, one point at a time: the reference
that analytics.quality's vectorized code must equal (the STUMPY `naive.py` habit)."""

import math
import statistics

import numpy as np

from analytics.quality import (
    DRIFT,
    FAN,
    FLAT,
    GAP,
    HUMID_PM,
    LOG_FLOOR,
    NOISE,
    PM_METRICS,
    RAIN_RETURNS,
    RAIN_SIGN,
    RANGE,
    SATURATED_RH,
    SCALE_FLOOR,
    SITE_SHARED,
    SPIKE,
    STEP,
    Limits,
)
from rimba.metrics import METRICS


def naive_check(x, metrics, site_of=None, limits=None):
    lim = limits or Limits()
    n_nodes, n_t, n_m = len(x), len(x[0]), len(metrics)
    flags = [[[0] * n_m for _ in range(n_t)] for _ in range(n_nodes)]

    def present(i, t, j):
        return not math.isnan(x[i][t][j])

    def ok(i, t, j):
        if not 0 <= t < n_t or not present(i, t, j):
            return None
        m = METRICS[metrics[j]]
        v = x[i][t][j]
        return v if m.low <= v <= m.high else None

    def site_nodes(i):
        return [k for k in range(n_nodes) if site_of is not None and site_of[k] == site_of[i]] or [i]

    def crop_shared(i, t, j):  # another node of i's site at the humidity crop at t (or none to compare with)
        others = [k for k in site_nodes(i) if k != i]
        return not others or any(ok(k, t, j) is not None and ok(k, t, j) >= SATURATED_RH for k in others)

    def jump(k, t, j):
        a, b = ok(k, t - 1, j), ok(k, t, j)
        return None if None in (a, b) else b - a

    def rained(i, s):
        """Any gauge of i's site had rain at step s."""
        r = metrics.index("rain_mm") if "rain_mm" in metrics else None
        return r is not None and 0 <= s < n_t and any(x[k][s][r] > 0 for k in site_nodes(i))

    def unknown_rain(i, s):
        """A gauge of i's site (a node with a rain value at some time) has none at step s."""
        r = metrics.index("rain_mm") if "rain_mm" in metrics else None
        if r is not None and s == n_t and any(not math.isnan(x[k][u][r]) for k in site_nodes(i) for u in range(n_t)):
            return True  # after the last step: not reported yet
        return r is not None and 0 <= s < n_t and any(
            math.isnan(x[k][s][r]) and any(not math.isnan(x[k][u][r]) for u in range(n_t)) for k in site_nodes(i))

    def weather(i, t, j):
        """Why the weather explains a jump at (i, t, j), a set of: "along" (rain at the site near t, the way rain
        moves the metric), "back" (the way back as the shower ends, for what the air carries), "together" (the
        site jumping together)."""
        why = set()
        here = site_nodes(i)
        d = jump(i, t, j)
        if metrics[j] in RAIN_SIGN and d is not None and d != 0:
            along = (d > 0) == (RAIN_SIGN[metrics[j]] > 0)
            near = any(rained(i, s) for s in (t - 1, t, t + 1))
            if along and near:
                why.add("along")
            if not along and metrics[j] in RAIN_RETURNS and near:
                others = [jump(k, s, j) for k in here if k != i for s in (t - 1, t, t + 1) if 0 <= s < n_t]
                others = [v for v in others if v is not None]
                if others:  # the site's air drying too: another node jumping the same way within a step
                    if any((v > 0) == (d > 0) and v != 0 and abs(v) >= lim.together * abs(d) for v in others):
                        why.add("back")
                elif not rained(i, t + 2):  # nothing to compare: the shower ended
                    why.add("back")
        jumps = [jump(k, t, j) for k in here]
        jumps = [v for v in jumps if v is not None]
        if len(here) >= 3 and len(jumps) >= 3 and d is not None:
            med = statistics.median(jumps)
            if med != 0 and (med > 0) == (d > 0) and abs(med) >= lim.together * abs(d):
                why.add("together")
        return why

    for i in range(n_nodes):
        for j, name in enumerate(metrics):
            step = lim.step.get(name)
            spikes = set()
            for t in range(n_t):
                if present(i, t, j) and ok(i, t, j) is None:
                    flags[i][t][j] |= RANGE
                a, b, c = ok(i, t - 1, j), ok(i, t, j), ok(i, t + 1, j)
                if step is not None and None not in (a, b, c):
                    d1, d2 = b - a, b - c
                    if abs(d1) > step and abs(d2) > step and (d1 > 0) == (d2 > 0) and d1 != 0:
                        spikes.add(t)
                        if not (weather(i, t, j) and weather(i, t + 1, j)):
                            flags[i][t][j] |= SPIKE
            for t in range(1, n_t):
                a, b = ok(i, t - 1, j), ok(i, t, j)
                if (step is not None and None not in (a, b) and abs(b - a) > step and t not in spikes
                        and (t - 1) not in spikes and not weather(i, t, j)):
                    flags[i][t][j] |= STEP
            # flat runs: every window of flat_n values, all present, within the tolerance
            if name not in lim.flat_exempt:
                tol = lim.flat_tol.get(name, 0.0)
                n = lim.flat_n
                for s in range(n_t - n + 1):
                    window = [ok(i, k, j) for k in range(s, s + n)]
                    if None not in window and max(window) - min(window) <= tol:
                        for k in range(s, s + n):
                            if not (name == "air_rh_pct" and window[k - s] >= SATURATED_RH
                                    and crop_shared(i, k, j)):  # the crop, with another node of the site: fog
                                flags[i][k][j] |= FLAT
            # gaps
            for t in range(n_t):
                if present(i, t, j):
                    continue
                any_now = any(present(i, t, k) for k in range(n_m))
                before = any(present(i, s, j) for s in range(t))
                after = any(present(i, s, j) for s in range(t + 1, n_t))
                if (before or after) and (any_now or (before and after)):
                    flags[i][t][j] |= GAP
            # noise: reversals between large changes, PM on log(1 + x)
            w = lim.noise_window
            if n_t > w and name not in lim.flat_exempt:
                def y(t, i=i, j=j, name=name):
                    v = ok(i, t, j)
                    return v if v is None or name not in PM_METRICS else math.log1p(max(v, 0.0))
                d = [None] + [None if None in (y(t - 1), y(t)) else y(t) - y(t - 1) for t in range(1, n_t)]
                sizes = [abs(v) for v in d[::max(1, w // 2)] if v is not None and v != 0]
                if sizes:
                    typical = sorted(sizes)[int(0.75 * (len(sizes) - 1))]  # the upper quartile, "lower" rank
                    typical = max(typical, LOG_FLOOR if name in PM_METRICS else SCALE_FLOOR.get(name, 0.0))
                    big = [v is not None and abs(v) > lim.noise_factor * typical for v in d]
                    rev = [t + 1 < n_t and big[t] and big[t + 1] and (d[t] > 0) != (d[t + 1] > 0)
                           for t in range(n_t)]
                    for t in range(n_t):
                        lo, hi = max(0, t - w // 2), min(n_t, t - w // 2 + w)
                        if present(i, t, j) and sum(rev[lo:max(lo, hi)]) >= max(2, w // 3):
                            flags[i][t][j] |= NOISE
            # particulates in condensing air
            if name in PM_METRICS and "air_rh_pct" in metrics:
                r = metrics.index("air_rh_pct")
                for t in range(n_t):
                    if present(i, t, j) and present(i, t, r) and x[i][t][r] >= lim.condensing_rh:
                        flags[i][t][j] |= HUMID_PM

    if site_of is not None:  # spikes against the site: off site_spike_nodes others for 1 to site_spike_n samples
        for site in set(site_of):
            idx = [i for i in range(n_nodes) if site_of[i] == site]
            if len(idx) <= lim.site_spike_nodes:
                continue
            for j, name in enumerate(metrics):
                if name not in SITE_SHARED:
                    continue
                limit = dict(lim.site_spike_of).get(name, lim.site_spike) * SCALE_FLOOR[name]

                def diff(i, k, t, j=j, name=name):
                    if not 0 <= t < n_t or ok(i, t, j) is None or ok(k, t, j) is None:
                        return None
                    if name == "air_rh_pct" and ok(k, t, j) >= SATURATED_RH:
                        return None  # saturated humidity is no reference
                    return ok(i, t, j) - ok(k, t, j)

                for i in idx:
                    hits = [0] * n_t
                    for k in idx:
                        if k == i:
                            continue
                        mine = set()
                        for n in range(1, lim.site_spike_n + 1):
                            for s in range(1, n_t - n):
                                a, b = diff(i, k, s - 1), diff(i, k, s + n)
                                run = [diff(i, k, u) for u in range(s, s + n)]
                                if None in (a, b) or None in run:
                                    continue
                                up = all(v - a > limit and v - b > limit for v in run)
                                down = all(a - v > limit and b - v > limit for v in run)
                                wet = any(rained(i, u) or unknown_rain(i, u) for u in range(s - 2, s + n + 2))
                                if (up or down) and not wet:
                                    mine.update(range(s, s + n))
                        for u in mine:
                            hits[u] += 1
                    for u in range(n_t):
                        if hits[u] >= lim.site_spike_nodes:
                            flags[i][u][j] |= SPIKE
        for site in set(site_of):
            idx = [i for i in range(n_nodes) if site_of[i] == site]
            if len(idx) < 3:
                continue
            for j, name in enumerate(metrics):
                limit = lim.drift.get(name)
                if limit is None:
                    continue
                def usable(i, t, j=j):
                    return None if flags[i][t][j] & (SPIKE | FLAT | NOISE) else ok(i, t, j)
                def in_median(i, t, name=name):
                    v = usable(i, t)
                    return None if v is None or (name == "air_rh_pct" and v >= SATURATED_RH) else v
                off = {}
                for t in range(n_t):
                    vals = [in_median(i, t) for i in idx if in_median(i, t) is not None]
                    med = statistics.median(vals) if vals else None
                    for i in idx:
                        v = usable(i, t)
                        off[i, t] = None if v is None or med is None else v - med
                w = lim.drift_window
                for i in idx:
                    for t in range(n_t):
                        lo, hi = max(0, t - w // 2), min(n_t, t - w // 2 + w)
                        vals = [off[i, s] for s in range(lo, max(lo, hi)) if off[i, s] is not None]
                        if len(vals) >= w // 2 and present(i, t, j) and abs(sum(vals) / len(vals)) > limit:
                            flags[i][t][j] |= DRIFT
    pm = [j for j, name in enumerate(metrics) if name in PM_METRICS]
    for j in pm:
        for i, hot in enumerate(naive_fan([[ok(i, t, j) for t in range(n_t)] for i in range(n_nodes)], lim)):
            for t in range(n_t):
                if hot[t]:
                    flags[i][t][j] |= FAN
    return flags


def naive_fan(series, lim, replaced=None):
    """FAN for one PM metric, one point at a time: series is [node][t] of values or None; [node][t] of bool.
    ``replaced``: per node, the steps from which a replaced sensor reads (no hold from before, no fall across)."""
    replaced = replaced or [[] for _ in series]
    n_nodes, n_t = len(series), len(series[0]) if series else 0

    def y(v):
        return None if v is None else math.log1p(max(v, 0.0))

    def quartile(vals):  # NumPy's default (linear) quantile
        vals = sorted(vals)
        pos = 0.75 * (len(vals) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)

    def reference(leave_out):
        out = []
        for t in range(n_t):
            vals = [y(series[i][t]) for i in range(n_nodes) if series[i][t] is not None and not leave_out[i][t]]
            out.append(quartile(vals) if len(vals) >= lim.fan_sensors else None)
        return out

    def sinking(ref):
        b, k, fall = lim.fan_block, lim.fan_blocks, lim.fan_fall
        out = []
        for i in range(n_nodes):
            r = [None if series[i][t] is None or ref[t] is None else y(series[i][t]) - ref[t] for t in range(n_t)]

            def m(t, r=r):  # the median of the block of b values to t, with half of them at least, in float32
                if t < b - 1:
                    return None
                vals = sorted(np.float32(v) for v in r[t - b + 1:t + 1] if v is not None)
                if len(vals) < (b + 1) // 2:
                    return None
                return float((vals[(len(vals) - 1) // 2] + vals[len(vals) // 2]) / np.float32(2))

            hot, level, new = [], None, -1
            for t in range(n_t):
                if t in replaced[i]:
                    level, new = None, t
                blocks = [m(t - i_ * b) if t - i_ * b >= 0 else None for i_ in range(k)]
                found = None not in blocks and t - k * b + 1 >= new and all(
                    blocks[i_] < float(np.float32(blocks[i_ + 1] - np.float32(fall))) for i_ in range(k - 1))
                if found:
                    level = float(np.float32(blocks[k - 1] - np.float32((k - 1) * fall)))
                now = blocks[0]
                on = found or (level is not None and now is not None and now < level)
                hot.append(on)
                if not on and now is not None:  # a gap (no block median) does not end it
                    level = None
            out.append(hot)
        return out

    first = sinking(reference([[False] * n_t for _ in range(n_nodes)]))
    return sinking(reference(first))
