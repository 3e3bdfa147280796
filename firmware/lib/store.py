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

    def _records(self, first):
        """The valid records of one segment, oldest first; sets tail_ok for the newest segment."""
        out: list = []
        ok = True
        try:
            f = open(self._path(first))
        except OSError:
            return out
        with f:
            while True:
                line = f.readline()
                if not line:
                    break
                if not line.endswith("\n") or len(line) < 10 or line[8] != " ":
                    ok = False
                    continue
                body = line[9:-1]
                try:
                    if int(line[:8], 16) != crc32(body.encode()) & 0xFFFFFFFF:
                        ok = False
                        continue
                    out.append(json.loads(body))
                except ValueError:
                    ok = False
        if self.segments and first == self.segments[-1]:
            self.tail_ok = ok
        return out

    def _last_valid_seq(self):
        """The newest valid record's seq, streaming through the newest segment (nothing kept)."""
        if not self.segments:
            return 0
        last = self.segments[-1] - 1
        ok = True
        try:
            f = open(self._path(self.segments[-1]))
        except OSError:
            return last
        with f:
            while True:
                line = f.readline()
                if not line:
                    break
                body = line[9:-1]
                try:
                    valid = line.endswith("\n") and len(line) >= 10 and line[8] == " " and \
                        int(line[:8], 16) == crc32(body.encode()) & 0xFFFFFFFF
                    if valid:
                        last = json.loads(body)["seq"]
                        ok = True
                    else:
                        ok = False
                except (ValueError, KeyError):
                    ok = False
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
        """Like pending, as (seq, t, JSON text) without keeping the parsed readings: a batch is built
        from the stored text, which keeps a full batch small in a 96 KiB heap."""
        out = []
        acked = max(self.state["acked"], after or 0)
        for i, first in enumerate(self.segments):
            if i + 1 < len(self.segments) and self.segments[i + 1] - 1 <= acked:
                continue
            try:
                f = open(self._path(first))
            except OSError:
                continue
            with f:
                while True:
                    line = f.readline()
                    if not line:
                        break
                    if not line.endswith("\n") or len(line) < 10 or line[8] != " ":
                        continue
                    body = line[9:-1]
                    try:
                        if int(line[:8], 16) != crc32(body.encode()) & 0xFFFFFFFF:
                            continue
                        rec = json.loads(body)
                    except ValueError:
                        continue
                    if rec["seq"] > acked:
                        out.append((rec["seq"], rec["t"], body))
                        if len(out) >= limit:
                            return out
        return out

    def pending(self, limit, after=None):
        """Up to `limit` unacknowledged readings with seq above `after` (default: the ack), oldest first."""
        out = []
        acked = max(self.state["acked"], after or 0)
        for i, first in enumerate(self.segments):
            if i + 1 < len(self.segments) and self.segments[i + 1] - 1 <= acked:
                continue
            for rec in self._records(first):
                if rec["seq"] > acked:
                    out.append(rec)
                    if len(out) >= limit:
                        return out
        return out

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
