"""Property-based fuzzing of what a hostile node controls: any bytes on any topic, and valid messages
with one field mutated to any JSON value (lone surrogates, huge integers, deep nesting), through the
pipeline and the real SQLite store. Nothing raises, every refusal code is a documented one, and
every dead letter can be stored. (`bench/fuzz.py` runs the same properties for millions of
messages; here Hypothesis is derandomized, so each run checks the same examples.)"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.service import transact
from ingest.store import Store
from rimba.contract import CODES
from rimba.dev.harness import VECTOR_FLEET, VECTORS, payload_of

pytestmark = pytest.mark.unit  # no stack, no process

RECEIVED = VECTORS["received"]
UP = "rimba/v1/smp29/smp29-03/up"
STATUS = "rimba/v1/smp29/smp29-03/status"
UP2 = "rimba/v2/smp29/smp29-03/up"
VALID_UP = [v["body"] for v in VECTORS["up_valid"] if "body" in v and v["topic"] == UP]
VALID_UP2 = [{"v": 2, "node": "smp29-03", "epoch": 2841937411, "boot": 17, "now": 1764301800, "tq": "ntp",
              "seq": 1041, "t": 1764300000, "dt": 600, "m": ["air_temp_c", "air_rh_pct", "soil_vwc_pct"],
              "x": [[2831, 842, 315], [2840, 839, None], [2852, 838, 316]], "lost": [[1001, 1012]]}]
VALID_STATUS = [v["body"] for v in VECTORS["status_valid"]]

# text as a hostile JSON encoder can make it: any code point, lone surrogates included
hostile_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["\ud800", "\udfff", "a\ud800b", "\x00", "\u2028", "𝔘", "rimba/v1/+/#"])
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | hostile_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(hostile_text, inner, max_size=4), max_leaves=12)
topics = st.sampled_from([UP, STATUS, "rimba/v1/smp29/smp29-99/up", "rimba/v1/bansir-laut/smp29-03/up",
                          "rimba/v1/smp29/smp29-03/ack", "rimba/v1/smp29/SMP/up", "rimba/v2/smp29/smp29-03/up",
                          "rimba/v1/smp29/smp29-03/status/x", "", "\ud800/up"]) | hostile_text

FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                         HealthCheck.too_slow], deadline=None)


def dumps(obj) -> bytes:
    """JSON as a node could send it: surrogates escaped (`\\ud800`), which Python's decoder accepts."""
    return json.dumps(obj, ensure_ascii=True).encode()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ingest.sqlite3")
    yield s
    s.close()


def run_messages(store, messages) -> list:
    """Commit the messages as the ingest does; return the dead letters kept, as stored."""
    batch = [(topic, payload, RECEIVED + i, i, 1, retain) for i, (topic, payload, retain) in enumerate(messages)]
    out, _tx, _kept = transact(store, VECTOR_FLEET, batch, "fuzz")
    assert out.internal == 0, [d.reason for d in out.dead if d.code == "internal"]
    rows = store.deadletters(include_replayed=True, limit=10_000)
    for row in rows:
        assert row[4] in CODES, row
        row[5].encode("utf-8")  # every reason is valid UTF-8
        assert row[5].startswith(row[4] + ":")
        assert len(row[3]) <= 16 * 1024 and row[9] >= len(row[3])
    return rows


@FUZZ
@given(st.lists(st.tuples(topics, st.binary(max_size=300), st.booleans()), min_size=1, max_size=8))
def test_any_bytes_on_any_topic_never_raise(store, messages):
    run_messages(store, messages)


def _mutate(body: dict, path: list, value):
    """Set the field at `path` (keys and list indexes, cut to what exists) to `value`."""
    target = body
    for step in path[:-1]:
        if isinstance(target, dict) and target:
            target = target[sorted(target)[step % len(target)]]
        elif isinstance(target, list) and target:
            target = target[step % len(target)]
        else:
            break
    if isinstance(target, dict):
        keys = sorted(target)
        key = keys[path[-1] % len(keys)] if keys and path[-1] % 3 else f"k{path[-1]}"
        target[key] = value
    elif isinstance(target, list) and target:
        target[path[-1] % len(target)] = value


@FUZZ
@given(st.sampled_from(VALID_UP + VALID_UP2 + VALID_STATUS), st.lists(st.integers(0, 50), min_size=1, max_size=4),
       json_values, st.booleans())
def test_valid_messages_with_one_field_mutated_never_raise(store, base, path, value, retain):
    body = copy.deepcopy(base)
    _mutate(body, path, value)
    topic = UP if "r" in base else UP2 if "x" in base else STATUS
    run_messages(store, [(topic, dumps(body), retain)])


@FUZZ
@given(st.integers(1, 5000), st.sampled_from(["[", "{\"a\":"]))
def test_deep_nesting_and_huge_numbers_are_refused_not_raised(store, depth, opener):
    nested = (opener * depth).encode()
    huge = b'{"v":1,"node":"smp29-03","epoch":' + b"9" * 5000 + b',"now":1,"tq":"ntp","r":[]}'
    rows = run_messages(store, [(UP, nested, False), (UP, huge, False)])
    assert {r[4] for r in rows} <= {"bad-json", "too-large"}


@pytest.mark.parametrize("field", ["lost", "epoch", "now", "seq", "t", "status t", "status cfg"])
def test_a_lone_surrogate_in_any_field_is_a_dead_letter_not_a_crash(store, field):
    """The exact shape that stopped ingest: `"\\ud800"` reaching a refusal reason, which SQLite cannot encode."""
    if field.startswith("status"):
        body, topic = copy.deepcopy(VALID_STATUS[0]), STATUS
        body[field.split()[1]] = "\ud800"
    else:
        body, topic = copy.deepcopy(VALID_UP[0]), UP
        if field in ("seq", "t"):
            body["r"][0][field] = "\ud800"
        elif field == "lost":
            body["lost"] = [["\ud800", 5]]
        else:
            body[field] = "\ud800"
    payload = dumps(body)
    assert b"\\ud800" in payload and len(payload) < 600
    rows = run_messages(store, [(topic, payload, False)])
    assert len(rows) == 1 and "\\ud800" in rows[0][5]


@pytest.mark.parametrize("key", ["now", "t"])
def test_a_time_no_clock_can_show_is_refused_and_the_commit_holds(store, key):
    """Found by `bench.fuzz`: a 300-digit `now` became the node's clock offset, which SQLite cannot hold."""
    body = copy.deepcopy(VALID_UP2[0])
    body[key] = 10**300
    rows = run_messages(store, [(UP2, dumps(body), False), (UP, dumps(VALID_UP[0]), False)])
    assert [r[4] for r in rows] == ["bad-time"]


def test_every_golden_vector_is_handled_without_an_internal_error(store):
    messages = [(v["topic"], payload_of(v), False) for v in VECTORS["invalid"] + VECTORS["up_valid"]
                + VECTORS["status_valid"]]
    rows = run_messages(store, messages)
    assert {r[4] for r in rows} <= set(CODES)
