"""The values that cross the assemble stages, and what a stage holds per related row.

Messages travel keyed by the entity (or join value) they are for, grouped per key
within a bundle: ``(key, [message, ...])``.

Times are microseconds since the epoch, and so are timestamp features until a
sink receives them. A time of ``None`` marks an update that carried no FeatureTime:
it applies in arrival order and moves no clock.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

from apache_beam.utils.timestamp import MIN_TIMESTAMP

# Older than any event time: what an entity's clock is before anything timed reached it.
NEVER = MIN_TIMESTAMP.micros


class Own(NamedTuple):
    """An update of the entity itself: attribute → value, some or all of its features."""

    time: Optional[int]
    values: Dict[str, Any]


class Rel(NamedTuple):
    """An update of a row related to the entity through ``relation``: some or all of its
    attributes; ``values=None`` when the row left ``value``, the join value it was held under."""

    relation: str
    value: Any
    child_key: Any
    time: Optional[int]
    values: Optional[Dict[str, Any]]


class Member(NamedTuple):
    """For a lookup: the parent ``parent`` now holds this lookup's join value."""

    parent: Any


class HeldRow(NamedTuple):
    """A related row as an entity (or lookup) holds it: the time of its newest update
    (``NEVER`` if none was timed), its attributes, and the times of those set by older
    updates (None when every attribute has ``time``, the usual case)."""

    time: int
    row: Dict[str, Any]
    older: Optional[Dict[str, int]]
