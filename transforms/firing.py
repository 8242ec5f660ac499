"""``Firing``: a sink's ``(root key, inputs)`` pair, with the version of the entity state it
was computed from, so that stages after a shuffle can tell newer firings from older ones.

Beam does not keep order across a shuffle (Prism, Flink and Dataflow reorder), so the
upsert writer cannot take "last to arrive" for "newest": it compares versions instead.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple


class Version(NamedTuple):
    """Orders an entity's firings: its event-time clock (µs since the epoch), then how many
    times it had fired before (a firing that does not move the clock, such as a late related
    row, still comes after the ones before it)."""

    clock: int
    sequence: int


class Firing(Tuple[Any, Any]):
    """``(key, inputs)``, a pair like any other (it unpacks, indexes and compares as one),
    carrying the ``version`` of the state it was computed from; stages that rebuild the pair
    pass the version on with :func:`version_of`."""

    version: Version

    def __new__(cls, key: Any, inputs: Any, version: Version) -> "Firing":
        firing = super().__new__(cls, (key, inputs))
        firing.version = version
        return firing

    def __reduce__(self) -> Tuple[Any, Tuple[Any, Any, Version]]:
        return Firing, (self[0], self[1], self.version)

    def __repr__(self) -> str:
        return f"Firing({self[0]!r}, {self[1]!r}, {self.version!r})"


def version_of(pair: Any) -> Optional[Version]:
    """The version a pair carries; None for a plain pair (fed by hand, or from a batch sink)."""
    return pair.version if isinstance(pair, Firing) else None
