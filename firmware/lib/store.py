# The flash buffer: every reading stays on the node's filesystem until the platform acknowledges it.
#
# Layout under `root`:
#   state.json   {"epoch": E, "next": N, "acked": A, "lost": [[a, b], ...]}, replaced atomically
#                (written to state.tmp, then renamed over; a rename is atomic on LittleFS and POSIX)
#   s<first>.log append-only segments named by their first seq. The first line holds the segment's
#                columns, each other line one reading, each line with the CRC-32 of its text:
#                  "<crc32, 8 hex> <columns: the JSON list of metric names>\n"
#                  "<crc32, 8 hex> <seq> <t> <row: the JSON list of the values, wire.py>\n"
#                The row is the reading's contract v2 text as it goes on the air: a batch is pasted from
#                the stored texts, nothing is encoded again at send time. A reading whose columns are
#                not the open segment's starts a new segment (a batch never spans two column lists).
#   A segment written by firmware 0.2 (one v1 JSON reading a line, "<crc32> {...}") is read as it is,
#   each reading turned into its row when read, and never appended to: a firmware update keeps the
#   epoch, the seq, the ack and every reading not yet acknowledged.
#
# Crash consistency: a record is appended (a new segment's columns and its first reading in the same
# write) and the file closed before the reading counts as taken. Power lost during an append leaves at
# most a torn last line. On open, a last segment that holds no whole reading held only the one being
# written: it is removed, and its name (that reading's seq, never sent) is used again; a last segment
# whose tail is not a whole, valid record is closed for good and appends go to a new segment, named by a
# later seq. So the torn reading is the only loss. The next seq is the larger of state.json's floor and
# the newest valid record + 1, so a seq is never used twice. When the buffer holds more than `capacity`
# readings the oldest segment is dropped and its unacknowledged range reported as lost (contract, `lost`).
import json
import os

import wire
from config import exists
from binascii import crc32

SEGMENT = 64  # readings per segment


def _line(text):
    return "%08x %s\n" % (crc32(text.encode()) & 0xFFFFFFFF, text)


def _text(line):
    """The text of a whole, valid line; None for a torn or damaged one."""
    body = line[9:-1]
    try:
        if line.endswith("\n") and len(line) >= 10 and line[8] == " " and \
                int(line[:8], 16) == crc32(body.encode()) & 0xFFFFFFFF:
            return body
    except ValueError:
        pass
    return None


def _legacy(text):
    """A reading of firmware 0.2 (a v1 JSON object) as (seq, t, row, head), its columns sorted."""
    rec = json.loads(text)
    names = sorted(k for k in rec if k in wire.DEC)
    return rec["seq"], rec["t"], wire.row(rec, names), wire.head(names)


