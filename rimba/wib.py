"""Western Indonesia Time (WIB, UTC+7, no daylight saving): Pontianak's clock, for everything people read.

Times are UNIX seconds everywhere in Rimba; only what is shown to people (dashboards, reports, alert texts,
the demo's view) is in WIB. Indonesia's time zones: Keputusan Presiden RI No. 41 Tahun 1987 (WIB = GMT+7).
"""

from __future__ import annotations

import datetime as dt

OFFSET_S = 7 * 3600
IANA = "Asia/Pontianak"  # the tz database's name of the zone (Grafana's dashboards, browsers)
TZ = dt.timezone(dt.timedelta(seconds=OFFSET_S), "WIB")
DAY_S = 86400


def local(t: float) -> float:
    """The UNIX time `t` shifted to WIB's wall clock (for time.gmtime and day arithmetic)."""
    return t + OFFSET_S


def midnight_before(t: float) -> int:
    """The last WIB midnight at or before `t`, as UNIX seconds."""
    return int(t) - (int(t) + OFFSET_S) % DAY_S


def clock(t: float) -> str:
    """'HH:MM WIB' of the UNIX time `t`.

    >>> clock(1764262800)
    '00:00 WIB'
    """
    m = minute_of_day(t)
    return f"{m // 60:02d}:{m % 60:02d} WIB"


def hour_of_day(t):
    """The hour of the WIB day of the UNIX time `t`, with its fraction (0 <= h < 24); arrays too."""
    return (local(t) % DAY_S) / 3600


def minute_of_day(t: float) -> int:
    """Minutes since the WIB midnight before the UNIX time `t` (0-1439)."""
    return (int(local(t)) % DAY_S) // 60


def date(t: float) -> str:
    """'YYYY-MM-DD' of the WIB day of the UNIX time `t`.

    >>> date(1764262800 - 1)
    '2025-11-27'
    """
    return dt.datetime.fromtimestamp(int(t), TZ).strftime("%Y-%m-%d")
