"""Grouping values per key within a bundle, so a stateful step is paid per group, not per value.

``BundleGroups`` is the bookkeeping, for DoFns that group as they go
(the assemble stage's parser); ``GroupWithinBundle`` is the DoFn that does
only that, before ``Buffer``'s stateful step and before an assemble stage fed
by other stages. Like ``BatchElements``, a group
never outlives its bundle: it is emitted when it is full, when too many values
are held in all (a batch runner's bundle may be its whole input), or when the
bundle ends.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.utils import windowed_value
from apache_beam.utils.windowed_value import WindowedValue

# Values of one key in a group, at most (bounds what a stateful step takes at once).
MAX_GROUP = 1000
# Values held in all, at most, before every group is emitted (a batch runner's bundle may be its whole input).
MAX_HELD = 20_000
# A group: its key, its values in arrival order, and the newest value's timestamp (µs).
Group = Tuple[Any, List[Any], int]


class BundleGroups:
    """Values grouped per key, bounded by ``max_group`` values per group and ``max_held`` in all."""

    def __init__(self, max_group: int, max_held: int = MAX_HELD) -> None:
        self.max_group = max_group
        self.max_held = max_held
        # One list per group and the newest timestamps apart, in a dict of ints: every group
        # outlives the collector's young generations, and each object in them is one more it
        # moves to the old generation, whose collections walk the whole heap.
        self._groups: Dict[Hashable, List[Any]] = {}
        self._newest: Dict[Hashable, int] = {}
        self._held = 0

    def add(self, key: Hashable, value: Any, micros: int) -> Optional[Group]:
        """Adds ``value`` to its key's group; returns that group if it is now full (and due)."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = []
            self._newest[key] = micros
        elif micros > self._newest[key]:
            self._newest[key] = micros
        group.append(value)
        self._held += 1
        if len(group) >= self.max_group:
            del self._groups[key]
            self._held -= len(group)
            return key, group, self._newest.pop(key)
        return None

    @property
    def full(self) -> bool:
        """Whether too many values are held: every group is due."""
        return self._held >= self.max_held

    def drain(self) -> Iterator[Group]:
        """Every group held, emptying the bookkeeping now and yielding the groups one by one:
        thousands of groups built at once would outlive the collector's young generations
        and make each drain cost a full garbage collection."""
        groups, newest = self._groups, self._newest
        self._groups, self._newest = {}, {}
        self._held = 0
        return ((key, values, newest[key]) for key, values in groups.items())


class GroupWithinBundle(beam.DoFn):
    """``(key, value)`` → ``(key, [values])`` per key and window within a bundle.

    A group is stamped with its newest value's timestamp; values keep their order.
    """

    def __init__(self, max_group: int, max_held: int = MAX_HELD) -> None:
        self.max_group = max_group
        self.max_held = max_held

    def start_bundle(self) -> None:
        self._groups = BundleGroups(self.max_group, self.max_held)

    def process(self, element: Tuple[Any, Any], timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam) -> Iterable[WindowedValue]:
        key, value = element
        full = self._groups.add((key, window), value, timestamp.micros)
        if full is not None:
            yield _windowed(full)
        if self._groups.full:
            yield from map(_windowed, self._groups.drain())

    def finish_bundle(self) -> Iterable[WindowedValue]:
        yield from map(_windowed, self._groups.drain())


def _windowed(group: Group) -> WindowedValue:
    (key, window), values, micros = group
    return windowed_value.create((key, values), micros, (window,))
