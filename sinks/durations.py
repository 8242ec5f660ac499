"""Chalk's duration grammar: ``"100ms"``, ``"1h30m"``, ``"1w 2m"``, ``"infinity"``."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Union

Duration = Union[str, int, timedelta]

INFINITY = timedelta.max
_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
# "ms" must be tried before "m" and "s".
_COMPONENT = re.compile(r"\s*(\d+)(ms|w|d|h|m|s)\s*")


def parse_duration(value: Duration) -> timedelta:
    """Return ``value`` as a ``timedelta``.

    Accepts a ``timedelta``, a whole number of seconds, or a string of
    ``<int><unit>`` components with units ``w d h m s ms``, in any order,
    optionally separated by spaces, each unit at most once; ``"infinity"``
    and ``"all"`` mean no limit. Raises ``ValueError`` for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"duration {value} is negative")
        return value
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"duration {value} is negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration: use a string like '100ms' or '1h30m', "
                         "a timedelta or whole seconds")
    text = value.strip()
    if text in ("infinity", "all"):
        return INFINITY
    total = timedelta(0)
    seen = set()
    position = 0
    while position < len(text):
        match = _COMPONENT.match(text, position)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: expected components like '100ms', "
                             "'30s' or '1h30m' with units w, d, h, m, s, ms")
        amount, unit = match.groups()
        if unit in seen:
            raise ValueError(f"{value!r} is not a duration: unit '{unit}' appears twice")
        seen.add(unit)
        total += int(amount) * _UNITS[unit]
        position = match.end()
    if not seen:
        raise ValueError(f"{value!r} is not a duration")
    return total
