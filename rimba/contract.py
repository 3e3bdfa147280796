"""Wire contracts v1 and v2 in code: topics, `up` and `status` decoding, time placement.

A v1 `up` names every metric in every reading; a v2 `up` is columnar (`m` names the
columns once, `x` holds the rows as integers in each metric's resolution). Both decode to
one `UpBatch` whose rows give the same storage points.

Pure: no MQTT, no database. Every refusal is a `Rejected` with a stable reason
`code` (the golden vectors in `tests/vectors/` pin them) and a human `detail`.

Refusal codes, checked in this order:

    topic            the topic is not rimba/v1|v2/{site}/{node}/{up|status}
    too-large        payload over 16 KiB (status: 4 KiB)
    not-utf8         payload is not UTF-8
    bad-json         not JSON, or NaN/Infinity, or nested too deep
    duplicate-key    an object repeats a key
    not-object       the payload is not a JSON object
    bad-version      `v` is not the topic's version (1 or 2)
    unknown-node     the topic's node is not in the fleet file
    wrong-site       the topic's site is not the node's site in the fleet file
    node-mismatch    the payload's `node` is not the topic's node
    missing          a required key is absent
    bad-type         a key has the wrong JSON type
    bad-epoch        `epoch` is not an unsigned 32-bit integer
    too-many         more than 200 readings
    bad-seq          `seq` not a positive integer, or not strictly increasing
    bad-time         `t` or `now` not an integer
    unknown-key      a reading holds a key that is not `seq`, `t` or a metric name (v1)
    bad-columns      `m` empty, over 16, repeated or not metric names; a row of the wrong length (v2)
    bad-dt           `dt` neither an integer nor a list of len(x) - 1, or a step below 1 (v2)
    bad-value        a metric value is not a finite number (v2: an integer) or null
    bad-lost         `lost` is not a list of [first, last] seq ranges
    bad-state        status `state` is not online, sleeping or lost
    time-impossible  even re-based, a reading's time is before 2024 or in the future
    too-fragmented   the node's epoch has more than 1,000 open holes (ingest, wire-v2 "Bounded bookkeeping")
    out-of-range     (not a refusal) a value outside its physical range was dropped
    time-collision   (not a refusal) a reading's storage time is another recorded reading's of the node
    internal         (the ingest's) handling the message raised an error nobody foresaw

Every `detail` is valid UTF-8 (a lone surrogate in the input is shown escaped), so a reason
can always be stored, logged and printed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from rimba.metrics import METRICS
from rimba.names import is_name

VERSION = 1  # the first contract; a node speaks one version, all its topics under that root
VERSIONS = (1, 2)
TOPIC_ROOT = "rimba/v1"
COLUMNS_MAX = 16  # v2: metric names in one batch
WAKE_WITHIN_S = 7 * 86400  # v2 status: `wake` at most this long after `t`
FW_STATES = ("good", "trial", "rolled-back")
UP_MAX_BYTES = 16 * 1024
STATUS_MAX_BYTES = 4 * 1024
UP_MAX_READINGS = 200
EPOCH_MAX = 2**32 - 1
SEQ_MAX = 2**53 - 1
TIME_MAX = 2**53 - 1  # `t` and `now`: larger integers are no clock's reading (and no 64-bit store's)
TRUSTED_AFTER = 1704067200  # 2024-01-01T00:00:00Z: earlier times cannot be real
FUTURE_TOLERANCE_S = 300  # a time more than 5 min after receipt is not trusted
LATE_AFTER_S = 900  # received more than 15 min after `t`: flagged late
STATES = ("online", "sleeping", "lost")
HOLES_MAX = 1000  # open holes an epoch may have before its batches are too-fragmented (wire-v2)
DEAD_LETTER_MAX_BYTES = 16 * 1024  # of a payload kept as evidence (wire-v2), with its length and SHA-256

# every code a dead letter can carry, in the order of the docstring above
CODES = ("topic", "too-large", "not-utf8", "bad-json", "duplicate-key", "not-object", "bad-version",
         "unknown-node", "wrong-site", "node-mismatch", "missing", "bad-type", "bad-epoch", "too-many",
         "bad-seq", "bad-time", "unknown-key", "bad-columns", "bad-dt", "bad-value", "bad-lost", "bad-state",
         "time-impossible",
         "too-fragmented", "out-of-range", "time-collision", "internal")


def root(version: int = VERSION) -> str:
    return f"rimba/v{version}"


def topic(site: str, node: str, kind: str, version: int = VERSION) -> str:
    return f"rimba/v{version}/{site}/{node}/{kind}"


def alert_topic(site: str, version: int = VERSION) -> str:
    return f"rimba/v{version}/{site}/alert"


def fw_topic(sha256: str = "+") -> str:
    """A firmware file's retained topic, by the SHA-256 of its bytes (wire-v2 "Firmware updates"); "+" the
    filter of them all."""
    return f"{root(2)}/fw/{sha256}"


def topic_version(name: str) -> int:
    """The contract version of a node topic (1 when it is none of ours: the topic check refuses it)."""
    return 2 if name.startswith("rimba/v2/") else 1


class Rejected(Exception):
    """A message that breaks the contract.

    `salvage` is (epoch, seqs, lost) when the node is the topic's registered node
    and those values could be read: the ack may move over them, since the
    readings are safe in the dead-letter store.
    """

    def __init__(self, code: str, detail: str, salvage=None):
        detail = printable(detail)
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.salvage = salvage

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass
class Reading:
    seq: int
    t: int
    values: dict  # metric name -> float (absent or null values are left out)


@dataclass
class UpBatch:
    """One `up` batch of either version. `seqs`, `times` and `fields` are its rows: each row's seq,
    time by the node's clock, and stored values as line-protocol field text (`name=float,...`)."""

    site: str
    node: str
    epoch: int
    now: int
    tq: str
    seqs: list
    times: list
    fields: list
    lost: list  # [(first, last), ...]
    faults: list = field(default_factory=list)  # "metric=value at seq N" dropped as out of range
    version: int = 1
    boot: int | None = None  # v2 only
    readings: list = field(default_factory=list)  # v1 only: the Reading objects (values as dicts)


