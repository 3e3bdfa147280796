"""Rimba's exception tree.

    RimbaError                 anything Rimba raises on purpose; the CLI prints it as one line
    ├── ConfigError            a setting or the fleet file is invalid (names the key)
    ├── StackError             the local broker or database cannot be started or reached
    ├── StoreError             the ingest's local store (spool, dead letters) failed
    │   └── StoreBusy          another process holds the store: wait and retry
    └── InfluxError            the database answered with an error
        ├── InfluxAuthError    credentials refused (401/403): stop loudly
        ├── InfluxRejected     the points themselves were refused (400): dead-letter, never retry
        └── InfluxUnavailable  5xx, timeout, connection refused: retry with backoff
"""


class RimbaError(Exception):
    """Base of every error Rimba raises on purpose."""


class ConfigError(RimbaError):
    """An invalid setting or fleet file; the message names the key."""


class StackError(RimbaError):
    """The local Mosquitto or InfluxDB could not be started, stopped or reached."""


class StoreError(RimbaError):
    """The ingest's on-disk store failed."""


class StoreBusy(StoreError):
    """Another process holds the store's write lock longer than the wait allows; retry later."""


class InfluxError(RimbaError):
    """InfluxDB answered with an error."""


class InfluxAuthError(InfluxError):
    """InfluxDB refused the credentials."""


class InfluxRejected(InfluxError):
    """InfluxDB refused the points (bad line protocol, type conflict)."""


class InfluxUnavailable(InfluxError):
    """InfluxDB is down, overloaded or too slow; worth retrying."""
