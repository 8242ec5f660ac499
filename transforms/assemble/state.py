"""The stateful DoFns of the assemble stage: one entity's state per key, and join lookups.

Messages between them, keyed by the entity (or join value) they are for:

- ``(OWN, time, values)``: an update of the entity itself (attribute → value);
- ``(REL, relation, join_value, child_key, time, values)``: an update of a related
  row (some or all of its attributes), or ``values=None`` when that row left this
  join value;
- ``(MEMBER, parent_key)``: a parent now holds this join value (lookups only).

Both the entity's own features and each related row merge the same way: what an
update carries replaces what is held unless the held value is newer. Times are
microseconds since the epoch, and so are timestamp features until a sink receives
them. An entity's *clock* is the latest time of anything it has received; it never
goes back, so what a sink sees does not depend on the order Beam delivers updates in.
"""
from __future__ import annotations

import pickle
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import windowed_value

from transforms.assemble.parse import moment
from transforms.assemble.plan import Edge, Node, SinkPlan
from transforms.assemble.related import RelatedRows
from transforms.firing import Firing, Version

OWN, REL, MEMBER = 0, 1, 2
NEVER = -(2 ** 63)
# Message shapes (which features and relations a message carries) whose firing sinks are remembered.
MAX_SHAPES = 1024
# Assemble's input is globally windowed (checked in ``Assemble.expand``); outputs are stamped
# into that window directly (``windowed_value.create``), skipping the window function that a
# ``TimestampedValue`` goes through and the ``Timestamp`` object it needs.
GLOBAL_WINDOW = (GlobalWindow(),)


def micros(value: Optional[timedelta]) -> Optional[int]:
    return None if value is None else value // timedelta(microseconds=1)


def join_value(values: Dict[str, Any], attrs: Tuple[str, ...]) -> Any:
    """The value of a join's features in ``values`` (a tuple for joins on several); None if unknown."""
    if len(attrs) == 1:
        return values.get(attrs[0])
    found = tuple(values.get(a) for a in attrs)
    return None if None in found else found


class _Child:
    """What an entity needs to know about one of its relations."""

    __slots__ = ("edge", "horizon", "time_attr")

    def __init__(self, node: Node) -> None:
        assert node.edge is not None   # a child node
        self.edge: Edge = node.edge
        self.horizon = micros(node.horizon)
        self.time_attr = node.schema.time


class EntityState:
    """One entity's state: its own features (latest by event time) and its related rows."""

    __slots__ = ("values", "times", "clock", "seen", "routed", "related")

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}
        self.times: Dict[str, int] = {}
        self.clock = NEVER
        self.seen = False
        self.routed: Any = None          # the join value this entity's row was last sent to
        self.related: Dict[str, Dict[Any, Dict[Any, Tuple[int, Dict[str, Any], int]]]] = {}

    # Stored as a plain tuple of its fields, which pickles in three quarters of the object's time.
    def fields(self) -> tuple:
        return self.values, self.times, self.clock, self.seen, self.routed, self.related

    @classmethod
    def of(cls, fields: Optional[tuple]) -> "EntityState":
        state = cls()
        if fields is not None:
            state.values, state.times, state.clock, state.seen, state.routed, state.related = fields
        return state

    def held(self) -> int:
        return sum(len(rows) for by_value in self.related.values() for rows in by_value.values())