class Store:
    def __init__(self, root, capacity=4000, new_epoch=None):
        self.root = root
        self.capacity = capacity
        if not exists(root):
            os.mkdir(root)
        self.state = self._load_state(new_epoch)
        self.segments = sorted(int(n[1:-4]) for n in os.listdir(root) if n.startswith("s") and n.endswith(".log"))
        self.head = None  # the columns of the open segment
        self.tail_ok = True
        last = self._last_valid_seq()
        if self.segments and last < self.segments[-1]:  # no whole reading: only the torn one was there
            os.remove(self._path(self.segments.pop()))
            self.head = None
        self.next = max(self.state["next"], last + 1)
        self._open_new = not self.tail_ok or self.head is None  # torn, firmware 0.2's, or none at all
        self.dropped = 0

    # -- state ---------------------------------------------------------------------------------------
    def _load_state(self, new_epoch):
        try:
            with open(self.root + "/state.json") as f:
                return json.load(f)
        except (OSError, ValueError):
            epoch = new_epoch() if new_epoch else int.from_bytes(os.urandom(4), "big")
            state: dict = {"epoch": epoch, "next": 1, "acked": 0, "lost": []}
            self._save(state)
            return state

    def _save(self, state=None):
        state = state or self.state
        tmp = self.root + "/state.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(state))
        os.rename(tmp, self.root + "/state.json")

    @property
    def epoch(self):
        return self.state["epoch"]

    # -- records -------------------------------------------------------------------------------------
    def _path(self, first):
        return "%s/s%d.log" % (self.root, first)

    def _lines(self, first):
        """(seq, t, row, head) for each reading of one segment, oldest first; None for a line that is not
        a whole, valid record (a torn write). The columns line sets `self._seen_head`."""
        self._seen_head = None
        try:
            f = open(self._path(first))
        except OSError:
            return
        with f:
            head = None
            while True:
                line = f.readline()
                if not line:
                    return
                text = _text(line)
                if text is None:
                    yield None
                elif text[0] == "[":
                    head = self._seen_head = text
                elif text[0] == "{":
                    self._seen_head = None  # firmware 0.2's segment: read, never appended to
                    yield _legacy(text)
                elif head is None:
                    yield None
                else:
                    seq, t, row = text.split(" ", 2)
                    yield int(seq), int(t), row, head

    def _last_valid_seq(self):
        """The newest valid record's seq (nothing kept); tail_ok says whether the segment ends whole, and
        head is its columns (None for a segment that cannot be appended to)."""
        if not self.segments:
            return 0
        last = self.segments[-1] - 1
        ok = True
        for rec in self._lines(self.segments[-1]):
            ok = rec is not None
            if ok:
                last = rec[0]
        self.tail_ok = ok
        self.head = self._seen_head
        return last

    def append(self, t, head, row):
        """Store one reading (its columns' JSON text and its row's, wire.py); return its seq. Drops the
        oldest segment when over capacity."""
        seq = self.next
        line = _line("%d %d %s" % (seq, int(t), row))
        if self._open_new or head != self.head or seq - self.segments[-1] >= SEGMENT:
            self.segments.append(seq)
            self._open_new = False
            self.head = head
            line = _line(head) + line  # one write: the columns never stand without the reading
        with open(self._path(self.segments[-1]), "a") as f:
            f.write(line)
        self.next = seq + 1
        if seq - self.segments[0] + 1 > self.capacity and len(self.segments) > 1:
            self._drop_oldest()
        return seq

    def _drop_oldest(self):
        first = self.segments[0]
        last = self.segments[1] - 1
        lo = max(first, self.state["acked"] + 1)
        if lo <= last:
            self.state["lost"].append([lo, last])
            self.dropped += last - lo + 1
        self.state["next"] = self.next
        self._save()
        os.remove(self._path(first))
        self.segments.pop(0)

    def pending_raw(self, limit, after=None):
        """Up to `limit` unacknowledged readings above `after` (default: the ack), oldest first, as (seq, t,
        row, head) texts: a batch is built from the stored text, which keeps it small in a 96 KiB heap."""
        acked = max(self.state["acked"], after or 0)
        # the list is allocated whole before the first line is read: grown as it fills, it would need ever
        # larger free blocks among the rows already kept and the lines already read (a fragmented heap)
        out = [None] * min(limit, max(0, self.next - 1 - acked))
        n = 0
        for i, first in enumerate(self.segments):
            if n >= len(out):
                break
            if i + 1 < len(self.segments) and self.segments[i + 1] - 1 <= acked:
                continue
            for rec in self._lines(first):
                if rec is not None and rec[0] > acked:
                    out[n] = rec
                    n += 1
                    if n >= len(out):
                        break
        del out[n:]
        return out

    def pending(self, limit, after=None):
        """The same readings as dicts: {"seq", "t", metric: value}."""
        out = []
        for seq, t, row, head in self.pending_raw(limit, after):
            rec = wire.values(head, row)
            rec["seq"] = seq
            rec["t"] = t
            out.append(rec)
        return out

    def seqs(self):
        """(seq, t) of every reading kept, acknowledged or not, oldest first: what a check reads back."""
        return [(r[0], r[1]) for r in self.pending_raw(1 << 30, after=0)]

    def count(self):
        return max(0, self.next - 1 - self.state["acked"]) if self.segments else 0

    def ack(self, epoch, seq):
        """Free everything up to `seq` of this epoch (an ack for another epoch is ignored)."""
        if epoch != self.state["epoch"] or seq <= self.state["acked"]:
            return False
        seq = min(seq, self.next - 1)
        self.state["acked"] = seq
        self.state["next"] = self.next
        self.state["lost"] = [r for r in self.state["lost"] if r[1] > seq]
        self._save()  # the floor for seq is on disk before any segment goes
        while self.segments and (len(self.segments) > 1 and self.segments[1] - 1 <= seq
                                 or len(self.segments) == 1 and self.next - 1 <= seq):
            os.remove(self._path(self.segments.pop(0)))
        if not self.segments:
            self._open_new = True
        return True

    def lost(self):
        return self.state["lost"]
