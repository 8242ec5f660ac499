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
bucketed, the parent's keyed ``(OWN, bucket)``, the rows' ``(ROWS, bucket)``: a keyed step holds
a state handle for each key it meets until its bundle ends, which the FnApiRunner makes the whole
input (~1 KB per key: keyed by the parent itself, a million users took 1.3 GB more). Rows are kept per bucket of row
keys, not per row key: visiting a bucket prunes its rows that have left every window (per row
key, a row no update reaches again would be held for good, and a batch runner never fires the
timers that could drop it).
"""
from __future__ import annotations

import pickle
import zlib
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils import windowed_value

from transforms.assemble.messages import NEVER, OWN, ROW, TIME, Rel
from transforms.assemble.plan import Node
from transforms.assemble.state import GLOBAL_WINDOW, Child, join_value, merge_row, row_time
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


def bucket_of(relation: str, child_key: Any, key_type: Any) -> Any:
    """The bucket of a related row (``relation`` "" for the parent's own updates), the same in
    every process (``hash()`` of a str is not), as a value of the parent's key type, which its
    key coder then encodes deterministically."""
    bucket = zlib.crc32(f"{relation}\x00{child_key!r}".encode("utf-8", "surrogatepass")) % BUCKETS
    if key_type is str:
        return str(bucket)
    if key_type is bytes:
        return str(bucket).encode()
    return bucket


# What a bucket holds per row, keyed ``(relation, row key)``: when the row leaves every window
# on the bucket's clock (None: never), the parent it was last sent to (None: none yet), and the
# row as merged so far, pickled. Pickled apart, so a visit unpickles the rows its updates touch,
# not every row of the bucket as dicts (measured: that made the routing step cost twice as much).
Routed = Tuple[Optional[int], Any, bytes]


class RouteRowsFn(beam.DoFn):
    """Input: ``((OWN, bucket), [Own])`` and ``((ROWS, bucket), [Rel])`` groups; output:
    ``(parent key, [messages])`` groups for the parent's stage, regrouped per parent within the
    bundle (a parent's own updates in their order), each stamped with its newest message's time."""

    STATE = ReadModifyWriteStateSpec("rows", coders.BytesCoder())

    def __init__(self, children: Iterable[Node], primary: str) -> None:
        self.primary = primary     # the parent's key feature, which its own updates carry
        self.relations = {child.edge.relation: Child(child) for child in children if child.edge}
        self.pruned = Metrics.counter("sinks.assemble", "routed_rows_pruned")
        self.moved = Metrics.counter("sinks.assemble", "related_rows_moved")

    def start_bundle(self) -> None:
        self._groups = BundleGroups(MAX_GROUP, HELD)
        self._due: List[Group] = []     # groups that filled up, for the next output

    def process(self, element: Tuple[Tuple[int, Any], List[Any]],
                stored=beam.DoFn.StateParam(STATE)) -> Iterable[Any]:
        (kind, _), messages = element
        if kind == OWN:
            # Grouped with the rows for the same parent: one visit of its state for both.
            for message in messages:
                self._send(message.values[self.primary], message, NEVER if message.time is None else message.time)
            return self._output()
        packed = stored.read()
        clock, held = pickle.loads(packed) if packed else (NEVER, {})
        for message in messages:
            if message.time is not None and message.time > clock:
                clock = message.time
            self._route(held, message)
        self._prune(held, clock)
        stored.write(pickle.dumps((clock, held), protocol=pickle.HIGHEST_PROTOCOL))
        return self._output()

    def _output(self) -> List[Any]:
        if self._groups.full:
            self._due.extend(self._groups.drain())
        due, self._due = self._due, []
        return [_stamped(group) for group in due]

    def _route(self, held: Dict[Tuple[str, Any], Routed], message: Rel) -> None:
        relation, _, child_key, time, values = message
        entry = held.get((relation, child_key))
        sent_to, rows = (entry[1], {child_key: pickle.loads(entry[2])}) if entry else (None, {})
        merge_row(rows, child_key, time, values)
        row = rows[child_key]
        about = self.relations[relation]
        parent = join_value(row[ROW], about.edge.child_attrs)
        if sent_to is not None and sent_to != parent:
            self.moved.inc()
            self._send(sent_to, Rel(relation, sent_to, child_key, row[TIME], None), row[TIME])
        if parent is not None:
            self._send(parent, Rel(relation, parent, child_key, row[TIME], row[ROW]), row[TIME])
        expires = None if about.horizon is None else row_time(row, about.time_attr) + about.horizon
        held[(relation, child_key)] = (expires, parent, pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL))

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
        self._due = []


def _stamped(group: Group) -> Any:
    parent, messages, micros_ = group
    return windowed_value.create((parent, messages), micros_, GLOBAL_WINDOW)
