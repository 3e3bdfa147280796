"""`rimba ingest`: the composition root.

Three threads:
- paho's network thread puts each received message on a queue;
- the processor takes what has arrived, runs the pure pipeline, commits lines,
  marks and dead letters to the store in one fsync'd transaction, and only then
  PUBACKs the messages and publishes the moved acks (retained);
- the writer drains the spool into InfluxDB in order, retrying with capped,
  jittered backoff while the database is away, splitting refused writes down to
  the offending line (which is dead-lettered, never retried).

A full spool stops the processor: messages stay unacknowledged at the broker.

No message can stop the service: each is handled in isolation (a message whose handling
raises leaves the ledger as it was and becomes an `internal` dead letter), and a commit that
fails is retried message by message, so one bad message is found and dead-lettered alone. Only
a store that cannot take even that (disk full, I/O error) stops the service, unacknowledged.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import random
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ingest import pipeline
from rimba import lineproto
from ingest.pipeline import DeadLetter, Outcome
from ingest.store import Store, lease_for
from ingest.writer import PARTS, SpoolWriter, part_of
from rimba import contract
from rimba.errors import ConfigError, InfluxAuthError, InfluxUnavailable, RimbaError, StoreBusy, StoreError
from rimba.fleet import FleetWatcher
from rimba.adapters.influx import Influx, InfluxNoDatabase
from rimba.adapters.mqtt import Mqtt

log = logging.getLogger("rimba.ingest")

GATHER = 500  # messages worth a transaction without waiting for the flush interval
MAX_QUEUED_BYTES = 32 * 1024 * 1024  # payload bytes received and not yet committed, at most
MAX_MESSAGES_PER_COMMIT = 2000  # bounds memory: a commit's lines are built in RAM
# and so do its readings (estimated before decoding, `readings_in`): a burst of full batches is committed, and
# handed to the writer, in parts, so InfluxDB stores one part while the next is decoded
MAX_READINGS_PER_COMMIT = 20_000
WRITE_CHUNK_BYTES = 2 * 1024 * 1024  # spool rows claimed per write cycle
BUSY_RETRY_S = 1.0  # after the store was found held by another process
WRITER_STUCK_S = 120.0  # a writer silent this long (no write, no retry, no idle wake) is stuck
ACK_EVERY_S = 0.25  # how often moved acks are published (retained), at most
SUBSCRIPTIONS = tuple(f"{contract.root(v)}/+/+/{kind}" for v in contract.VERSIONS for kind in ("up", "status"))


@dataclass
class Counters:
    received: int = 0
    stored: int = 0  # readings made durable (spooled on their way to InfluxDB)
    duplicates: int = 0
    dead_lettered: int = 0
    write_retries: int = 0
    gaps: int = 0
    collisions: int = 0  # readings not stored: another reading of the node has their second
    rate_limited: int = 0  # statuses and dead letters over their node's budget
    internal: int = 0  # messages whose handling raised (dead-lettered as `internal`)
    writer_errors: int = 0  # unexpected errors in the writer thread (retried)


@contextmanager
def _one_process(state_dir, client_id: str):
    """Hold an exclusive lock named by the client id in the state directory while the block runs (the system frees
    it when the process ends, however it ends)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / f"ingest-{re.sub(r'[^A-Za-z0-9._-]', '_', client_id)}.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"mqtt_client_id: another ingest process with the client id {client_id!r} runs on "
                              f"{state_dir}; give each its own (RIMBA_MQTT_CLIENT_ID)") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Ingest:
    """The composition root: built from the settings, or from the parts given (the tests' own fakes of the
    broker and the database, a clock, a pause): `mqtt` is called with the message handler and gives the
    client (rimba.adapters.mqtt.Mqtt's interface: start, stop, ack, publish, wait_published, connected); `influx`
    writes lines; `pause(seconds)` waits unless the service is stopping (a backoff, a retry)."""

    def __init__(self, settings, clock=time.time, *, store: Store | None = None, influx=None, mqtt=None,
                 pause=None):
        self.settings = settings
        self.clock = clock
        self.owner = settings.mqtt_client_id
        self.store = store or Store.in_state_dir(settings.state_path)
        self.fleet = FleetWatcher(settings.fleet)
        self.influx = influx or Influx.from_settings(settings)
        # a connection a spool part: the parts are written side by side (ingest.writer)
        self._part_influx = [self.influx] + [influx or Influx.from_settings(settings) for _ in range(PARTS - 1)]
        self.spool_writer = SpoolWriter(self._part_influx, self.store, settings.batch_lines, clock, alive=self._alive)
        self.lease_s = lease_for(settings.influx_timeout_s)  # declared with its heartbeat (Store.beat)
        self.counters = Counters()
        self.queue: collections.deque = collections.deque()
        self.queued_bytes = 0
        self.queued_readings = 0  # readings_in() of what is queued: a commit's worth is not kept waiting
        self._writer_beat = clock()  # the writer thread's last sign of life
        lock = threading.Lock()
        self.arrived = threading.Condition(lock)  # the processor waits here for messages
        self.room = threading.Condition(lock)  # paho's thread waits here while the queue is full
        self.wrote = threading.Event()  # the writer made room in the spool
        self.spooled = threading.Event()  # the processor added to the spool
        self.stopping = threading.Event()
        self.fatal: str | None = None
        self.spool_max = int(settings.spool_max_mb * 1024 * 1024)
        self._ack_lock_path = settings.state_path / "ack.lock"
        self._acks_pending = True  # a publish failed or was skipped: re-check every node
        self._ack_candidates: dict = {}  # node -> (site, epoch, ack) committed, not yet published
        self._ack_force: set = set()
        self._next_acks = 0.0
        self._next_stats = 0.0
        self._next_sweep = 0.0
        self._influx_down_since: float | None = None
        self._spool_full = False
        self.pause = pause or self.stopping.wait
        share = settings.mqtt_share_group
        subs = tuple(f"$share/{share}/{t}" for t in SUBSCRIPTIONS) if share else SUBSCRIPTIONS
        self.mqtt = mqtt(self._on_message) if mqtt else \
            Mqtt(settings.broker, settings.mqtt_client_id, ca_file=settings.mqtt_ca_file, v5=False, persistent=True,
                 manual_ack=True, subscriptions=subs, on_message=self._on_message)

    # -- receiving (paho's thread) --------------------------------------------------------------
    def _on_message(self, topic, payload, mid, qos, retain):
        with self.arrived:
            # Bound what waits in memory whatever the broker's in-flight window (Mosquitto 2.0.11
            # stops honouring it once PUBACKs flow): while the queue is full, paho's thread waits
            # here, stops reading the socket, and the broker keeps the rest. The processor never
            # waits for paho's thread (see _publish_acks), so this cannot deadlock.
            while self.queued_bytes >= MAX_QUEUED_BYTES and not self.stopping.is_set():
                self.room.wait(timeout=1.0)
            n = readings_in(payload)
            self.queue.append((topic, payload, self.clock(), mid, qos, retain, n))
            self.queued_bytes += len(payload)
            before = self.queued_readings
            self.queued_readings += n
            if len(self.queue) in (1, GATHER) or before < MAX_READINGS_PER_COMMIT <= self.queued_readings:
                # wake the processor when there is something to do, or a commit's worth, not for every
                # message: a wake-up per message costs more than the message (GIL hand-offs)
                self.arrived.notify()

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self) -> int:
        """Run until `stop()`; return the process exit code. A second process with this one's client id on the
        same state directory is refused (`ConfigError` naming the key): the broker would hand the session to one
        and cut the other off in turn, and both would claim the same spool rows as one owner."""
        with _one_process(self.settings.state_path, self.owner):
            return self._run()

    def _run(self) -> int:
        log.info("ingest %s starting: broker %s:%d, InfluxDB %s/%s, fleet %s (%d nodes)", self.owner,
                 self.settings.broker.host, self.settings.broker.port, self.settings.influx_url,
                 self.settings.influx_db, self.settings.fleet, len(self.fleet.fleet.nodes))
        writer = threading.Thread(target=self._writer, name="influx-writer", daemon=True)
        writer.start()
        self.mqtt.start(wait_s=0)
        try:
            while not self.stopping.is_set():
                self._process_once()
        finally:
            self.stopping.set()
            self.mqtt.stop()
            self.spooled.set()
            writer.join(timeout=30)
            self.spool_writer.close()
            for conn in self._part_influx:
                conn.close()
            self.store.close()
        if self.fatal:
            log.error("ingest stopped: %s", self.fatal)
            return 2
        return 0

    def stop(self) -> None:
        self.stopping.set()
        with self.arrived:
            self.arrived.notify_all()
            self.room.notify_all()

    # -- processing ---------------------------------------------------------------------------
    def _take(self, room: int) -> list:
        """What has arrived, up to about `room` bytes of spool (`spool_bytes_of`)."""
        flush_s = self.settings.flush_ms / 1000
        with self.arrived:
            if not self.queue:
                self.arrived.wait(timeout=min(flush_s * 4, 0.5))
        if self.queue and len(self.queue) < GATHER and self.queued_readings < MAX_READINGS_PER_COMMIT:
            # let a burst gather for one flush interval: fewer, larger transactions
            deadline = time.monotonic() + flush_s
            with self.arrived:
                while (len(self.queue) < GATHER and self.queued_readings < MAX_READINGS_PER_COMMIT
                       and not self.stopping.is_set()):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.arrived.wait(timeout=left)
        batch = []
        budget = room
        readings = 0
        with self.arrived:
            while (self.queue and len(batch) < MAX_MESSAGES_PER_COMMIT and budget > 0
                   and readings < MAX_READINGS_PER_COMMIT):
                item = self.queue.popleft()
                self.queued_bytes -= len(item[1])
                n = item[6]
                budget -= spool_bytes_of(item[0], item[1], n)
                self.queued_readings -= n
                readings += n
                batch.append(item)
            self.room.notify_all()  # room in the queue for paho's thread
        return batch

    def _process_once(self) -> None:
        now = self.clock()
        room = self._spool_room()
        if room <= 0:
            self.wrote.wait(timeout=0.5)
            self.wrote.clear()
            self._periodic(now)
            return
        batch = self._take(room)
        if batch:
            self._commit(batch)
        self._periodic(self.clock())

    def _spool_room(self) -> int:
        """Bytes the spool may still take (dead letters count too); at 0 the processor stops acknowledging,
        and so it does while the writer is stuck."""
        size = self.store.disk_bytes()
        room = self.spool_max - size
        stuck = self._writer_stuck()
        full = room <= 0 or stuck
        if full != self._spool_full:
            self._spool_full = full
            if stuck:
                log.error("the InfluxDB writer has shown no sign of life for %.0f s: no longer acknowledging",
                          self.clock() - self._writer_beat)
            elif full:
                log.warning("spool full (%.0f MB with the dead letters): no longer acknowledging; the broker "
                            "keeps the messages", size / 1e6)
            else:
                log.info("spool has room again: acknowledging")
        return 0 if stuck else room

    def _writer_stuck(self) -> bool:
        return self.clock() - self._writer_beat > WRITER_STUCK_S

    def _commit(self, batch: list, rest: tuple = ()) -> bool:
        """Commit what arrived, then acknowledge it; False if the store was held. A commit that fails is retried
        message by message; one that finds the store held by another process waits, the messages (and `rest`,
        behind them) kept in their order, unacknowledged."""
        try:
            out, tx, dead_kept = self._transact(batch)
        except StoreBusy as err:
            self._requeue([*batch, *rest], err)
            return False
        except Exception as err:
            if len(batch) == 1:
                try:
                    out, tx, dead_kept = self._transact_internal(batch[0], err)
                except StoreBusy as busy:
                    self._requeue([*batch, *rest], busy)
                    return False
            else:
                log.warning("a commit of %d messages failed (%s); committing them one by one", len(batch), err)
                for i, item in enumerate(batch):
                    if not self._commit([item], batch[i + 1:]):
                        break  # the store was held: this one and the rest wait at the queue's head, in order
                return True
        self.spooled.set()
        for item in batch:
            self.mqtt.ack(item[3], item[4])
        c = self.counters
        c.received += len(batch)
        c.stored += out.stored
        c.duplicates += out.duplicates
        c.dead_lettered += dead_kept
        c.gaps += out.gaps
        c.collisions += out.collisions
        c.rate_limited += out.rate_limited
        self._ack_candidates.update((n, (site, *tx.acks[n])) for n, (site, _e) in out.touched.items() if n in tx.acks)
        self._ack_force |= out.resent
        return True

    def _requeue(self, batch: list, err: Exception) -> None:
        log.warning("the ingest store is held by another process (%s); retrying in %.0f s", err, BUSY_RETRY_S)
        with self.arrived:
            self.queue.extendleft(reversed(batch))
            self.queued_bytes += sum(len(item[1]) for item in batch)
            self.queued_readings += sum(item[6] for item in batch)
        self.pause(BUSY_RETRY_S)

    def _transact(self, batch: list):
        out, tx, dead_kept = transact(self.store, self.fleet.current(), batch, self.owner, self.clock)
        self.counters.internal += out.internal
        return out, tx, dead_kept

    def _transact_internal(self, item, err: Exception):
        """The one message a commit cannot take: keep it as an `internal` dead letter, alone. If even
        that fails the store is broken, and the error stops the service (nothing acknowledged)."""
        topic, payload, received = item[0], item[1], item[2]
        log.error("a message from %s cannot be committed (%s); dead-lettered", contract.printable(topic), err)
        self.counters.internal += 1
        tx = self.store.transaction()
        with tx:
            kept = tx.deadletter(_internal(topic, payload, err), received)
        return Outcome(), tx, kept

    def _periodic(self, now: float) -> None:
        try:
            self._periodic_work(now)
        except StoreBusy as err:  # another process holds the store: the work waits for the next round
            log.warning("the ingest store is held by another process (%s); periodic work postponed", err)

    def _periodic_work(self, now: float) -> None:
        if now >= self._next_sweep:
            self._next_sweep = now + min(60.0, self.settings.gap_timeout_s / 4)
            self._sweep(now)
        if now >= self._next_acks:
            # acks are retained and read by a node at its next wake: coalescing them costs nothing
            self._next_acks = now + ACK_EVERY_S
            if self._ack_candidates or self._ack_force:
                candidates, force = self._ack_candidates, self._ack_force
                self._ack_candidates, self._ack_force = {}, set()
                self._publish_acks(candidates, force)
            if self._acks_pending:
                self._publish_acks(None)
        if now >= self._next_stats:
            self._next_stats = now + self.settings.stats_every_s
            self._write_stats(now)

    def _sweep(self, now: float) -> None:
        gaps = sweep(self.store, now, self.settings.gap_timeout_s, self.owner)
        if gaps:
            self.counters.gaps += gaps
            log.info("recorded %d seq range(s) missing for over %d s as gaps", gaps, self.settings.gap_timeout_s)
            self.spooled.set()

    @contextmanager
    def _ack_lock(self):
        """Across ingest processes sharing a state dir: one publishes acks at a time,
        and waits for the broker, so the retained ack only ever moves forward."""
        with open(self._ack_lock_path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _publish_acks(self, candidates: dict | None, force=frozenset()) -> None:
        """Publish retained acks that moved. `candidates`: node -> (site, epoch, ack); None: check all.
        `force`: nodes whose current ack is re-sent even if unchanged (they resent a batch)."""
        if not self.mqtt.connected.is_set():
            self._acks_pending = True
            return
        with self._ack_lock():
            todo = self.store.acks_to_publish(candidates)
            have = {t[0] for t in todo}
            for node in force:
                if node not in have and (cur := self.store.current_ack(node)) is not None:
                    todo.append((node, *cur, self.store.wire_of(node)))
            sent = []
            for node, site, epoch, seq, wire in todo:
                mid = self.mqtt.publish(contract.topic(site, node, "ack", wire), contract.ack_payload(epoch, seq, wire),
                                        qos=1, retain=True, track=bool(self.settings.mqtt_share_group))
                sent.append((mid, node, epoch, seq))
            if self.settings.mqtt_share_group:
                # several processes publish acks: wait for the broker under the lock, so that
                # the retained ack only moves forward
                done = set(self.mqtt.wait_published([s[0] for s in sent], timeout=2.0))
            else:
                # one process, one connection: paho delivers in order and resends after a
                # reconnect; waiting here could stall behind a flood of incoming messages
                done = {s[0] for s in sent}
            self.store.mark_published([(node, epoch, seq) for mid, node, epoch, seq in sent if mid in done])
            failed = len(done) < len(sent)
            self._acks_pending = failed if candidates is None else (self._acks_pending or failed)

    def _write_stats(self, now: float) -> None:
        lines, _ = self.store.spool_size()
        oldest = [t for t in (self.store.oldest_spooled(), self.queue[0][2] if self.queue else None) if t]
        c = self.counters
        w = self.spool_writer
        fields = {"received": c.received, "stored": c.stored, "written": w.written, "duplicates": c.duplicates,
                  "dead_lettered": c.dead_lettered + w.refused, "spooled": lines, "write_retries": c.write_retries,
                  "gaps": c.gaps, "queued": len(self.queue), "queued_bytes": self.queued_bytes,
                  "collisions": c.collisions, "rate_limited": c.rate_limited, "internal": c.internal,
                  "writer_errors": c.writer_errors,
                  "lag_s": float(max(0.0, now - min(oldest)) if oldest else 0.0)}
        line = lineproto.line("ingest", {"instance": lineproto.tag(self.owner)}, fields, int(now * 1000))
        with self.store.transaction() as tx:
            tx.spool([line], self.owner, now)
        self.spooled.set()

    # -- writing (the writer thread) ------------------------------------------------------------
    def _writer(self) -> None:
        """The writer thread: never dies of an error; a stuck one stops the acknowledgements (`_spool_room`)."""
        backoff = 0.1
        while not self.stopping.is_set():
            self._writer_beat = self.clock()
            try:
                backoff = self._write_once(backoff)
            except _Fatal:
                break  # (what it wrote is released all the same)
            except Exception:  # an error nobody foresaw: logged, counted, retried after a pause
                self.counters.writer_errors += 1
                log.exception("unexpected error in the InfluxDB writer; retrying")
                self.pause(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, 10.0)
        try:
            self.spool_writer.release_written()  # what was written is not written again at the next start
        except Exception as err:  # it would be, idempotently
            log.warning("the spool rows written last stay spooled (%s); they are written again at the next start", err)

    def _alive(self) -> None:
        """After each request InfluxDB answered, from any part's thread: a cycle writing a long backlog to a slow
        InfluxDB is neither stuck (`_writer_stuck`) nor dead to the other processes (its heartbeat)."""
        now = self.clock()
        self._writer_beat = now
        self._beat(now)

    def _beat(self, now: float) -> None:
        """The heartbeat (Store.beat); a store that fails it does not stop the write: the next beat may not."""
        try:
            self.store.beat(self.owner, now, self.lease_s)
        except StoreError as err:
            log.warning("the spool heartbeat was not written (%s); retried at the next request", err)

    def _write_once(self, backoff: float) -> float:
        """One claim-and-write cycle; returns the next backoff."""
        writer = self.spool_writer
        now = self.clock()
        # first, whatever comes of the write: while InfluxDB is down this process keeps its rows (Store.beat)
        self._beat(now)
        rows = self.store.claim(self.owner, max_bytes=WRITE_CHUNK_BYTES, now=now, skip=frozenset(writer.unreleased))
        if not rows:
            if writer.unreleased:  # nothing left to write: now wait for the store if need be
                writer.release_written()
                self.wrote.set()
                return backoff
            self.spooled.wait(timeout=1.0)
            self.spooled.clear()
            return backoff
        try:
            if writer.write_rows(rows, wait=False):
                self.wrote.set()
        except InfluxUnavailable as err:
            self.counters.write_retries += 1
            if self._influx_down_since is None:
                self._influx_down_since = self.clock()
                log.warning("InfluxDB unavailable, spooling on disk and retrying: %s", err)
            self.pause(backoff * random.uniform(0.5, 1.0))
            return min(backoff * 2, 10.0)
        except InfluxNoDatabase:
            log.warning("database %r not found; creating it", self.settings.influx_db)
            try:
                self.influx.create_database()
            except RimbaError as err:
                self._die(f"database {self.settings.influx_db!r} does not exist and cannot be created: {err}")
                raise _Fatal from err
            return backoff
        except InfluxAuthError as err:
            self._die(str(err))
            raise _Fatal from err
        if self._influx_down_since is not None:
            log.info("InfluxDB is back after %.0f s; spool draining", self.clock() - self._influx_down_since)
            self._influx_down_since = None
        return 0.1

    def _die(self, why: str) -> None:
        self.fatal = why
        log.critical("%s", why)
        self.stop()



_V2_ROOT = contract.root(2) + "/"


def spool_bytes_of(topic: str, payload: bytes, readings: int | None = None) -> int:
    """About the spool a message takes, before it is decoded (an estimate from above). A v1 reading's line is
    about its JSON (names written in both: 1.1 to 1.3x on the bench's forest batches), so twice that. A v2 row
    holds integers only: its line has each value's name and decimals (under 5x the JSON of the values) and a
    head per reading (the node and site, which the topic names, the seq, `late`, an offset and the time:
    under 90 bytes beside the topic's length). A v2 batch's lines are 3 to 9 times its JSON. `readings`:
    `readings_in(payload)`, when known."""
    if topic.startswith(_V2_ROOT):
        return 5 * len(payload) + (readings_in(payload) if readings is None else readings) * (90 + len(topic))
    return 2 * len(payload)


def readings_in(payload: bytes) -> int:
    """About how many readings a message holds, before it is decoded (an estimate, not a check): a v1
    reading has its `"seq"`, a v2 row its `[`; a status counts as one; never more than a batch may hold (a
    string of brackets cannot make a commit of one message). An escaped key can hide readings from it: the
    commit's 2,000 messages still bound what it holds."""
    return min(contract.UP_MAX_READINGS, max(1, payload.count(b'"seq"'), payload.count(b"[") - 2))


def transact(store: Store, fleet, batch: list, owner: str, clock=time.time):
    """One transaction over `batch` [(topic, payload, received, mid, qos, retain[, readings_in])]: each
    message handled in isolation, its dead letters kept, the lines spooled; returns (outcome, transaction,
    dead letters kept). Raises only when the store fails (the caller retries message by message)."""
    out = Outcome()
    dead_kept = 0
    parts: list = [[] for _ in range(PARTS)]  # the lines of each spool part (a message's are its node's)
    tx = store.transaction()
    with tx:
        for topic, payload, received, _mid, _qos, retain, *_n in batch:
            one = Outcome()
            try:
                pipeline.handle(tx, topic, payload, received, fleet, one, retained=retain)
            except Exception as err:  # a bug must not stop the flow or lose the message
                log.exception("internal error on a message from %s", contract.printable(topic))
                one = Outcome(dead=[_internal(topic, payload, err)], internal=1)
            for d in one.dead:
                dead_kept += tx.deadletter(d, received)
            if one.lines:
                parts[part_of(pipeline.topic_node(topic))] += one.lines
            out.merge(one)
        now = clock()
        for part, lines in enumerate(parts):
            tx.spool(lines, owner, now, part=part)
    return out, tx, dead_kept


def sweep(store: Store, now: float, gap_timeout_s: float, owner: str) -> int:
    """Record holes open past the timeout as `missing` gaps (the acks stay where they are), and forget each
    node's oldest epochs past `EPOCHS_KEPT`; returns the gaps recorded."""
    out = Outcome()
    tx = store.transaction()
    parts: list = [[] for _ in range(PARTS)]
    with tx:
        for node, epoch in store.holes_due(now - gap_timeout_s):
            one = Outcome()
            pipeline.sweep_holes(tx, [(node, epoch)], now, one)
            parts[part_of(node)] += one.lines
            out.merge(one)
        for part, lines in enumerate(parts):
            tx.spool(lines, owner, now, part=part)
    store.prune_epochs()
    return out.gaps


class _Fatal(Exception):
    """The writer met an error that stops the service (`Ingest.fatal` says which)."""


def _internal(topic: str, payload: bytes, err: BaseException) -> DeadLetter:
    return DeadLetter(topic, payload, "internal", f"internal: {err!r}"[:300], pipeline.topic_node(topic))
