"""Site and node names (wire contract v1, "Names").

A name that does not match is refused, never escaped into a topic or a tag.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")


def is_name(value: object) -> bool:
    return isinstance(value, str) and NAME_RE.match(value) is not None
