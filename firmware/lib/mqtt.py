# A small MQTT 3.1.1 client for battery nodes (OASIS MQTT 3.1.1, sections 2 and 3).
#
# CONNECT with a Last Will and credentials, PUBLISH at QoS 0 or 1 with PUBACK tracking, SUBSCRIBE,
# PINGREQ, DISCONNECT, TLS when asked. Every socket operation has a deadline, so nothing can hang:
# an unanswered PUBACK is a failure the caller sees (and the reading stays in the flash buffer),
# never an endless wait.
import socket
import struct
import time

try:
    import select
except ImportError:  # pragma: no cover
    select = None  # type: ignore[assignment]


PIECE = 512  # the largest piece of a streamed payload held at once


class MQTTError(Exception):
    pass


def keep(topic):
    """The default sink: every payload is kept whole, in `messages`."""
    return None


def _ms():
    return time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.time() * 1000)


def _elapsed(since):
    return time.ticks_diff(_ms(), since) if hasattr(time, "ticks_diff") else _ms() - since


def _remaining(deadline):
    return time.ticks_diff(deadline, _ms()) if hasattr(time, "ticks_diff") else deadline - _ms()


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _varlen(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class MQTTClient:
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=60, ssl=None,
                 timeout_ms=5000):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.ssl = ssl  # an SSLContext, or None
        self.timeout_ms = timeout_ms
        self.sock = None
        self.pid = 0
        self.messages = []  # (topic, payload, retain) received
        self.acked = set()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sink = keep  # topic -> an object with write(piece) and close(), or None (the payload kept whole)

    # -- the wire ------------------------------------------------------------------------------------
    def _send(self, data):
        sock = self.sock
        if sock is None:
            raise MQTTError("not connected")
        view = memoryview(data)
        start = _ms()
        while view:
            if _elapsed(start) > self.timeout_ms:
                raise MQTTError("send timed out")
            n = sock.write(view) if hasattr(sock, "write") else sock.send(view)
            if n is None:
                n = 0
            view = view[n:]
        self.bytes_sent += len(data)

    def _recv(self, n, deadline):
        """Exactly n bytes, read into one buffer allocated once: a retained config of 2 KB must not need
        the growing copies a fragmented heap may not have room for."""
        sock = self.sock
        if sock is None:
            raise MQTTError("not connected")
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            wait = _remaining(deadline)
            if wait <= 0:
                raise MQTTError("timed out waiting for the broker")
            if select is not None:
                p = select.poll()
                p.register(sock, select.POLLIN)
                if not p.poll(max(1, min(wait, 1000))):
                    continue
            k = sock.readinto(view[got:]) if hasattr(sock, "readinto") else sock.recv_into(view[got:])
            if not k:
                raise MQTTError("the broker closed the connection")
            got += k
        self.bytes_received += n
        return buf

    def _deadline(self, ms=None):
        now = _ms()
        ms = self.timeout_ms if ms is None else ms
        return time.ticks_add(now, ms) if hasattr(time, "ticks_add") else now + ms

    def _packet(self, deadline):
        """One incoming packet: (type, flags, body)."""
        head = self._recv(1, deadline)[0]
        n = 0
        shift = 0
        while True:
            b = self._recv(1, deadline)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if head >> 4 == 3 and n >= 2:
            self._publish_in(head, n, deadline)
            return 3, head & 0x0F, None
        body = self._recv(n, deadline) if n else b""
        return head >> 4, head & 0x0F, body

    def _publish_in(self, head, n, deadline):
        """A PUBLISH from the broker: acknowledged (QoS 1), and its payload kept in `messages`, or, when `sink`
        takes its topic, given to the sink's write() in pieces of at most PIECE bytes as they arrive, never
        whole in RAM (a firmware file: lib/ota.py)."""
        tlen = struct.unpack("!H", self._recv(2, deadline))[0]
        topic = bytes(self._recv(tlen, deadline)).decode()
        left = n - 2 - tlen
        pid = b""
        if (head >> 1) & 3:
            pid = self._recv(2, deadline)
            left -= 2
        out = self.sink(topic)
        if out is None:
            self.messages.append((topic, self._recv(left, deadline) if left > 0 else b"", bool(head & 1)))
        else:
            while left > 0:
                piece = self._recv(min(left, PIECE), deadline)
                out.write(piece)
                left -= len(piece)
            out.close()
        if pid:
            self._send(b"\x40\x02" + pid)  # PUBACK

    def _handle(self, kind, flags, body):
        if kind == 4:  # PUBACK
            self.acked.add(struct.unpack("!H", body[:2])[0])

    # -- the protocol --------------------------------------------------------------------------------
    def connect(self, will_topic=None, will_payload=b"", will_retain=True, clean=True):
        addr = socket.getaddrinfo(self.host, self.port)[0][-1]
        self.sock = socket.socket()
        self.sock.settimeout(self.timeout_ms / 1000)
        try:
            self.sock.connect(addr)
            if self.ssl is not None:
                try:
                    self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.host)
                except (ValueError, RuntimeError) as err:  # mbedTLS: an untrusted or invalid certificate
                    raise MQTTError("TLS: %s" % str(err).strip())
            flags = 0x02 if clean else 0
            payload = _str(self.client_id)
            if will_topic:
                flags |= 0x04 | 0x08 | (0x20 if will_retain else 0)  # will, QoS 1, retain
                payload += _str(will_topic) + _str(will_payload)
            if self.user:
                flags |= 0x80
                payload += _str(self.user)
                if self.password:
                    flags |= 0x40
                    payload += _str(self.password)
            var = _str("MQTT") + bytes((4, flags)) + struct.pack("!H", self.keepalive)
            self._send(b"\x10" + _varlen(len(var) + len(payload)) + var + payload)
            kind, _f, body = self._packet(self._deadline())
            if kind != 2 or len(body) < 2:
                raise MQTTError("no CONNACK")
            if body[1]:
                raise MQTTError("connection refused, code %d" % body[1])
        except Exception:
            self.close()
            raise

    def publish(self, topic, payload, qos=1, retain=False):
        """Send one message; at QoS 1 return its packet id (see wait_acked).

        `payload` is bytes, a str, or an iterable of them (a list, or an object that makes its pieces
        each time it is iterated: wire.Up) sent one after the other: a large message never needs one
        large block of a small heap. It is gone over twice, to count its bytes and to send them.
        """
        head = 0x30 | (qos << 1) | (1 if retain else 0)
        body = _str(topic)
        pid = 0
        if qos:
            self.pid = self.pid % 65535 + 1
            pid = self.pid
            body += struct.pack("!H", pid)
        parts = [payload] if isinstance(payload, (str, bytes, bytearray)) else payload
        size = 0
        for part in parts:
            size += len(part.encode() if isinstance(part, str) else part)
        self._send(bytes((head,)) + _varlen(len(body) + size) + body)
        for part in parts:
            self._send(part.encode() if isinstance(part, str) else part)
        return pid

    def wait_acked(self, pids, ms=None):
        """Read until every packet id in pids is acknowledged; raise MQTTError at the deadline."""
        self.until(lambda: all(p in self.acked for p in pids), ms)

    def until(self, done, ms=None):
        """Read what the broker sends until done() is true; raise MQTTError at the deadline."""
        deadline = self._deadline(ms)
        while not done():
            self._handle(*self._packet(deadline))

    def subscribe(self, topics, qos=1):
        self.pid = self.pid % 65535 + 1
        body = struct.pack("!H", self.pid)
        for t in topics:
            body += _str(t) + bytes((qos,))
        self._send(b"\x82" + _varlen(len(body)) + body)
        deadline = self._deadline()
        while True:
            kind, flags, data = self._packet(deadline)
            if kind == 9:  # SUBACK
                if any(c == 0x80 for c in data[2:]):
                    raise MQTTError("subscription refused")
                return
            self._handle(kind, flags, data)

    def poll(self, ms):
        """Take in whatever the broker sends for `ms` milliseconds (retained messages after subscribing)."""
        deadline = self._deadline(ms)
        try:
            while True:
                self._handle(*self._packet(deadline))
        except MQTTError as err:
            if "timed out" not in str(err):
                raise

    def ping(self):
        self._send(b"\xc0\x00")
        deadline = self._deadline()
        while True:
            kind, flags, body = self._packet(deadline)
            if kind == 13:
                return
            self._handle(kind, flags, body)

    def disconnect(self):
        try:
            self._send(b"\xe0\x00")
        finally:
            self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
