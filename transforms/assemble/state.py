"""The stateful DoFns of the assemble stage: one entity's state per key, and join lookups.

They exchange the messages of ``transforms.assemble.messages``. Both the entity's own
features and each related row merge the same way: what a timed update carries
replaces what is held unless the held value is newer; an untimed one replaces it
(arrival order). An entity's *clock* is the latest event time of anything it has
received; it never goes back.

"Now" for time windows (``transforms.assemble.clock``): a firing caused by an update is
evaluated as of the later of the entity's clock and the last window timer that fired
for it. Each entity with windowed sinks keeps one event-time timer, at the earliest
instant after that "now" when one of its held rows enters or leaves a window a sink
reads; when the watermark passes it, those sinks fire again with no new update,
evaluated as of that instant, unless it lies past the data (or ``as_of``).
"""
from __future__ import annotations

import copy
import pickle
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import windowed_value
from apache_beam.utils.timestamp import Timestamp

from transforms.assemble import clock
from transforms.assemble.messages import NEVER, OLDER, ROW, TIME, HeldRow, Member, Own, Rel, Tick
from transforms.assemble.parse import moment
from transforms.assemble.plan import Edge, Node, SinkPlan, WindowPlan
from transforms.assemble.related import RelatedRows
from transforms.firing import Firing, Version

# Message shapes (which features and relations a message carries) whose firing sinks are remembered.
MAX_SHAPES = 1024
# Assemble's input is globally windowed (checked in ``Assemble.expand``); outputs are stamped
# into that window directly (``windowed_value.create``), skipping the window function that a
# ``TimestampedValue`` goes through and the ``Timestamp`` object it needs.
GLOBAL_WINDOW = (GlobalWindow(),)
# Timers are kept to the millisecond on portable runners (measured: a timer set 10 µs ahead
# fired at 0); they are set at the due instant rounded up, and evaluate at the exact one.
_MS = 1000
_LAST_TIMER = GlobalWindow().max_timestamp().micros // _MS * _MS - _MS
# Where a timer waiting for the end of a bounded input is set: the watermark passes it only then.
END_OF_INPUT = Timestamp(micros=_LAST_TIMER)


def micros(value: Optional[timedelta]) -> Optional[int]:
    return None if value is None else value // timedelta(microseconds=1)


def join_value(values: Dict[str, Any], attrs: Tuple[str, ...]) -> Any:
    """The value of a join's features in ``values`` (a tuple for joins on several); None if unknown."""
    if len(attrs) == 1:
        return values.get(attrs[0])
    found = tuple(values.get(a) for a in attrs)
    return None if None in found else found


class Child:
    """What an entity (or the routing step in front of it) needs to know about one of its relations."""

    __slots__ = ("edge", "horizon", "time_attr")

    def __init__(self, node: Node) -> None:
        assert node.edge is not None   # a child node
        self.edge: Edge = node.edge
        self.horizon = micros(node.horizon)
        self.time_attr = node.schema.time


class EntityState:
    """One entity's state: its own features (latest by event time) and its related rows."""

    __slots__ = ("values", "times", "clock", "seen", "routed", "related", "fired", "due", "sequence")

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}
        self.times: Dict[str, int] = {}
        self.clock = NEVER
        self.seen = False
        self.routed: Any = None          # the join value this entity's row was last sent to
        self.related: Dict[str, Dict[Any, Dict[Any, HeldRow]]] = {}
        self.fired = NEVER               # the latest window timer that fired for this entity
        self.due: Optional[int] = None   # when its pending window timer is due (exact µs)
        self.sequence = 0                # how many times it has fired (orders its firings' versions)

    # Stored as a plain tuple of its fields, which pickles in three quarters of the object's time.
    def fields(self) -> tuple:
        return (self.values, self.times, self.clock, self.seen, self.routed, self.related, self.fired, self.due,
                self.sequence)

    @classmethod
    def of(cls, fields: Optional[tuple]) -> "EntityState":
        state = cls()
        if fields is not None:
            (state.values, state.times, state.clock, state.seen, state.routed, state.related,
             state.fired, state.due, state.sequence) = fields
        return state

    @property
    def now(self) -> int:
        """What the entity's windows are evaluated at when an update fires its sinks."""
        return max(self.clock, self.fired)

    def held(self) -> int:
        """Related rows held, removal markers included (they are held until pruned)."""
        return sum(len(rows) for by_value in self.related.values() for rows in by_value.values())