@dataclass
class Status:
    site: str
    node: str
    state: str
    t: int | None
    fields: dict  # storage fields besides `state`
    version: int = 1


@dataclass
class Placed:
    """A reading's storage time and flags, decided at receipt."""

    time: int
    late: bool
    offset: int | None  # clock_offset_s when re-based, else None


def printable(text: str) -> str:
    """`text` as valid UTF-8: lone surrogates (which JSON can carry) become backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_topic(name: str) -> tuple[str, str, str]:
    """Split `rimba/v1|v2/{site}/{node}/{kind}`; raises Rejected('topic')."""
    parts = name.split("/")
    if (
        len(parts) != 5
        or parts[0] != "rimba"
        or parts[1] not in ("v1", "v2")
        or parts[4] not in ("up", "status")
        or not is_name(parts[2])
        or not is_name(parts[3])
    ):
        raise Rejected("topic", f"not a node topic: {name[:120]!r}")
    return parts[2], parts[3], parts[4]


def _no_constants(token: str):
    raise ValueError(f"{token} is not a number in JSON")


def _unique_pairs(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return obj


class _DuplicateKey(ValueError):
    pass


_DECODER = json.JSONDecoder(parse_constant=_no_constants, object_pairs_hook=_unique_pairs)
_RANGES = {m.name: (m.low, m.high) for m in METRICS.values()}
_INF = float("inf")


def _loads(payload: bytes, limit: int) -> dict:
    if len(payload) > limit:
        raise Rejected("too-large", f"{len(payload)} bytes, the limit is {limit}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Rejected("not-utf8", f"byte {err.start} is not UTF-8") from None
    try:
        obj = _DECODER.decode(text)
    except _DuplicateKey as err:
        raise Rejected("duplicate-key", f"key {str(err)[:40]!r} appears twice") from None
    except (ValueError, RecursionError) as err:
        raise Rejected("bad-json", str(err)[:120]) from None
    if not isinstance(obj, dict):
        raise Rejected("not-object", f"payload is a JSON {type(obj).__name__}, not an object")
    return obj


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_time(v) -> bool:
    """An integer count of seconds a clock could show (a 64-bit store holds it, whatever it means)."""
    return _is_int(v) and -TIME_MAX <= v <= TIME_MAX


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check_sender(obj: dict, site: str, node: str, fleet, version: int) -> None:
    if obj.get("v") != version or isinstance(obj.get("v"), bool):
        raise Rejected("bad-version", f"v is {str(obj.get('v'))[:20]!r}, expected {version} on a v{version} topic")
    known = fleet.nodes.get(node)
    if known is None:
        raise Rejected("unknown-node", f"node {node!r} is not in the fleet file")
    if known.site != site:
        raise Rejected("wrong-site", f"node {node!r} belongs to site {known.site!r}, not {site!r}")


def _salvage(obj: dict, version: int = 1):
    """(epoch, seqs, lost) if they can be read from a broken batch, else None."""
    epoch = obj.get("epoch")
    if not (_is_int(epoch) and 0 <= epoch <= EPOCH_MAX):
        return None
    if version == 2:
        first, rows = obj.get("seq"), obj.get("x", [])
        if not isinstance(rows, list) or len(rows) > UP_MAX_READINGS:
            return None
        if rows and not (_is_int(first) and 1 <= first and first + len(rows) - 1 <= SEQ_MAX):
            return None
        seqs = list(range(first, first + len(rows))) if rows else []
    else:
        readings = obj.get("r")
        if not isinstance(readings, list):
            return None
        seqs = [r.get("seq") for r in readings if isinstance(r, dict)]
        if len(seqs) != len(readings) or not all(_is_int(s) and 1 <= s <= SEQ_MAX for s in seqs):
            return None
    try:
        lost = _lost(obj.get("lost"))
    except Rejected:
        lost = []
    return epoch, seqs, lost


def _lost(value) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Rejected("bad-lost", "lost is not a list of ranges")
    out = []
    for item in value:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and all(_is_int(x) for x in item)
            and 1 <= item[0] <= item[1] <= SEQ_MAX
        ):
            raise Rejected("bad-lost", f"{str(item)[:40]} is not a [first, last] seq range")
        out.append((item[0], item[1]))
    return out


def _open(topic_name: str, payload: bytes, fleet, want: str, limit: int, node_required: bool):
    """The checks every node message starts with: topic, size, JSON, version, sender."""
    site, node, kind = parse_topic(topic_name)
    if kind != want:
        raise Rejected("topic", f"expected a {want} topic: {topic_name[:120]!r}")
    obj = _loads(payload, limit)
    _check_sender(obj, site, node, fleet, topic_version(topic_name))
    if node_required and "node" not in obj:
        raise Rejected("missing", "required key 'node' is absent")
    if "node" in obj and obj["node"] != node:
        raise Rejected("node-mismatch", f"payload node {str(obj['node'])[:40]!r} on topic of {node!r}")
    return site, node, obj


def decode_up(topic_name: str, payload: bytes, fleet) -> UpBatch:
    """Decode and validate one `up` message. Raises Rejected."""
    site, node, obj = _open(topic_name, payload, fleet, "up", UP_MAX_BYTES, node_required=True)
    version = topic_version(topic_name)
    try:
        return _decode_up_v2(obj, site, node) if version == 2 else _decode_up_body(obj, site, node)
    except Rejected as err:
        err.salvage = _salvage(obj, version)
        raise


def _head(obj: dict, required: tuple, boot: bool) -> int:
    """The checks both versions' `up` start with, in the contract's order; returns the epoch."""
    for key in required:
        if key not in obj:
            raise Rejected("missing", f"required key {key!r} is absent")
    epoch = obj["epoch"]
    if not (_is_int(epoch) and 0 <= epoch <= EPOCH_MAX):
        raise Rejected("bad-epoch", f"epoch {str(epoch)[:30]} is not an unsigned 32-bit integer")
    if boot and not (_is_int(obj["boot"]) and 0 <= obj["boot"] <= EPOCH_MAX):
        raise Rejected("bad-type", f"boot {str(obj['boot'])[:30]} is not an unsigned 32-bit integer")
    if not _is_time(obj["now"]):
        raise Rejected("bad-time", f"now {str(obj['now'])[:30]} is not an integer count of seconds")
    if obj["tq"] not in ("ntp", "rtc"):
        raise Rejected("bad-type", f"tq {str(obj['tq'])[:20]!r} is not 'ntp' or 'rtc'")
    return epoch


def _decode_up_body(obj: dict, site: str, node: str) -> UpBatch:
    epoch = _head(obj, ("epoch", "now", "tq", "r"), boot=False)
    raw = obj["r"]
    if not isinstance(raw, list):
        raise Rejected("bad-type", "r is not a list")
    if len(raw) > UP_MAX_READINGS:
        raise Rejected("too-many", f"{len(raw)} readings, the limit is {UP_MAX_READINGS}")
    readings = []
    faults = []
    last = 0
    ranges_get = _RANGES.get
    for i, r in enumerate(raw):  # the hot loop: plain type checks, no helper calls
        if type(r) is not dict:
            raise Rejected("bad-type", f"r[{i}] is not an object")
        seq = r.get("seq")
        if type(seq) is not int or not 1 <= seq <= SEQ_MAX:
            raise Rejected("bad-seq", f"r[{i}].seq {str(seq)[:30]} is not a positive integer")
        if seq <= last:
            raise Rejected("bad-seq", f"r[{i}].seq {seq} does not rise above {last}")
        last = seq
        t = r.get("t")
        if type(t) is not int or not -TIME_MAX <= t <= TIME_MAX:
            raise Rejected("bad-time", f"r[{i}].t {str(t)[:30]} is not an integer count of seconds")
        values = {}
        for key, value in r.items():
            if key == "seq" or key == "t":
                continue
            bounds = ranges_get(key)
            if bounds is None:
                raise Rejected("unknown-key", f"r[{i}] has key {key[:40]!r}, not a metric name")
            if value is None:
                continue
            kind = type(value)
            if not ((kind is float and value == value and value != _INF and value != -_INF) or kind is int):
                raise Rejected("bad-value", f"r[{i}].{key} is {str(value)[:30]!r}, not a finite number")
            if not bounds[0] <= value <= bounds[1]:
                faults.append(f"{key}={value} at seq {seq} outside {bounds[0]:g}..{bounds[1]:g}")
                continue
            values[key] = float(value)
        readings.append(Reading(seq, t, values))
    return UpBatch(site, node, epoch, obj["now"], obj["tq"], [r.seq for r in readings], [r.t for r in readings],
                   [",".join(f"{k}={v!r}" for k, v in r.values.items()) for r in readings], _lost(obj.get("lost")),
                   faults, readings=readings)


SCALE = {m.name: 10 ** m.dec for m in METRICS.values()}  # v2: a metric's integers per unit (its resolution)


# v2: a metric's integers seen so far -> their field text (`name=float`); a node's values repeat at
# their resolution, so a value's text is made once. Bounded: past CELLS_MAX a metric's table starts again.
_CELLS: dict = {name: {} for name in SCALE}
CELLS_MAX = 4096


def _value(name: str, x: int) -> float:
    return x / SCALE[name] if -TIME_MAX <= x <= TIME_MAX else _INF  # a float holds no more


def _cell(name: str, x: int, cell: dict) -> str:
    """The field text of integer `x` of metric `name` ("" when out of its range: not kept)."""
    low, high = _RANGES[name]
    value = _value(name, x)
    if not low <= value <= high:
        return ""
    if len(cell) >= CELLS_MAX:
        cell.clear()
    text = cell[x] = f"{name}={value!r}"
    return text


def _decode_up_v2(obj: dict, site: str, node: str) -> UpBatch:
    """The columnar batch of wire-v2: rows are decoded into their field text, never into objects."""
    rows = obj.get("x", [])
    epoch = _head(obj, ("epoch", "boot", "now", "tq") + (("seq", "t", "dt", "m", "x") if rows else ()), boot=True)
    boot = obj["boot"]
    if not isinstance(rows, list):
        raise Rejected("bad-type", "x is not a list")
    if len(rows) > UP_MAX_READINGS:
        raise Rejected("too-many", f"{len(rows)} rows, the limit is {UP_MAX_READINGS}")
    lost = _lost(obj.get("lost"))
    if not rows:
        return UpBatch(site, node, epoch, obj["now"], obj["tq"], [], [], [], lost, version=2, boot=boot)
    first = obj["seq"]
    if not (_is_int(first) and 1 <= first and first + len(rows) - 1 <= SEQ_MAX):
        raise Rejected("bad-seq", f"seq {str(first)[:30]} is not a positive integer")
    t = obj["t"]
    if not _is_time(t):
        raise Rejected("bad-time", f"t {str(t)[:30]} is not an integer count of seconds")
    names = obj["m"]
    if not (isinstance(names, list) and 1 <= len(names) <= COLUMNS_MAX
            and all(type(n) is str and n in SCALE for n in names) and len(set(names)) == len(names)):
        raise Rejected("bad-columns", f"m {str(names)[:80]} is not 1 to {COLUMNS_MAX} distinct metric names")
    times = _times(obj["dt"], t, len(rows))
    width = len(names)
    cells = [_CELLS[n] for n in names]
    fields, faults = [], []
    for i, row in enumerate(rows):  # the hot loop: a dictionary lookup a value once its text is known
        if type(row) is not list or len(row) != width:
            raise Rejected("bad-columns", f"x[{i}] is not a list of {width} entries")
        parts = []
        for name, x, cell in zip(names, row, cells):
            if type(x) is int:
                text = cell.get(x)
                if text is None:
                    text = _cell(name, x, cell)
                    if not text:
                        faults.append(f"{name}={_value(name, x)} at seq {first + i} outside "
                                      f"{_RANGES[name][0]:g}..{_RANGES[name][1]:g}")
                        continue
                parts.append(text)
            elif x is not None:
                raise Rejected("bad-value", f"x[{i}] {name} is {str(x)[:30]!r}, not an integer or null")
        fields.append(",".join(parts))
    return UpBatch(site, node, epoch, obj["now"], obj["tq"], list(range(first, first + len(rows))), times, fields,
                   lost, faults, version=2, boot=boot)


def _times(dt, t: int, n: int) -> list:
    """Each row's time from the first row's `t` and the steps `dt` (one integer, or one per step)."""
    if _is_int(dt):
        if dt < 1:
            raise Rejected("bad-dt", f"dt {dt} is below 1")
        return [t + i * dt for i in range(n)]
    if not (isinstance(dt, list) and len(dt) == n - 1):
        raise Rejected("bad-dt", f"dt is neither an integer nor a list of {n - 1} steps")
    out = [t]
    for step in dt:
        if not (_is_int(step) and step >= 1):
            raise Rejected("bad-dt", f"a step {str(step)[:30]} is not an integer of at least 1")
        out.append(out[-1] + step)
    return out


def place(batch: UpBatch, received: int, offset: int | None = None) -> list:
    """Decide each reading's storage time (contract v1 "Time", v2 "Re-basing after a wait").

    A time is not trusted when `tq` is `rtc`, or `t` is before 2024, or more than
    5 minutes after receipt; it is then re-based by `offset`: the smallest `received - now`
    seen from the node since its boot changed (this message's own when None). A message
    that waited at the broker has a larger `received - now` than that by the wait, so the
    wait does not move its readings. A reading is late when it was received more than
    15 minutes after its time, or its message waited more than 15 minutes. Raises
    Rejected('time-impossible') when a re-based time is still impossible.
    """
    return [Placed(*p) for p in zip(*placement(batch, received, offset), strict=True)]


def placement(batch: UpBatch, received: int, offset: int | None = None) -> tuple:
    """`place` as columns (times, lates, offsets), without an object per reading; a batch whose
    times are all trusted (the usual case) is decided from its earliest and latest."""
    own = received - batch.now
    if offset is None or offset > own:
        offset = own
    waited = own - offset
    times = batch.times
    n = len(times)
    if not n:
        return [], [], []
    trusted_to = received + FUTURE_TOLERANCE_S
    low, high = min(times), max(times)
    if batch.tq == "ntp" and TRUSTED_AFTER <= low and high <= trusted_to:
        late = waited > LATE_AFTER_S
        if late or received - low <= LATE_AFTER_S:
            return times, [late] * n, [None] * n
        return times, [received - when > LATE_AFTER_S for when in times], [None] * n
    out_t, out_late, out_off = [], [], []
    for seq, when in zip(batch.seqs, times):
        if batch.tq == "ntp" and TRUSTED_AFTER <= when <= trusted_to:
            out_t.append(when)
            out_late.append(received - when > LATE_AFTER_S or waited > LATE_AFTER_S)
            out_off.append(None)
            continue
        t = when + offset
        if not (TRUSTED_AFTER <= t <= trusted_to):
            raise Rejected(
                "time-impossible",
                f"seq {seq}: t {when} re-based by {offset:+d} s is {t}, before 2024 or in the future",
            )
        out_t.append(t)
        out_late.append(received - t > LATE_AFTER_S or waited > LATE_AFTER_S)
        out_off.append(offset)
    return out_t, out_late, out_off


_STATUS_INTS = ("cfg", "boot", "buffered", "dropped", "wake")
_STATUS_FLOATS = ("batt_v", "rssi_dbm")
_STATUS_STRS = ("fw", "reset")


def decode_status(topic_name: str, payload: bytes, fleet) -> Status:
    """Decode and validate one `status` message. Raises Rejected."""
    site, node, obj = _open(topic_name, payload, fleet, "status", STATUS_MAX_BYTES, node_required=False)
    state = obj.get("state")
    if state not in STATES:
        raise Rejected("bad-state", f"state {str(state)[:20]!r} is not one of {', '.join(STATES)}")
    t = obj.get("t")
    if t is not None and not _is_time(t):
        raise Rejected("bad-time", f"t {str(t)[:30]} is not an integer count of seconds")
    fields = {}
    for key in _STATUS_INTS:
        v = obj.get(key)
        if v is not None:
            if not (_is_int(v) and 0 <= v <= SEQ_MAX):
                raise Rejected("bad-type", f"{key} {str(v)[:30]} is not a non-negative integer")
            fields[key] = v
    for key in _STATUS_FLOATS:
        v = obj.get(key)
        if v is not None:
            if not _is_number(v):
                raise Rejected("bad-value", f"{key} {str(v)[:30]!r} is not a finite number")
            if METRICS[key].in_range(v):
                fields[key] = float(v)
    v2 = topic_version(topic_name) == 2
    for key in _STATUS_STRS + (("fw_failed",) if v2 else ()):
        v = obj.get(key)
        if v is not None:
            if not (isinstance(v, str) and len(v) <= 64 and v.isprintable()):
                raise Rejected("bad-type", f"{key} is not a short printable string")
            fields[key] = v
    if v2:
        fw_state = obj.get("fw_state")
        if fw_state is not None:
            if fw_state not in FW_STATES:
                raise Rejected("bad-type", f"fw_state {str(fw_state)[:20]!r} is not one of {', '.join(FW_STATES)}")
            fields["fw_state"] = fw_state
        if "wake" in fields and t is not None and not t <= fields["wake"] <= t + WAKE_WITHIN_S:
            raise Rejected("bad-value", f"wake {fields['wake']} is not within 7 days after t {t}")
    return Status(site, node, state, t, fields, 2 if v2 else 1)


def status_time_ms(status: Status, received: float) -> int:
    """A status is stored at its `t` when that is plausible, else at receipt (to the
    millisecond, so a Last Will does not land on the same point as the status before it)."""
    t = status.t
    if t is not None and TRUSTED_AFTER <= t <= received + FUTURE_TOLERANCE_S:
        return t * 1000
    return int(received * 1000)


def ack_payload(epoch: int, seq: int, version: int = VERSION) -> bytes:
    return json.dumps({"v": version, "epoch": epoch, "seq": seq}, separators=(",", ":")).encode()
