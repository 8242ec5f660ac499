"""``RouteRowsFn``: sends each related row to the parent its latest join key names, and tells
the parent it left.

A class without relations of its own (transfers, accounts) joined through a key its rows
hold (``Transfer.user_id``) has no stage of its own; its rows would go straight to the parent
their update names, and a row that moves to another parent would stay with the old one too.
This step sits in front of the parent's stage and keeps, per row, the row merged from every
update so far and the parent it was last sent to. When an update (or an older one arriving
late) changes the row's join key, the old parent receives the row's removal and the new one
the whole row; otherwise the parent receives the merged row.

Its input is one output of the parser, so the runner fuses parser, this step and the parent's
stage (a ``Flatten`` of two inputs there makes the FnApiRunner hold its whole input): the
parent's own updates pass through, regrouped with the rows sent to the same parent. Both come
bucketed (``routing_key``), the parent's own by the parent's key, the rows by theirs: a keyed
step holds a state handle for each key it meets until its bundle ends, which the FnApiRunner
makes the whole input (~1 KB per key: keyed by the parent itself, a million users took 1.3 GB
more). Rows are kept per bucket of row keys, not per row key: visiting a bucket prunes its rows
that have left every window (per row key, a row no update reaches again would be held for good,
and a batch runner never fires the timers that could drop it).
"""
from __future__ import annotations

import pickle
import zlib
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils import windowed_value

from transforms.assemble import clock
from transforms.assemble.messages import NEVER, OWN, ROW, TIME, Rel, Tick
from transforms.assemble.parse import moment
from transforms.assemble.plan import Node
from transforms.assemble.state import END_OF_INPUT, GLOBAL_WINDOW, Child, join_value, merge_row, row_time
from transforms.dead_letters import DEAD_LETTERS, dead_letter
from transforms.group_within_bundle import MAX_GROUP, MAX_HELD, BundleGroups, Group

# Buckets of row keys. Fewer buckets make fewer, larger visits: the rows a visit unpickles add up
# to the same over a bundle, and each visit costs a state read and write. Under a profiler, on the
# bank example (200,000 updates), the assemble stage took 1.52x its time without routing at 4,096
# buckets and 1.39x at 512 or 128; 1,024 keeps a visit of a bucket in a small streaming bundle
# to ~200 rows for 200,000 live ones.
BUCKETS = 1024


# Messages held for the parents' stage before every group is sent. The parser's groups are cut
# by row bucket, not by parent: regrouped here, each parent's state is visited once per group of
# its messages, and the more are held, the fewer visits. The bank example's whole run (170,339
# updates, 10,000 users) went from 13,800-14,000 updates/s holding 20,000 to 16,000-16,300
# holding 100,000 (RSS +16 MB); holding more was within the noise, and holds more memory.
HELD = 5 * MAX_HELD


def routing_key(kind: int, relation: str, key: Any) -> int:
    """The key a message travels to the routing step under: its kind (``OWN``, the parent's own
    update, ``relation`` ""; or ``ROWS``, a related row) and the bucket of ``key``, as one int,
    the same in every process (``hash()`` of a str is not). An int, not a ``(kind, bucket)``
    pair: the FnApiRunner could not read back a timer set under a tuple key (IndexError in
    ``_collect_written_timers``), and ``TickingRouteRowsFn`` sets one."""
    return kind * BUCKETS + zlib.crc32(f"{relation}\x00{key!r}".encode("utf-8", "surrogatepass")) % BUCKETS


# What a bucket holds per row, keyed ``(relation, row key)``: when the row leaves every window
# on the bucket's clock (None: never), the parent it was last sent to (None: none yet), and the
# row as merged so far, pickled. Pickled apart, so a visit unpickles the rows its updates touch,
# not every row of the bucket as dicts (measured: that made the routing step cost twice as much).
Routed = Tuple[Optional[int], Any, bytes]


