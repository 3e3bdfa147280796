# The flash buffer: every reading stays on the node's filesystem until the platform acknowledges it.
#
# Layout under `root`:
#   state.json   {"epoch": E, "next": N, "acked": A, "lost": [[a, b], ...]}, replaced atomically
#                (written to state.tmp, then renamed over; a rename is atomic on LittleFS and POSIX)
#   s<first>.log append-only segments named by their first seq; one record per line:
#                "<crc32 of the JSON, 8 hex> <JSON of the reading>\n"
#
# Crash consistency: a record is appended and the file closed before the reading counts as taken.
# Power lost during an append leaves at most a torn last line; on open a segment whose tail is not a
# whole, valid record is closed for good and appends go to a new segment, so the torn reading is the
# only loss. The next seq is the larger of state.json's floor and the newest valid record + 1, so a
# seq is never used twice. When the buffer holds more than `capacity` readings the oldest segment is
# dropped and its unacknowledged range reported as lost (contract v1, `lost`).
import json
import os

from binascii import crc32

SEGMENT = 64  # readings per segment


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Store:
    def __init__(self, root, capacity=4000, new_epoch=None):
        self.root = root
        self.capacity = capacity
        if not _exists(root):
            os.mkdir(root)
        self.state = self._load_state(new_epoch)
        self.segments = sorted(int(n[1:-4]) for n in os.listdir(root) if n.startswith("s") and n.endswith(".log"))
        self.tail_ok = True
        last = self._last_valid_seq()
        self.next = max(self.state["next"], last + 1)
        if not self.tail_ok:
            self._open_new = True
        else:
            self._open_new = not self.segments
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
        """(record, JSON text) for each line of one segment, oldest first; (None, None) for a line that is
        not a whole, valid record (a torn write)."""
        try:
            f = open(self._path(first))
        except OSError:
            return
        with f:
            while True:
                line = f.readline()
                if not line:
                    return
                body = line[9:-1]
                try:
                    if line.endswith("\n") and len(line) >= 10 and line[8] == " " and \
                            int(line[:8], 16) == crc32(body.encode()) & 0xFFFFFFFF:
                        yield json.loads(body), body
                        continue
                except ValueError:
                    pass
                yield None, None

    def _last_valid_seq(self):
        """The newest valid record's seq (nothing kept); tail_ok says whether the segment ends whole."""
        if not self.segments:
            return 0
        last = self.segments[-1] - 1
        ok = True
        for rec, _text in self._lines(self.segments[-1]):
            ok = rec is not None
            if ok:
                last = rec["seq"]
        self.tail_ok = ok
        return last

    def append(self, t, values):
        """Store one reading; return its seq. Drops the oldest segment when over capacity."""
        seq = self.next
        rec = {"seq": seq, "t": int(t)}
        for k in values:
            rec[k] = values[k]
        body = json.dumps(rec, separators=(",", ":"))  # compact: this text goes on the air as it is
        if self._open_new or seq - self.segments[-1] >= SEGMENT:
            self.segments.append(seq)
            self._open_new = False
        with open(self._path(self.segments[-1]), "a") as f:
            f.write("%08x %s\n" % (crc32(body.encode()) & 0xFFFFFFFF, body))
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
        JSON text): a batch is built from the stored text, which keeps it small in a 96 KiB heap."""
        out = []
        acked = max(self.state["acked"], after or 0)
        for i, first in enumerate(self.segments):
            if i + 1 < len(self.segments) and self.segments[i + 1] - 1 <= acked:
                continue
            for rec, text in self._lines(first):
                if rec is not None and rec["seq"] > acked:
                    out.append((rec["seq"], rec["t"], text))
                    if len(out) >= limit:
                        return out
        return out

    def pending(self, limit, after=None):
        """The same readings as dicts."""
        return [json.loads(text) for _seq, _t, text in self.pending_raw(limit, after)]

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
