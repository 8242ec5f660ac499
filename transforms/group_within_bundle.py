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

from typing import Any, Dict, Hashable, Iterable, List, Tuple

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
        self._groups: Dict[Hashable, list] = {}
        self._held = 0

    def add(self, key: Hashable, value: Any, micros: int) -> Iterable[Group]:
        """Adds ``value`` to its key's group; returns the groups now due (usually none)."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = [[], micros]
        group[0].append(value)
        if micros > group[1]:
            group[1] = micros
        self._held += 1
        if len(group[0]) >= self.max_group:
            del self._groups[key]
            self._held -= len(group[0])
            return ((key, group[0], group[1]),)
        if self._held >= self.max_held:
            return self.drain()
        return ()

    def drain(self) -> List[Group]:
        """Every group held, emptying the bookkeeping (at the end of a bundle)."""
        groups = [(key, values, micros) for key, (values, micros) in self._groups.items()]
        self._groups = {}
        self._held = 0
        return groups


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
        for due in self._groups.add((key, window), value, timestamp.micros):
            yield _windowed(due)

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for due in self._groups.drain():
            yield _windowed(due)


def _windowed(group: Group) -> WindowedValue:
    (key, window), values, micros = group
    return windowed_value.create((key, values), micros, (window,))