class RouteRowsFn(beam.DoFn):
    """Input: ``(key, [Own])`` and ``(key, [Rel])`` groups, keyed by ``routing_key``; output:
    ``(parent key, [messages])`` groups for the parent's stage, regrouped per parent within the
    bundle (a parent's own updates in their order), each stamped with its newest message's time.

    A bucket's state is ``(clock, held, to_tick)``: its clock, its rows (``Routed``), and the
    parents that ``TickingRouteRowsFn`` tells at the end of the input."""

    STATE = ReadModifyWriteStateSpec("rows", coders.BytesCoder())

    def __init__(self, children: Iterable[Node], primary: str, ticked: Iterable[str] = ()) -> None:
        self.primary = primary     # the parent's key feature, which its own updates carry
        self.relations = {child.edge.relation: Child(child) for child in children if child.edge}
        # Per relation, its class's namespace and timestamp features: a dead letter holds the
        # update as it was read, to be mended and replayed (``run --replay-dead-letters``).
        self.read_as = {child.edge.relation: (child.schema.namespace, frozenset(
            attr for attr, kind, _ in child.schema.types if kind is datetime)) for child in children if child.edge}
        self.ticked = frozenset(ticked)   # relations whose rows' parents are ticked (time windows read them)
        self.pruned = Metrics.counter("sinks.assemble", "routed_rows_pruned")
        self.moved = Metrics.counter("sinks.assemble", "related_rows_moved")
        self.rejected = Metrics.counter("sinks.assemble", "dead_letters")

    def start_bundle(self) -> None:
        self._groups = BundleGroups(MAX_GROUP, HELD)
        self._due: List[Group] = []     # groups that filled up, for the next output
        self._unplaced: List[TaggedOutput] = []     # dead letters, for the next output

    def process(self, element: Tuple[int, List[Any]], stored=beam.DoFn.StateParam(STATE)) -> Iterable[Any]:
        key, messages = element
        if key // BUCKETS == OWN:
            self._pass_own(messages)
        else:
            self._visit(stored, messages)
        return self._output()

    def _pass_own(self, messages: List[Any]) -> None:
        # Grouped with the rows for the same parent: one visit of its state for both.
        for message in messages:
            self._send(message.values[self.primary], message, NEVER if message.time is None else message.time)

    def _visit(self, stored: Any, messages: List[Rel]) -> bool:
        """Routes a bucket's messages; returns whether the bucket now has parents to tick and had
        none before (see ``TickingRouteRowsFn``)."""
        packed = stored.read()
        clock, held, to_tick = pickle.loads(packed) if packed else (NEVER, {}, set())
        waiting = bool(to_tick)
        for message in messages:
            if message.time is not None and message.time > clock:
                clock = message.time
            parent = self._route(held, message, clock)
            if parent is not None and message.relation in self.ticked:
                to_tick.add(parent)
        self._prune(held, clock)
        stored.write(pickle.dumps((clock, held, to_tick), protocol=pickle.HIGHEST_PROTOCOL))
        return bool(to_tick) and not waiting

    def _output(self) -> List[Any]:
        if self._groups.full:
            self._due.extend(self._groups.drain())
        due, self._due = self._due, []
        unplaced, self._unplaced = self._unplaced, []
        return [_stamped(group) for group in due] + unplaced

    def _route(self, held: Dict[Tuple[str, Any], Routed], message: Rel, clock: int) -> Any:
        """Sends the row ``message`` updates to its parent (and its removal to the parent it
        left); returns that parent (None: none)."""
        relation, _, child_key, time, values = message
        entry = held.get((relation, child_key))
        sent_to, rows = (entry[1], {child_key: pickle.loads(entry[2])}) if entry else (None, {})
        merge_row(rows, child_key, time, values)
        row = rows[child_key]
        about = self.relations[relation]
        parent = join_value(row[ROW], about.edge.child_attrs)
        expires = None if about.horizon is None else row_time(row, about.time_attr) + about.horizon
        if (entry is None and parent is None and expires is not None and expires < clock and values is not None
                and not all(attr in values for attr in about.edge.child_attrs)):
            # Pruned on arrival, with no parent: the update lacks its join key, and the row it
            # names is one this step let go (older than the horizon on the bucket's clock, which
            # other rows move on) while its parent, on its own clock, may still hold it.
            self._unplaced.append(self._dead_letter(relation, child_key, values, clock))
            return None
        if sent_to is not None and sent_to != parent:
            self.moved.inc()
            self._send(sent_to, Rel(relation, sent_to, child_key, row[TIME], None), row[TIME])
        if parent is not None:
            self._send(parent, Rel(relation, parent, child_key, row[TIME], row[ROW]), row[TIME])
        held[(relation, child_key)] = (expires, parent, pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL))
        return parent

    def _dead_letter(self, relation: str, child_key: Any, values: Dict[str, Any], clock: int) -> TaggedOutput:
        self.rejected.inc()
        needed = ", ".join(repr(attr) for attr in self.relations[relation].edge.child_attrs)
        error = ValueError(f"an update of a row of '{relation}' without its join key ({needed}) came "
                           f"after the row left this step's window horizon; nothing can place it")
        namespace, moments = self.read_as[relation]
        update = {f"{namespace}.{attr}": moment(value) if attr in moments and value is not None else value
                  for attr, value in values.items()}
        record = dead_letter("route", None, error, update, key=child_key)
        return TaggedOutput(DEAD_LETTERS, windowed_value.create(record, clock, GLOBAL_WINDOW))

    def _send(self, parent: Any, message: Any, time: int) -> None:
        full = self._groups.add(parent, message, time)
        if full is not None:
            self._due.append(full)

    def _prune(self, held: Dict[Tuple[str, Any], Routed], clock: int) -> None:
        """Drops rows older than their relation's window horizon on the bucket's clock: the parent
        prunes them too, and an update moving one that late is one no window reads."""
        old = [name for name, (expires, _, _) in held.items() if expires is not None and expires < clock]
        for name in old:
            del held[name]
        if old:
            self.pruned.inc(len(old))

    def finish_bundle(self) -> Iterable[Any]:
        yield from map(_stamped, self._due)
        yield from map(_stamped, self._groups.drain())
        yield from self._unplaced
        self._due, self._unplaced = [], []