class EntityStateFn(beam.DoFn):
    """Keeps one node's entities; emits each entity's row to its parent, or, at the root, fires sinks.

    Input: ``(key, [messages])``, grouped within a bundle; timed ones are applied in event-time
    order, untimed ones in arrival order. Output at a non-root node: ``(join_value, Rel)`` with
    the entity's whole row, for the parent's side; at the root: ``(key, update)`` on the output
    named after each sink it fires, timestamped with the entity's clock. For sinks with time
    windows use :func:`entity_state_fn`, which adds the window timer.
    """

    # Held as pickled bytes: Beam's state cache sizes what it caches by walking every object
    # in it, which for an entity with many related rows costs more than pickling it; and live
    # entities held for a bundle would all reach the collector's old generation (measured: the
    # collections then cost more than the pickling they save).
    STATE = ReadModifyWriteStateSpec("entity", coders.BytesCoder())

    def __init__(self, node: Node, sinks: Tuple[SinkPlan, ...] = (), clock_id: str = "",
                 as_of: Optional[int] = None) -> None:
        self.label = node.label
        self.edge = node.edge
        self.children = {name: Child(child) for name, child in node.children.items()}
        self.sinks = sinks
        self.fires = bool(sinks)
        self.primary = node.schema.primary
        self.clock_id, self.as_of = clock_id, as_of
        # Per sink, its windowed inputs: (first step of the path, the steps after it, windows).
        self.windows: Tuple[Tuple[Tuple[str, Tuple[str, ...], Tuple[WindowPlan, ...]], ...], ...] = tuple(
            tuple((item.path[0], item.path[1:], item.windows) for item in sink.inputs if item.windows)
            for sink in sinks)
        # Each windowed path any sink reads, with every window on it.
        paths: Dict[Tuple[str, Tuple[str, ...]], Dict[WindowPlan, None]] = {}
        for windowed in self.windows:
            for head, rest, windows in windowed:
                paths.setdefault((head, rest), {}).update(dict.fromkeys(windows))
        self.watched_paths = tuple((path, tuple(windows)) for path, windows in paths.items())
        # Per sink, each input as a plain tuple, read at every firing: (parameter, first step of its
        # path, the steps after it, whether the first is a relation, has-many, timestamp, Optional,
        # the feature's default as ``(value,)`` or ``()``).
        self.inputs = tuple(tuple((item.name, item.path[0], item.path[1:], item.path[0] in self.children,
                                   item.many, item.moment, item.optional, item.default) for item in sink.inputs)
                            for sink in sinks)
        # The sinks each message shape fires, filled as shapes are met (see ``_selection``).
        self._selections: Dict[Optional[Tuple[str, ...]], Tuple[Tuple[int, ...], Tuple[int, ...]]] = {}
        # Sinks fired once per visit of the entity (see ``_fire``): only their latest firing
        # matters, and their inputs, once all known, stay known. Each required one is a has-many
        # frame or a feature of the entity's own that cannot be null: a has-one relation's row
        # can move away, and an ``Optional`` feature can receive a null.
        nullable = {attr for attr, _, optional in node.schema.types if optional}
        self.coalesced = frozenset(
            index for index, (sink, inputs) in enumerate(zip(sinks, self.inputs))
            if sink.latest_only and all(optional or many or not (related or head in nullable)
                                        for _, head, _, related, many, _, optional, _ in inputs))
        self.prunes = any(c.horizon is not None for c in self.children.values())
        self.key_is_moment = dict((a, kind) for a, kind, _ in node.schema.types)[node.schema.primary] is datetime
        self.rows_held = Metrics.distribution(f"sinks.assemble.{self.label}", "related_rows_held")
        self.rows_pruned = Metrics.counter(f"sinks.assemble.{self.label}", "related_rows_pruned")

    def process(self, element: Tuple[Any, List[Any]], stored=beam.DoFn.StateParam(STATE)) -> Iterable[Any]:
        key, messages = element
        state = EntityState.of(_load(stored))
        yield from self._receive(state, key, messages)
        _store(stored, state.fields())

    def _receive(self, state: EntityState, key: Any, messages: List[Any]) -> Iterable[Any]:
        last_due: Dict[int, Tuple[int, int]] = {}    # coalesced sinks due: (clock, now) when last due
        for message in _in_order(messages):
            # A root entity is known from its first message of any kind, a related row too (its key
            # is all a sink may need of it); a node below sends its row up once it has one.
            first = not state.seen and (self.fires or type(message) is Own)
            now = state.now
            carried = self._apply(state, message)
            if first and self.fires:
                state.seen = True
                state.values.setdefault(self.primary, key)
            if not state.seen:
                continue
            if self.sinks:
                yield from self._fire(state, key, carried, first, now, last_due)
            else:
                yield from self._route(state, key)
        for index, (clock_then, now_then) in sorted(last_due.items()):
            yield from self._outputs(state, key, (index,), now_then, clock_then)
        if self.prunes:
            self._prune(state, state.now)
            self.rows_held.update(state.held())

    def _apply(self, state: EntityState, message: Any) -> Iterable[str]:
        """Merges one message into the state; returns the features or relation it carried."""
        if type(message) is Own:
            time, values = message
            if time is None:
                for attr, value in values.items():
                    state.values[attr] = value
            else:
                times = state.times
                for attr, value in values.items():
                    if time >= times.get(attr, NEVER):
                        state.values[attr] = value
                        times[attr] = time
                if time > state.clock:
                    state.clock = time
            state.seen = True
            carried = list(values)
            for name, child in self.children.items():
                if not child.edge.child_keyed and any(a in values for a in child.edge.parent_attrs):
                    self._keep_current(state, name, child.edge)
                    carried.append(name)     # a new join value is a new related row
            return carried
        relation, value, child_key, time, values = message
        by_value = state.related.get(relation)
        if by_value is None:
            by_value = state.related[relation] = {}
        rows = by_value.get(value)
        if rows is None:
            rows = by_value[value] = {}
        merge_row(rows, child_key, time, values)
        if time is not None and time > state.clock:
            state.clock = time
        edge = self.children[relation].edge
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

    def _rows(self, state: EntityState, key: Any, relation: str) -> Optional[Dict[Any, HeldRow]]:
        edge = self.children[relation].edge
        value = key if edge.child_keyed else join_value(state.values, edge.parent_attrs)
        return state.related.get(relation, {}).get(value)

    def resolve(self, state: EntityState, key: Any, relation: str) -> Any:
        """A relation of the entity resolved: its row (has-one, None if unknown) or its rows (has-many)."""
        rows = self._rows(state, key, relation)
        if self.children[relation].edge.many:
            return [held[ROW] for held in rows.values() if held[ROW] is not None] if rows else []
        present = [held for held in rows.values() if held[ROW] is not None] if rows else None
        return max(present, key=_time)[ROW] if present else None

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
            yield state.routed, Rel(edge.relation, state.routed, key, state.clock, None)
        state.routed = value
        if value is not None:
            yield value, Rel(edge.relation, value, key, state.clock, self.row(state, key))

    def _fire(self, state: EntityState, key: Any, carried: Iterable[str], first: bool,
              now_before: int, last_due: Dict[int, Tuple[int, int]]) -> List[TaggedOutput]:
        """Each sink reading something the message carried (anything, on the entity's first
        appearance), or whose time windows gained or lost a row as "now" moved, is fired once
        its required inputs are all known.

        A ``coalesced`` sink is fired once per visit instead, after its last message, as it
        would have been at the last message that fired it (``last_due``: that clock and "now"):
        no message after that one changed what it reads, so its inputs are the same, and the
        firings before it are work its table never keeps (the bank job at 10,000 users: the
        aggregate sink fired 165,360 times for 15,021 calls, now 24,979 times)."""
        due, watched = self._selection(carried, first)
        now = state.now
        if watched and now != now_before:
            resolved: Dict[str, Any] = {}
            due += tuple(index for index in watched
                         if self._windows_changed(state, key, index, now_before, now, resolved))
        if self.coalesced:
            for index in due:
                if index in self.coalesced:
                    last_due[index] = (state.clock, now)
            due = tuple(index for index in due if index not in self.coalesced)
        return self._outputs(state, key, due, now)

    def _outputs(self, state: EntityState, key: Any, indexes: Iterable[int], now: int,
                 clock: Optional[int] = None) -> List[TaggedOutput]:
        """Fires the sinks ``indexes`` whose inputs are all known, as of ``now`` and of the
        entity's clock (or ``clock``, an earlier one of its)."""
        resolved: Dict[str, Any] = {}     # relations resolved so far for this firing
        shown = moment(key) if self.key_is_moment else key
        clock = state.clock if clock is None else clock
        fired = []
        for index in indexes:
            update = self._inputs(self.inputs[index], state, key, resolved, now)
            if update is not None:
                stamped = windowed_value.create(Firing(shown, update, _next_version(state, clock)), clock,
                                                GLOBAL_WINDOW)
                fired.append(TaggedOutput(self.sinks[index].name, stamped))
        return fired

    def _selection(self, carried: Iterable[str], first: bool) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """The sinks (by index) a message carrying ``carried`` fires, and those with time windows
        it does not, which fire if "now" moved a row into or out of one; remembered per message shape."""
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
                resolved: Dict[str, Any], now: int) -> Optional[Dict[str, Any]]:
        """A sink's inputs as of ``now``; None while a required one is unknown."""
        update = {}
        for name, head, rest, related, many, is_moment, optional, default in inputs:
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
            if value is None and default and self._never_received(state, head, rest, related, resolved):
                value = copy.copy(default[0])   # a sink changing a default list must not change it for the next
            if many:
                value = RelatedRows(value or [], now)
            elif value is None and not optional:
                return None
            update[name] = value
        return update

    @staticmethod
    def _never_received(state: EntityState, head: str, rest: Tuple[str, ...], related: bool,
                        resolved: Dict[str, Any]) -> bool:
        """Whether the entity holding an input's feature exists but never received that feature
        (a null it received stays null); a related entity that does not exist has no features."""
        holder: Any = resolved[head] if related else state.values
        leaf = rest[-1] if rest else head
        for attr in rest[:-1]:
            holder = holder.get(attr) if holder is not None else None
        return isinstance(holder, dict) and leaf not in holder

    def _value(self, state: EntityState, key: Any, head: str, rest: Tuple[str, ...], related: bool,
               resolved: Dict[str, Any]) -> Any:
        if related:
            if head not in resolved:
                resolved[head] = self.resolve(state, key, head)
            value = resolved[head]
        else:
            value = state.values.get(head)
        for attr in rest:
            value = value.get(attr) if value is not None else None
        return value

    def _window_rows(self, state: EntityState, key: Any, head: str, rest: Tuple[str, ...],
                     resolved: Dict[str, Any]) -> List[Dict[str, Any]]:
        return self._value(state, key, head, rest, True, resolved) or []

    def _windows_changed(self, state: EntityState, key: Any, index: int, after: int, until: int,
                         resolved: Dict[str, Any]) -> bool:
        """Whether a row entered or left a window of sink ``index`` as "now" went from ``after`` to ``until``."""
        for head, rest, windows in self.windows[index]:
            rows = self._window_rows(state, key, head, rest, resolved)
            for window in windows:
                # A row timed t changes at t and t + ago + 1 (after), at t + ago (before): the
                # times whose changes fall in (after, until], computed once per window.
                attr, ago = window.attr, window.ago
                if window.side == "after":
                    low, high, low_out, high_out = after, until, after - ago - 1, until - ago - 1
                else:
                    low, high = low_out, high_out = after - ago, until - ago
                for row in rows:
                    time = row.get(attr)
                    if time is not None and (low < time <= high or low_out < time <= high_out):
                        return True
        return False

    def next_change(self, state: EntityState, key: Any) -> Optional[int]:
        """The earliest instant after "now" at which a held row enters or leaves a window a sink reads."""
        now = state.now
        earliest: Optional[int] = None
        resolved: Dict[str, Any] = {}
        for (head, rest), windows in self.watched_paths:
            rows = self._window_rows(state, key, head, rest, resolved)
            for window in windows:
                attr = window.attr
                for row in rows:
                    time = row.get(attr)
                    if time is None:
                        continue
                    for change in window.changes(time):
                        if now < change and (earliest is None or change < earliest):
                            earliest = change
        return earliest

    def _prune(self, state: EntityState, now: int) -> None:
        for name, child in self.children.items():
            if child.horizon is None or name not in state.related:
                continue
            bound = now - child.horizon
            attr = child.time_attr
            for rows in state.related[name].values():
                old = [k for k, held in rows.items() if row_time(held, attr) < bound]
                if old:
                    for k in old:
                        del rows[k]
                    self.rows_pruned.inc(len(old))