class EntityStateFn(beam.DoFn):
    """Keeps one node's entities; emits each entity's row to its parent, or, at the root, fires sinks.

    Input: ``(key, [messages])``, grouped within a bundle and applied in event-time order.
    Output at a non-root node: ``(join_value, REL message)`` with the entity's whole row,
    for the parent's side; at the root: ``(key, update)`` on the output named after each
    sink it fires, timestamped with the entity's clock.
    """

    # Held as pickled bytes: Beam's state cache sizes what it caches by walking every object
    # in it, which for an entity with many related rows costs more than pickling it; and live
    # entities held for a bundle would all reach the collector's old generation (measured: the
    # collections then cost more than the pickling they save).
    STATE = ReadModifyWriteStateSpec("entity", coders.BytesCoder())

    def __init__(self, node: Node, sinks: Tuple[SinkPlan, ...] = ()) -> None:
        self.label = node.label
        self.edge = node.edge
        self.children = {name: _Child(child) for name, child in node.children.items()}
        self.sinks = sinks
        # Per sink, its has-many windows: (top-level relation or None if below a has-one, µs).
        self.windows = tuple(tuple((item.path[0] if len(item.path) == 1 else None,
                                    item.window // timedelta(microseconds=1))
                                   for item in sink.inputs if item.window is not None) for sink in sinks)
        # Per sink, each input as a plain tuple, read at every firing: (parameter, first step of its
        # path, the steps after it, whether the first is a relation, has-many, timestamp, Optional).
        self.inputs = tuple(tuple((item.name, item.path[0], item.path[1:], item.path[0] in self.children,
                                   item.many, item.moment, item.optional) for item in sink.inputs)
                            for sink in sinks)
        # The sinks each message shape fires, filled as shapes are met (see ``_selection``).
        self._selections: Dict[Optional[Tuple[str, ...]], Tuple[Tuple[int, ...], Tuple[int, ...]]] = {}
        self.prunes = any(c.horizon is not None for c in self.children.values())
        self.key_is_moment = dict((a, kind) for a, kind, _ in node.schema.types)[node.schema.primary] is datetime
        self.rows_held = Metrics.distribution(f"sinks.assemble.{self.label}", "related_rows_held")
        self.rows_pruned = Metrics.counter(f"sinks.assemble.{self.label}", "related_rows_pruned")

    def process(self, element: Tuple[Any, List[tuple]],
                stored=beam.DoFn.StateParam(STATE)) -> Iterable[Any]:
        key, messages = element
        state = EntityState.of(_load(stored))
        # Within a bundle Beam's order is arbitrary; event time is the order the updates describe.
        for message in sorted(messages, key=_message_time):
            first = not state.seen and message[0] == OWN
            clock = state.clock
            carried = self._apply(state, message)
            if not state.seen:
                continue
            if self.sinks:
                yield from self._fire(state, key, carried, first, clock)
            else:
                yield from self._route(state, key)
        if self.prunes:
            self._prune(state, state.clock)
            self.rows_held.update(state.held())
        _store(stored, state.fields())

    def _apply(self, state: EntityState, message: tuple) -> Iterable[str]:
        """Merges one message into the state; returns the features or relation it carried."""
        if message[0] == OWN:
            _, time, values = message
            for attr, value in values.items():
                if time >= state.times.get(attr, NEVER):
                    state.values[attr] = value
                    state.times[attr] = time
            state.seen = True
            state.clock = max(state.clock, time)
            carried = list(values)
            for name, child in self.children.items():
                if not child.edge.child_keyed and any(a in values for a in child.edge.parent_attrs):
                    self._keep_current(state, name, child.edge)
                    carried.append(name)     # a new join value is a new related row
            return carried
        _, relation, value, child_key, time, values = message
        child = self.children[relation]
        by_value = state.related.get(relation)
        if by_value is None:
            by_value = state.related[relation] = {}
        rows = by_value.get(value)
        if rows is None:
            rows = by_value[value] = {}
        merge_row(rows, child_key, time, values, child.time_attr)
        state.clock = max(state.clock, time)
        edge = child.edge
        if not edge.child_keyed and value != join_value(state.values, edge.parent_attrs):
            return ()   # kept in case this entity's own update naming ``value`` is still on its way
        return (relation,)

    def _keep_current(self, state: EntityState, relation: str, edge: Edge) -> None:
        # Rows kept for join values this entity no longer holds are dropped when it moves.
        current = join_value(state.values, edge.parent_attrs)
        by_value = state.related.get(relation)
        if by_value:
            for value in [v for v in by_value if v != current]:
                del by_value[value]

    def _rows(self, state: EntityState, key: Any, relation: str) -> Optional[Dict[Any, tuple]]:
        edge = self.children[relation].edge
        value = key if edge.child_keyed else join_value(state.values, edge.parent_attrs)
        return state.related.get(relation, {}).get(value)

    def resolve(self, state: EntityState, key: Any, relation: str) -> Any:
        """A relation of the entity resolved: its row (has-one, None if unknown) or its rows (has-many)."""
        rows = self._rows(state, key, relation)
        if self.children[relation].edge.many:
            return [held[1] for held in rows.values()] if rows else []
        return max(rows.values(), key=_time)[1] if rows else None

    def row(self, state: EntityState, key: Any) -> Dict[str, Any]:
        """The entity's features, with each relation resolved."""
        row = dict(state.values)
        for name in self.children:
            row[name] = self.resolve(state, key, name)
        return row

    def _route(self, state: EntityState, key: Any) -> Iterable[tuple]:
        edge = self.edge
        assert edge is not None   # only non-root nodes route their rows
        value = join_value(state.values, edge.child_attrs)
        if state.routed is not None and state.routed != value:
            yield state.routed, (REL, edge.relation, state.routed, key, state.clock, None)
        state.routed = value
        if value is not None:
            yield value, (REL, edge.relation, value, key, state.clock, self.row(state, key))

    def _fire(self, state: EntityState, key: Any, carried: Iterable[str], first: bool,
              clock_before: int) -> List[TaggedOutput]:
        """Each sink reading something the message carried (anything, on the entity's first
        appearance), or whose time window lost a row as the clock moved, is fired once its
        required inputs are all known."""
        due, watched = self._selection(carried, first)
        if watched and state.clock != clock_before:
            due += tuple(index for index in watched
                         if self._window_moved(state, key, self.windows[index], clock_before))
        resolved: Dict[str, Any] = {}     # relations resolved so far for this message
        shown = moment(key) if self.key_is_moment and due else key
        fired = []
        for index in due:
            update = self._inputs(self.inputs[index], state, key, resolved)
            if update is not None:
                stamped = windowed_value.create(Firing(shown, update, _next_version(state)), state.clock,
                                                GLOBAL_WINDOW)
                fired.append(TaggedOutput(self.sinks[index].name, stamped))
        return fired

    def _selection(self, carried: Iterable[str], first: bool) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """The sinks (by index) a message carrying ``carried`` fires, and those with time windows
        it does not, which fire if the clock moved a row out of one; remembered per message shape."""
        shape = tuple(carried) if not first else None
        selection = self._selections.get(shape)
        if selection is None:
            due = tuple(index for index, sink in enumerate(self.sinks)
                        if first or not sink.triggers.isdisjoint(carried))
            watched = tuple(index for index, windows in enumerate(self.windows) if windows and index not in due)
            selection = (due, watched)
            if len(self._selections) < MAX_SHAPES:
                self._selections[shape] = selection
        return selection

    def _inputs(self, inputs: Tuple[tuple, ...], state: EntityState, key: Any,
                resolved: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """A sink's inputs at the entity's clock; None while a required one is unknown."""
        update = {}
        for name, head, rest, related, many, is_moment, optional in inputs:
            if related:
                if head not in resolved:
                    resolved[head] = self.resolve(state, key, head)
                value = resolved[head]
            else:
                value = state.values.get(head)
            for attr in rest:
                value = value.get(attr) if value is not None else None
            if is_moment and value is not None:
                value = moment(value)
            if many:
                value = RelatedRows(value or [], state.clock)
            elif value is None and not optional:
                return None
            update[name] = value
        return update

    def _window_moved(self, state: EntityState, key: Any, windows: Tuple[Tuple[Optional[str], int], ...],
                      clock_before: int) -> bool:
        for relation, window in windows:
            if relation is None:
                return True     # a window below a has-one relation: assume it moved
            rows = self._rows(state, key, relation)
            if rows and any(clock_before - window <= held[2] < state.clock - window for held in rows.values()):
                return True
        return False

    def _prune(self, state: EntityState, now: int) -> None:
        for name, child in self.children.items():
            if child.horizon is None or name not in state.related:
                continue
            bound = now - child.horizon
            for rows in state.related[name].values():
                old = [k for k, held in rows.items() if held[2] < bound]
                if old:
                    for k in old:
                        del rows[k]
                    self.rows_pruned.inc(len(old))


# Kept among the entity's feature times, under a name no feature can have, so that the
# state's stored layout does not change: how many times the entity has fired.
_FIRINGS = "#firings"


def _next_version(state: EntityState) -> Version:
    """The version of a firing of ``state`` (see :class:`transforms.firing.Version`)."""
    sequence = state.times.get(_FIRINGS, 0)
    state.times[_FIRINGS] = sequence + 1
    return Version(state.clock, sequence)


def _load(stored: Any) -> Any:
    packed = stored.read()
    return pickle.loads(packed) if packed else None


def _store(stored: Any, value: Any) -> None:
    stored.write(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _time(held: tuple) -> int:
    return held[0]


def _message_time(message: tuple) -> int:
    return message[1] if message[0] == OWN else message[4]


def merge_row(rows: Dict[Any, tuple], child_key: Any, time: int, values: Optional[Dict[str, Any]],
              time_attr: Optional[str]) -> None:
    """Merges an update of a related row into ``rows`` (child key → (time, row, row time)):
    its values replace the held ones unless those are newer; ``values=None`` removes the row."""
    held = rows.get(child_key)
    if held is not None and time < held[0]:
        return
    if values is None:
        rows.pop(child_key, None)
        return
    row = {**held[1], **values} if held is not None else dict(values)
    row_time = row.get(time_attr) if time_attr else None
    rows[child_key] = (time, row, row_time if row_time is not None else time)


class LookupFn(beam.DoFn):
    """A parent-keyed join: keyed by join value, it brings child rows and their parents together.

    Input: ``(join_value, [REL or MEMBER messages])``; output: ``(parent_key, REL message)``
    with the child's whole row, for each parent holding that value. A parent that moved on
    still receives rows for its old value; its own state ignores them.
    """

    STATE = ReadModifyWriteStateSpec("lookup", coders.BytesCoder())

    def __init__(self, relation: str, time_attr: Optional[str]) -> None:
        self.relation = relation
        self.time_attr = time_attr

    def process(self, element: Tuple[Any, List[tuple]],
                stored=beam.DoFn.StateParam(STATE)) -> Iterable[Tuple[Any, tuple]]:
        value, messages = element
        rows, members = _load(stored) or ({}, set())
        for message in messages:
            if message[0] == MEMBER:
                parent = message[1]
                if parent not in members:
                    members.add(parent)
                    for child_key, (time, row, _) in rows.items():
                        yield parent, (REL, self.relation, value, child_key, time, row)
                continue
            _, _, _, child_key, time, values = message
            merge_row(rows, child_key, time, values, self.time_attr)
            held = rows.get(child_key)
            forwarded = (REL, self.relation, value, child_key,
                         held[0] if held else time, held[1] if held else None)
            for parent in members:
                yield parent, forwarded
        _store(stored, (rows, members))
