# The wire contract on the node: how a reading is kept and how batches are written from what is kept
# (contract v2; v1 for a node whose `wire` setting keeps it there; docs/contract.md describes both).
#
# A reading is stored as its v2 row: the JSON list of its values as integers in each metric's resolution
# (`dec`, the v2 contract's table) or null, in the order of its segment's columns (the JSON list of metric
# names, `head`). A v2 batch pastes the stored texts as they are: `m` is the head, the rows are `x`, and
# only `seq`, `t` and `dt` are written at send time (the times after drift correction, integers).
# A v1 batch writes each row back as v1 decimals: exact, the integer over its power of ten is the
# decimal the row was made from, so the platform stores the same float either way.
import json

# contract v2, "dec": a stored value is the integer divided by 10 ** dec
DEC = {"air_temp_c": 2, "air_rh_pct": 1, "air_pressure_hpa": 1, "soil_temp_c": 2, "soil_vwc_pct": 1,
       "pm1_ugm3": 1, "pm25_ugm3": 1, "pm10_ugm3": 1, "co2_ppm": 0, "light_lux": 0, "rain_mm": 3,
       "water_level_cm": 1, "water_temp_c": 2, "batt_v": 3, "rssi_dbm": 0}
POW = (1, 10, 100, 1000)
MAX_BYTES = 16 * 1024  # an `up` payload (both versions)
MAX_ROWS = 200  # readings in one batch (both versions)
MAX_COLUMNS = 16  # v2 `m`


def head(names):
    """The columns of a segment as stored and sent: the JSON list of metric names."""
    return json.dumps(list(names), separators=(",", ":"))


def names_of(head_text):
    return json.loads(head_text)


def scaled(v, dec):
    """A value as an integer in steps of 10 ** -dec; None for no value (or a value no sensor can give)."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v * POW[dec]
    if v - v != 0:  # NaN or infinite: not a reading
        return None
    return int(round(v * POW[dec]))


def row(values, names):
    """One reading's stored text: `[2831,842,null]` for the columns `names`."""
    out = []
    for m in names:
        x = scaled(values.get(m), DEC[m])
        out.append("null" if x is None else str(x))
    return "[" + ",".join(out) + "]"


def values(head_text, row_text):
    """A stored reading back as {metric: value} (nulls left out), the integers divided by 10 ** dec."""
    out = {}
    for m, x in zip(names_of(head_text), json.loads(row_text)):
        if x is not None:
            out[m] = x / POW[DEC[m]] if DEC[m] else x
    return out


def decimal(x, dec):
    """The integer x in steps of 10 ** -dec as decimal text, exactly: (2831, 2) -> '28.31', (-5, 1) -> '-0.5'."""
    if not dec:
        return str(x)
    digits = str(-x if x < 0 else x)
    if len(digits) <= dec:
        digits = "0" * (dec + 1 - len(digits)) + digits
    return ("-" if x < 0 else "") + digits[:-dec] + "." + digits[-dec:]


def _same(t):
    return t


def step(recs, n, when=_same):
    """The one step between the times (`when` of each stored t) of the first n readings (seq, t, row, head),
    or None when they differ (`dt` is then a list) or there is no step (one row: an empty list). Integers
    only: these are times (see rclock.py)."""
    if n < 2:
        return None
    first = when(recs[1][1]) - when(recs[0][1])
    for i in range(2, n):
        if when(recs[i][1]) - when(recs[i - 1][1]) != first:
            return None
    return first


def run(recs, when=_same):
    """How many of the stored readings `recs` [(seq, t, row, head), ...], from the first, one batch can carry:
    consecutive seqs (a hole in the buffer means two batches), the same columns, times (`when` of each
    stored t: the drift correction) strictly rising, every step at least 1 s, at most MAX_ROWS."""
    n = 1 if recs else 0
    while n < len(recs) and n < MAX_ROWS:
        if recs[n][0] != recs[n - 1][0] + 1 or recs[n][3] != recs[0][3] or \
                when(recs[n][1]) - when(recs[n - 1][1]) < 1:
            break
        n += 1
    return n


class Up:
    """An `up` payload as text pieces, made while they are sent: mqtt.MQTTClient.publish goes over them
    twice (to count the bytes, then to send them), so no piece larger than a row or the head is ever
    made, and no list of them: a 200-row batch needs no large block of a fragmented heap."""

    def __init__(self, top, recs, n, version, when):
        self.top = top  # the batch's own keys as JSON text, without its closing brace
        self.recs = recs
        self.n = n
        self.version = version
        self.when = when  # a stored time -> the time sent (the drift correction)

    def __iter__(self):
        recs = self.recs
        n = self.n
        when = self.when
        yield self.top
        if self.version == 1:
            yield ',"r":['
            names = names_of(recs[0][3]) if n else ()
            for i in range(n):
                yield ("," if i else "") + v1_reading(recs[i][0], when(recs[i][1]), names, recs[i][2])
            yield "]}"
            return
        if not n:  # a v2 batch with no rows carries only `lost`
            yield "}"
            return
        dt = step(recs, n, when)
        if dt is not None:
            yield ',"dt":%d' % dt
        else:
            yield ',"dt":['
            for i in range(1, n):
                yield ("%d" if i == 1 else ",%d") % (when(recs[i][1]) - when(recs[i - 1][1]))
            yield "]"
        yield ',"m":'
        yield recs[0][3]
        yield ',"x":['
        for i in range(n):
            if i:
                yield ","
            yield recs[i][2]
        yield "]}"


def batch(fields, recs, limit, version=2, when=_same):
    """The `up` payload for the first readings of `recs` (up to `limit`, one run: see run()), and how many
    readings it carries: as many as fit in MAX_BYTES. `fields` are the batch's own keys (v, node, epoch,
    now, tq, fw, lost; v2 boot); `when` gives the time sent for a stored time."""
    top = dict(fields)
    size = 1024  # the head, `lost` and the brackets, with room to spare
    n = 0
    names = names_of(recs[0][3]) if version == 1 and limit else []
    for i in range(limit):
        seq, t, text, head = recs[i]
        if version == 1:
            size += len(v1_reading(seq, when(t), names, text)) + 1
        else:
            size += len(text) + 12  # the row, its comma, and at most its step in a `dt` list
        if n and size > MAX_BYTES:
            break
        n += 1
    if version == 2 and n:
        top["seq"] = recs[0][0]
        top["t"] = when(recs[0][1])
    text = json.dumps(top, separators=(",", ":"))
    return Up(text[:-1], recs, n, version, when), n


def v1_reading(seq, t, names, row_text):
    """A stored row as a v1 reading: `{"seq":1041,"t":1764300000,"air_temp_c":28.31,...}`, nulls left out."""
    parts = ['{"seq":%d,"t":%d' % (seq, t)]
    for m, x in zip(names, json.loads(row_text)):
        if x is not None:
            parts.append(',"%s":%s' % (m, decimal(x, DEC[m])))
    parts.append("}")
    return "".join(parts)