class WindowedEntityStateFn(EntityStateFn):
    """``EntityStateFn`` for a root whose sinks read time windows, with one event-time timer
    per entity.

    On an unbounded input the timer is due at the next instant a held row enters or leaves one
    of those windows; it is set again only when that instant comes earlier than the pending
    one (setting a timer per update costs as much as the update), so a timer that fires early
    finds nothing changed and is set for the next change. On a bounded input the watermark
    stays behind every event time until the input ends, so the timer waits for the end and
    evaluates the windows once, as of the input's final clock: one firing per entity whose
    windows change after its own clock, not one per change. When every window reads rows routed
    to the entity (``transforms.assemble.route``), the routing step's ``Tick`` says the input
    ended instead, and the entity sets no timer (``ticked``).
    """

    WINDOW_TIMER = TimerSpec("window", TimeDomain.WATERMARK)

    def __init__(self, node: Node, sinks: Tuple[SinkPlan, ...], clock_id: str, as_of: Optional[int],
                 bounded: bool, ticked: bool = False) -> None:
        super().__init__(node, sinks, clock_id, as_of)
        self.bounded = bounded
        # Bounded, its windows read only routed rows: the routing step in front of it tells each
        # entity the input ended (a ``Tick``, see ``transforms.assemble.route``), and no timer is set.
        self.ticked = ticked

    def start_bundle(self) -> None:
        # The data clock, read once per bundle (from files: see ``transforms.assemble.clock``).
        self._latest: Optional[int] = None

    def process(self, element: Tuple[Any, List[Any]], stored=beam.DoFn.StateParam(EntityStateFn.STATE),
                timer=beam.DoFn.TimerParam(WINDOW_TIMER)) -> Iterable[Any]:
        key, messages = element
        state = EntityState.of(_load(stored))
        if self.ticked:
            updates = [message for message in messages if type(message) is not Tick]
            if updates:
                yield from self._receive(state, key, updates)
            if len(updates) < len(messages):
                latest = self._data_clock()
                if latest > state.now:
                    yield from self._evaluate(state, key, latest)
        else:
            yield from self._receive(state, key, messages)
            self._arm(state, key, timer)
        _store(stored, state.fields())

    @on_timer(WINDOW_TIMER)
    def window_moved(self, key=beam.DoFn.KeyParam, stored=beam.DoFn.StateParam(EntityStateFn.STATE),
                     timer=beam.DoFn.TimerParam(WINDOW_TIMER)) -> Iterable[Any]:
        state = EntityState.of(_load(stored))
        due = state.due
        if due is None:
            return
        state.due = None
        latest = self._data_clock()
        target = latest if self.bounded else due
        if target <= latest:
            if target > state.now:
                yield from self._evaluate(state, key, target)
            if self.bounded:
                return      # the input has ended: nothing reads this state again
            if self.prunes:
                self._prune(state, state.now)
            self._arm(state, key, timer)
        # else: the watermark passed the data; an update for this entity arms the timer again.
        _store(stored, state.fields())

    def _data_clock(self) -> int:
        """Never past the data (or ``as_of``): at the end of a bounded input, or a drain, the
        watermark jumps to +infinity, and windows evaluated there would all be empty."""
        if self._latest is None:
            self._latest = clock.latest(self.clock_id, self.as_of)
        return self._latest

    def _evaluate(self, state: EntityState, key: Any, target: int) -> List[TaggedOutput]:
        """Fires the sinks whose windows gained or lost a row as "now" moved to ``target``."""
        before = state.now
        state.fired = target
        resolved: Dict[str, Any] = {}
        changed = [index for index, windows in enumerate(self.windows)
                   if windows and self._windows_changed(state, key, index, before, target, resolved)]
        return self._outputs(state, key, changed, target)

    def _arm(self, state: EntityState, key: Any, timer: Any) -> None:
        if self.bounded:
            if state.due is None and self.next_change(state, key) is not None:
                state.due = _LAST_TIMER
                timer.set(END_OF_INPUT)
            return
        due = self.next_change(state, key)
        if due is not None and (state.due is None or due < state.due):
            state.due = due
            timer.set(Timestamp(micros=min(-(-due // _MS) * _MS, _LAST_TIMER)))


def entity_state_fn(node: Node, sinks: Tuple[SinkPlan, ...] = (), clock_id: str = "",
                    as_of: Optional[int] = None, bounded: bool = False, ticked: bool = False) -> EntityStateFn:
    """The state step of ``node``: with a window timer when a sink reads a time window (on a
    bounded input, ``ticked``: told the input ended by the routing step in front of it instead)."""
    if any(item.windows for sink in sinks for item in sink.inputs):
        return WindowedEntityStateFn(node, sinks, clock_id, as_of, bounded, ticked)
    return EntityStateFn(node, sinks, clock_id, as_of)


def _next_version(state: EntityState, clock: int) -> Version:
    """The version of a firing of ``state`` (see :class:`transforms.firing.Version`) at
    ``clock``: that clock, then how many times the entity has fired, so later firings always
    rank higher."""
    state.sequence += 1
    return Version(clock, state.sequence)


def _load(stored: Any) -> Any:
    packed = stored.read()
    return pickle.loads(packed) if packed else None


def _store(stored: Any, value: Any) -> None:
    stored.write(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _time(held: HeldRow) -> int:
    return held[TIME]


def row_time(held: HeldRow, attr: Optional[str]) -> int:
    """A held row's time for pruning: its FeatureTime, else its newest update's (a removed
    row's: when it was removed)."""
    found = held[ROW].get(attr) if attr and held[ROW] is not None else None
    return found if found is not None else held[TIME]


def _in_order(messages: List[Any]) -> List[Any]:
    """Timed messages in event-time order; with an untimed one among them, arrival order,
    which is the order untimed updates apply in (timed ones merge the same in any order)."""
    if len(messages) < 2:
        return messages
    for message in messages:
        if message.time is None:
            return messages
    return sorted(messages, key=_message_time)


def _message_time(message: Any) -> int:
    return message.time


def merge_row(rows: Dict[Any, HeldRow], child_key: Any, time: Optional[int],
              values: Optional[Dict[str, Any]]) -> None:
    """Merges an update of a related row into ``rows`` (child key → held row) attribute by
    attribute, as an entity's own features merge: a value replaces the held one unless that is
    newer, so an older update still fills in what newer partial ones left out. ``values=None``
    removes the row unless it was updated later, and keeps the time of its removal (see
    ``HeldRow``), before which no version brings it back. An untimed update applies over what
    is held (arrival order) and keeps its time."""
    held = rows.get(child_key)
    if values is None:
        if time is None or time == NEVER:       # no time to order its versions by: arrival order
            rows.pop(child_key, None)
        elif held is None or time >= held[TIME]:
            rows[child_key] = (time, None, None)
        return
    current = held[ROW] if held is not None else None
    if current is None:
        if held is not None and time is not None and time < held[TIME]:
            return          # removed after this version (at the same time: arrival order, as ties go)
        rows[child_key] = (NEVER if time is None else time, dict(values), None)
        return
    assert held is not None
    if time is None:
        # Each attribute keeps its time, as an entity's own do; one the row did not have has none
        # (``NEVER``): any timed update replaces it.
        older = held[OLDER]
        new = [attr for attr in values if attr not in current]
        if new:
            older = {**(older or {}), **dict.fromkeys(new, NEVER)}
        rows[child_key] = (held[TIME], {**current, **values}, older)
        return
    older = held[OLDER]
    if time >= held[TIME]:
        # Attributes this update leaves out keep their own (older) times.
        kept = {attr: (older.get(attr, held[TIME]) if older else held[TIME])
                for attr in current if attr not in values}
        rows[child_key] = (time, {**current, **values}, {a: t for a, t in kept.items() if t < time} or None)
        return
    row, older = dict(current), dict(older or ())
    for attr, value in values.items():
        if attr not in row or older.get(attr, held[TIME]) <= time:
            row[attr] = value
            older[attr] = time
    rows[child_key] = (held[TIME], row, older)


class LookupFn(beam.DoFn):
    """A parent-keyed join: keyed by join value, it brings child rows and their parents together.

    Input: ``(join_value, [Rel or Member messages])``; output: ``(parent_key, Rel)`` with the
    child's whole row, for each parent holding that value. A parent that moved on still
    receives rows for its old value; its own state ignores them.
    """

    STATE = ReadModifyWriteStateSpec("lookup", coders.BytesCoder())

    def __init__(self, relation: str) -> None:
        self.relation = relation

    def process(self, element: Tuple[Any, List[Any]],
                stored=beam.DoFn.StateParam(STATE)) -> Iterable[Tuple[Any, Rel]]:
        value, messages = element
        # Parents in the order they joined (a dict, not a set: a set of strings iterates in an order
        # that changes with each process's hash seed, and with it the calls downstream).
        loaded = _load(stored)
        rows: Dict[Any, HeldRow] = loaded[0] if loaded else {}
        members: Dict[Any, None] = loaded[1] if loaded else {}
        for message in messages:
            if type(message) is Member:
                parent = message.parent
                if parent not in members:
                    members[parent] = None
                    for child_key, held in rows.items():
                        if held[ROW] is not None:
                            yield parent, Rel(self.relation, value, child_key, held[TIME], held[ROW])
                continue
            _, _, child_key, time, values = message
            merge_row(rows, child_key, time, values)
            merged = rows.get(child_key)
            forwarded = Rel(self.relation, value, child_key, merged[TIME] if merged else time,
                            merged[ROW] if merged else None)
            for parent in members:
                yield parent, forwarded
        _store(stored, (rows, members))
