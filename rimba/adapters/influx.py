"""The InfluxDB adapter: the v1 HTTP API (`/write` with line protocol, `/query`
with InfluxQL), which InfluxDB 1.x serves natively and 2.x (from 2.4) and 3.x
serve for compatibility. 1.x authenticates with a user and password, 2.x/3.x
with a token. Errors are classified here and nowhere else (see `rimba.errors`).
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse

from rimba.errors import InfluxAuthError, InfluxError, InfluxRejected, InfluxUnavailable


class InfluxTooLarge(InfluxRejected):
    """413: the request body was too large; split it."""


class InfluxNoDatabase(InfluxError):
    """404 database not found."""


class Influx:
    def __init__(self, url: str, database: str, token: str = "", user: str = "", password: str = "",
                 timeout: float = 10.0):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 8086)
        self.prefix = parts.path.rstrip("/")
        self.database = database
        self.timeout = timeout
        self.headers = {}
        if token:
            self.headers["Authorization"] = f"Token {token}"
        elif user:
            cred = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {cred}"
        self._conn = None

    @classmethod
    def from_settings(cls, s) -> Influx:
        return cls(s.influx_url, s.influx_db, s.influx_token, s.influx_user, s.influx_password, s.influx_timeout_s)

    def _connection(self):
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, method: str, path: str, params: dict, body: bytes | None = None,
                 content_type: str | None = None):
        url = f"{self.prefix}{path}?{urllib.parse.urlencode(params)}"
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request(method, url, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException) as err:  # socket timeouts are OSErrors
                self.close()
                stale = isinstance(err, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if attempt == 1 and reused and stale:
                    continue  # a kept-alive connection the server had closed; writes are idempotent
                raise InfluxUnavailable(f"InfluxDB at {self.host}:{self.port} did not answer: {err}") from err
        if resp.will_close:
            self.close()
        return resp.status, data

    @staticmethod
    def _error(status: int, data: bytes) -> InfluxError:
        text = data.decode("utf-8", "replace").strip()
        try:
            text = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            pass
        if status in (401, 403):
            return InfluxAuthError(f"InfluxDB refused the credentials ({status}): {text}; give this service "
                                   "its user (RIMBA_INFLUX_USER and RIMBA_INFLUX_PASSWORD, or RIMBA_INFLUX_TOKEN)")
        if status == 404 and "database not found" in text:
            return InfluxNoDatabase(text)
        if status == 413:
            return InfluxTooLarge(text)
        if status in (400, 422):
            return InfluxRejected(text)
        return InfluxUnavailable(f"InfluxDB answered {status}: {text[:300]}")

    def write(self, body: bytes, precision: str = "ms") -> None:
        status, data = self._request("POST", "/write", {"db": self.database, "precision": precision}, body,
                                     "text/plain; charset=utf-8")
        if status not in (200, 204):
            raise self._error(status, data)

    def query(self, q: str, epoch: str = "s", database: str | None = None) -> list:
        """Run InfluxQL; return the list of statement results (each with `series`)."""
        params = {"q": q, "epoch": epoch, "db": database or self.database}
        status, data = self._request("POST", "/query", params, None)
        if status != 200:
            raise self._error(status, data)
        results = json.loads(data).get("results", [])
        for r in results:
            if "error" in r:
                raise InfluxRejected(r["error"])
        return results

    def query_stream(self, q: str, epoch: str = "s", chunk_size: int = 10_000, database: str | None = None):
        """Run one InfluxQL statement with `chunked=true`; yield its series as they arrive.

        The server sends the result in JSON objects of at most `chunk_size` rows (one a line), so
        neither side holds a large answer whole; a series longer than that comes in several pieces,
        each yielded as it comes. Errors are classified as for `query`.
        """
        params = {"q": q, "epoch": epoch, "db": database or self.database, "chunked": "true",
                  "chunk_size": str(chunk_size)}
        url = f"{self.prefix}/query?{urllib.parse.urlencode(params)}"
        conn = self._connection()
        try:
            conn.request("POST", url, body=None, headers=dict(self.headers))
            resp = conn.getresponse()
            if resp.status != 200:
                data = resp.read()
                self.close()
                raise self._error(resp.status, data)
            for line in resp:
                if not line.strip():
                    continue
                for r in json.loads(line).get("results", []):
                    if "error" in r:
                        raise InfluxRejected(r["error"])
                    yield from r.get("series", [])
            resp.read()
        except (OSError, http.client.HTTPException, ValueError) as err:  # a socket timeout is an OSError
            self.close()
            raise InfluxUnavailable(f"InfluxDB at {self.host}:{self.port} did not answer: {err}") from err
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise
        if resp.will_close:
            self.close()

    def rows(self, q: str, epoch: str = "s") -> list[dict]:
        """The rows of a single-statement query, each a dict of column → value (tags included)."""
        out = []
        for result in self.query(q, epoch):
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    row = dict(zip(series["columns"], values))
                    row.update(tags)
                    out.append(row)
        return out

    def create_database(self) -> None:
        self.query(f'CREATE DATABASE "{self.database}"')

    def ping(self) -> bool:
        try:
            status, _ = self._request("GET", "/ping", {})
        except InfluxUnavailable:
            return False
        return status == 204


def json_error(result: dict) -> str:
    """The errors of a /query answer's statements, joined ("" when none)."""
    return " ".join(r.get("error", "") for r in result.get("results", []))