class TickingRouteRowsFn(RouteRowsFn):
    """``RouteRowsFn`` for a parent whose sinks read time windows over routed rows, on a bounded
    input: when the input ends, it sends each parent that was sent rows of those relations a
    ``Tick``, and the parent evaluates its windows as of the input's final clock.

    The parents' stage would otherwise keep an event-time timer per entity, due at the end of the
    input. A timer per bucket of rows instead survives reading the input in several bundles: the
    FnApiRunner delivers the timers a bundle set before the next bundle's input, so an end-of-input
    timer fires while the rest of a file is still to be read (measured on the bank job at 10,000
    users read in bundles of 100,000 records: 3,350 of the 10,000 aggregates were evaluated as of
    the first bundle's clock, and never again). A bucket's timer that fires while a reader of the
    input has work deferred (``clock.input_read``) is set again, which costs one timer per bucket
    and bundle, not one per entity.
    """

    # Named apart from the pacing buffer's "end" even before ``with_timers_named`` adds the step's
    # name (see ``transforms.timer_names``): a sink may be named like a class.
    END = TimerSpec("routed_rows_end", TimeDomain.WATERMARK)

    def __init__(self, children: Iterable[Node], primary: str, ticked: Iterable[str],
                 input_id: Optional[str]) -> None:
        super().__init__(children, primary, ticked)
        self.input_id = input_id

    def process(self, element: Tuple[int, List[Any]],  # type: ignore[override]
                stored=beam.DoFn.StateParam(RouteRowsFn.STATE), end=beam.DoFn.TimerParam(END)) -> Iterable[Any]:
        key, messages = element
        if key // BUCKETS == OWN:
            self._pass_own(messages)
        elif self._visit(stored, messages):
            end.set(END_OF_INPUT)
        return self._output()

    @on_timer(END)
    def input_ended(self, stored=beam.DoFn.StateParam(RouteRowsFn.STATE),
                    end=beam.DoFn.TimerParam(END)) -> Iterable[Any]:
        if not clock.input_read(self.input_id):
            end.set(END_OF_INPUT)     # early: a later bundle still reads the input
            return self._output()
        packed = stored.read()
        if packed:
            bucket_clock, held, to_tick = pickle.loads(packed)
            for parent in to_tick:
                self._send(parent, Tick(), NEVER)
            stored.write(pickle.dumps((bucket_clock, held, set()), protocol=pickle.HIGHEST_PROTOCOL))
        return self._output()


def _stamped(group: Group) -> Any:
    parent, messages, micros_ = group
    return windowed_value.create((parent, messages), micros_, GLOBAL_WINDOW)
