"""``Assemble``: feature updates → each sink's complete inputs, every time one of them changes.

For one root class (``User``) and the sinks reading it::

    updates ─ Parse ─┬─ in:user ─ Route(user) ─────────────────────────────┬─ State(user) ─┬─ sink A
                     │    user updates, and rows of leaf classes holding   │               └─ sink B
                     │    the user's key (transfers, accounts), each sent  │
                     │    on to the user its latest key names              │
                     ├─ in:card ─ Lookup(card id) ── (user key, row) ──────┤  a leaf whose key the user holds
                     ├─ in:team ─ State(team) ────── (user key, row) ──────┘  a class with relations of its own
                     └─ dead_letters

Parse checks each update, routes it by its class and join key, and groups what
it routes per key within the bundle, so each stateful step is paid per group.
Every stage reads exactly one output of Parse, and the bank example is Parse,
Route(user) and State(user), fused.

The root and every node of the plan (``transforms.assemble.plan``) with
relations of its own is one keyed stateful stage, built from the bottom up; its
rows flow up to its parent, and the root's stage fires the sinks. See
``transforms.assemble.state`` for what the state holds and when a sink fires.
"""
from __future__ import annotations

import itertools
import time as wall
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.typehints.native_type_compatibility import convert_to_beam_type
from apache_beam.utils import windowed_value

from sinks.sink import Sink
from transforms import collector
from transforms.assemble import clock
from transforms.assemble.messages import NEVER, OWN, ROWS, Member, Own, Rel
from transforms.assemble.parse import BadUpdate, UpdateParser, schemas_of, to_micros
from transforms.assemble.plan import ClassSchema, Edge, Node, plan_roots
from transforms.assemble.route import RouteRowsFn, TickingRouteRowsFn, routing_key
from transforms.assemble.state import GLOBAL_WINDOW, LookupFn, entity_state_fn, join_value
from transforms.dead_letters import DEAD_LETTERS, dead_letter
from transforms.group_within_bundle import MAX_GROUP, MAX_HELD, BundleGroups, Group, GroupWithinBundle
from transforms.timer_names import with_timers_named


class _Route(NamedTuple):
    """Where the parser sends the updates of a class: to stage input ``tag``, as the entity's
    own (``edge`` None) or as related rows through ``edge``; ``routed`` when that stage reads
    them through ``RouteRowsFn``, which takes them keyed by ``routing_key``."""

    tag: str
    edge: Optional[Edge]
    routed: bool


class _ParseFn(beam.DoFn):
    """Checks and coerces updates and sends each where ``routes`` say, grouped per key within
    the bundle: ``(key, [Own])`` to the stage of its own class, ``(join value, [Rel])`` to the
    lookup of each parent whose related row it is; to a stage with a routing step, ``(key,
    [Own])`` and ``(key, [Rel])`` keyed by ``routing_key`` (see ``transforms.assemble.route``). Each group
    is stamped with its newest update's event time. Anything unusable goes to dead letters with the reason, and
    then touches no state: every update read counts once, as parsed or as a dead letter.

    Parsing and grouping are one step because invoking a DoFn that reads its element's
    timestamp costs about as much as parsing. A keyed stage reads one output of this step, so
    the runner can fuse them: a ``Flatten`` in between makes the FnApiRunner hold its whole
    input in memory."""

    def __init__(self, parser: UpdateParser, routes: Dict[str, List[_Route]],
                 clock_id: str, max_clock_skew: Optional[timedelta]) -> None:
        self.parser = parser
        self.routes = routes
        self.clock_id = clock_id
        self.max_clock_skew = max_clock_skew
        self.parsed = Metrics.counter("sinks.assemble", "updates")
        self.rejected = Metrics.counter("sinks.assemble", "dead_letters")
        # Updates breaking a non-strict feature's limits (``feature(max=...)``): accepted, counted.
        self.violations = Metrics.counter("sinks.assemble", "constraint_violations")

    def setup(self) -> None:
        collector.relax()

    def teardown(self) -> None:
        clock.withdraw(self.clock_id)

    def start_bundle(self) -> None:
        # A held message is two values, its header and its features (see ``process``). Up to
        # 100,000 messages are held: each drain visits every bucket of rows the groups reach in
        # the routing step (``transforms.assemble.route``), which reads and writes the bucket's
        # state. The bank job at 10,000 users went from 18,216-19,196 updates/s holding 20,000 to
        # 19,598-20,110 (peak RSS +9 MB).
        self._groups = BundleGroups(2 * MAX_GROUP, 10 * MAX_HELD)
        self._parsed = 0
        self._latest_seen = NEVER
        # The wall clock once per bundle: a bundle lasts well under the skew allowed (a day by default).
        skew = self.max_clock_skew
        self._latest = None if skew is None else int(wall.time() * 1_000_000) + skew // timedelta(microseconds=1)

    def process(self, update: Any) -> Iterable[TaggedOutput]:
        # A list, not a generator: most updates output nothing until their group is due; a
        # drain is emitted lazily, group by group (see ``BundleGroups.drain``).
        try:
            namespace, key, time, values = self.parser.parse(update, self._latest)
        except BadUpdate as error:
            self.rejected.inc()
            self.parser.violations = 0
            return [TaggedOutput(DEAD_LETTERS, dead_letter("parse", None, error, update))]
        if self.parser.violations:
            self.violations.inc(self.parser.violations)
            self.parser.violations = 0
        self._parsed += 1
        if time is None:
            stamp = NEVER
        else:
            stamp = time
            if time > self._latest_seen:
                self._latest_seen = time
                clock.advance(self.clock_id, time)
        outputs: List[TaggedOutput] = []
        header: tuple
        for tag, edge, routed in self.routes.get(namespace, ()):
            if edge is None:
                # Through a routing step, bucketed too: a keyed step holds a state handle per key
                # it meets until its bundle ends (~1 KB each; a million users took 1.3 GB more).
                to, header = (routing_key(OWN, "", key) if routed else key), (Own, time)
            elif routed:
                # With its join key or without (a partial update, or ``null``): the routing step
                # places the row by the join key merged from all its updates.
                to = routing_key(ROWS, edge.relation, key)
                header = (Rel, edge.relation, join_value(values, edge.child_attrs), key, time)
            else:               # a lookup keyed by the row's own key, which every update carries
                to, header = key, (Rel, edge.relation, key, key, time)
            # Held as two values until its group is due, the message's header and its features,
            # not as one tuple: the collector never untracks a tuple holding a dict, so every
            # held message would reach its old generation and add to the full collections.
            self._groups.add((tag, to), header, stamp)
            full = self._groups.add((tag, to), values, stamp)
            if full is not None:
                outputs.append(_tagged_group(full))
        if self._groups.full:
            return itertools.chain(outputs, map(_tagged_group, self._groups.drain()))
        return outputs

    def finish_bundle(self) -> Iterable[TaggedOutput]:
        self.parsed.inc(self._parsed)
        if self._latest_seen != NEVER:
            clock.publish(self.clock_id)
        yield from map(_tagged_group, self._groups.drain())


def _tagged_group(group: Group) -> TaggedOutput:
    """A group of held headers and features as ``(key, [messages])``, for its stage."""
    (tag, key), held, micros = group
    parts = iter(held)
    # tuple.__new__ builds the NamedTuple in C; its own __new__ is Python, measured in the profile.
    messages = [tuple.__new__(header[0], (*header[1:], values)) for header, values in zip(parts, parts)]
    return TaggedOutput(tag, windowed_value.create((key, messages), micros, GLOBAL_WINDOW))


def _memberships(group: Tuple[Any, List[Any]], edge: Edge) -> Iterable[Tuple[Any, Member]]:
    key, messages = group
    for message in messages:
        if type(message) is Own:
            value = join_value(message.values, edge.parent_attrs)
            if value is not None:
                yield value, Member(key)


class Assemble(beam.PTransform):
    """Turn a stream of feature updates into each sink's inputs.

    Input: feature updates, dicts of fully qualified feature names to values, all
    of one namespace (``{"user.uuid": "u1", "user.full_name": "Ann"}``).

    Returns a dict: for each sink's name, ``(root_key, update)`` pairs ready for
    :class:`transforms.CallSink` (parameter → value for a per-row sink, column →
    value for a batch sink; has-many inputs as
    :class:`transforms.assemble.related.RelatedRows`), timestamped with the entity's
    clock; and ``dead_letters``, one record per update that could not be used. An upsert
    sink called per row gets one pair per visit of an entity, not one per update (see
    ``EntityStateFn._fire``).

    Time windows are evaluated as of the stream's clock (see ``transforms.assemble.state``):
    an entity's windowed sinks fire again when the watermark passes the instant one of its
    rows enters or leaves a window, but never past the data's clock.

    Args:
      sinks: the sinks to assemble inputs for; sinks sharing a root class share its state.
      allowed_lateness: how far behind an entity's clock an update may arrive and still
        count in a time window; has-many rows older than the longest window plus this are pruned.
      as_of: the instant a bounded run ends at: window timers fire up to it, not past it
        (default: the greatest valid event time in the input).
      max_clock_skew: an update whose FeatureTime is further than this after the wall clock
        is dead-lettered (None: no limit).
      input_id: names a bounded input that a reader of this process may read in several
        bundles, deferring the rest of a file (``pipelines.sources.ReadUpdates``); then the end
        of the input is when nothing of it waits (``transforms.assemble.clock.input_read``).
        Such an input needs :func:`reads_in_bundles` to hold for ``sinks``.
    """

    def __init__(self, sinks: Sequence[Sink], allowed_lateness: timedelta = timedelta(0),
                 as_of: Optional[datetime] = None, max_clock_skew: Optional[timedelta] = timedelta(days=1),
                 input_id: Optional[str] = None) -> None:
        super().__init__()
        if not sinks:
            raise ValueError("Assemble needs at least one sink")
        if as_of is not None and as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=timezone.utc)
        if max_clock_skew is not None and max_clock_skew < timedelta(0):
            raise ValueError(f"max_clock_skew must not be negative, not {max_clock_skew}")
        self.plans = plan_roots([s.spec for s in sinks], allowed_lateness)
        self.schemas = schemas_of(s.spec.root for s in sinks)
        self.as_of = None if as_of is None else to_micros(as_of)
        self.max_clock_skew = max_clock_skew
        if input_id is not None and not reads_in_bundles(sinks):
            raise ValueError("a time window over rows not routed to their entity ends by an event-time timer per "
                             "entity, which an input read in several bundles fires early: read it in one")
        self.input_id = input_id
        # Names this transform's data clock (``transforms.assemble.clock``) in the workers.
        self.clock_id = uuid.uuid4().hex

    def expand(self, updates: beam.PCollection) -> Dict[str, beam.PCollection]:
        if not isinstance(updates.windowing.windowfn, GlobalWindows):
            raise ValueError(f"Assemble keeps each entity's state across all time, so its input must be "
                             f"globally windowed, not {updates.windowing.windowfn!r}; window what the sinks receive")
        routes: Dict[str, List[_Route]] = {}
        for plan in self.plans:
            for node in plan.root.post_order():
                routed = bool(_routed_children(node))
                if node.has_stage:
                    routes.setdefault(node.schema.namespace, []).append(_Route(_input_tag(node), None, routed))
                for child in node.children.values():
                    if not child.has_stage:                  # routed by its join key
                        assert child.edge is not None
                        route = (_Route(_input_tag(node), child.edge, True) if child.edge.child_keyed
                                 else _Route(_input_tag(child), child.edge, False))
                        routes.setdefault(child.schema.namespace, []).append(route)
        tags = sorted({route.tag for found in routes.values() for route in found})
        parse = _ParseFn(UpdateParser(self.schemas), routes, self.clock_id, self.max_clock_skew)
        parsed = updates | "Parse" >> beam.ParDo(parse).with_outputs(DEAD_LETTERS, *tags)
        outputs: Dict[str, beam.PCollection] = {}
        self._unplaced: List[beam.PCollection] = []    # the routing steps' dead letters
        for plan in self.plans:
            fired = self._state(plan.root, parsed, plan.sinks)
            outputs.update((sink.name, fired[sink.name]) for sink in plan.sinks)
        unplaced = self._unplaced
        outputs[DEAD_LETTERS] = ((parsed[DEAD_LETTERS], *unplaced) | "DeadLetters" >> beam.Flatten()
                                 if unplaced else parsed[DEAD_LETTERS])
        return outputs

    def _state(self, node: Node, parsed: Any, sinks: Tuple = ()) -> Any:
        """The stateful stage of ``node``, fed its own updates and its children's rows."""
        key_type = _key_type(node.schema, (node.schema.primary,))
        routed = _routed_children(node)
        bounded = parsed[DEAD_LETTERS].is_bounded
        ticked = _ticked_relations(node, sinks) if bounded else None
        if routed:
            route = (with_timers_named(TickingRouteRowsFn(routed, node.schema.primary, ticked, self.input_id),
                                       node.label) if ticked else RouteRowsFn(routed, node.schema.primary))
            routed_rows = (_grouped_input(parsed, node, int)
                           | f"Route[{node.label}]" >> beam.ParDo(route).with_output_types(Tuple[key_type, List[Any]])
                           .with_outputs(DEAD_LETTERS, main="rows"))
            own = routed_rows["rows"]
            self._unplaced.append(routed_rows[DEAD_LETTERS])
        else:
            own = _grouped_input(parsed, node, key_type)
        related = [self._related(child, own, parsed) for child in node.children.values()
                   if child.has_stage or not (child.edge and child.edge.child_keyed)]
        step = with_timers_named(entity_state_fn(node, sinks, self.clock_id, self.as_of, bounded, ticked=bool(ticked)),
                                 node.label)
        if sinks:
            step = beam.ParDo(step).with_outputs(*[s.name for s in sinks])
        return self._keyed(f"State[{node.label}]", [own], related, step, key_type)

    def _related(self, child: Node, parent_updates: beam.PCollection, parsed: Any) -> beam.PCollection:
        """REL messages for the parent of ``child`` (one with a stage of its own, or a lookup),
        keyed by the parent's key. The rows of a child-keyed leaf class come with the parent's
        own input (``_ParseFn`` routes them there).
        """
        edge = child.edge
        assert edge is not None   # a child node
        join_type = _key_type(child.schema, edge.child_attrs)
        if child.has_stage:
            rows = self._state(child, parsed)
            if edge.child_keyed:
                return rows
            groups, singles = [], [rows]
        else:                      # a parent-keyed leaf: its rows come grouped from the parser
            groups, singles = [_grouped_input(parsed, child, join_type)], []
        members = parent_updates | f"Members[{child.label}]" >> beam.FlatMap(_memberships, edge)
        return self._keyed(f"Lookup[{child.label}]", groups, singles + [members],
                           LookupFn(edge.relation), join_type)

    @staticmethod
    def _keyed(label: str, groups: List[beam.PCollection], singles: List[beam.PCollection], step: Any,
               key_type: Any) -> Any:
        """``step`` (a stateful DoFn) over ``(key, [messages])`` groups: ``groups`` already are,
        ``singles`` are ``(key, message)`` pairs, grouped here within each bundle."""
        if singles:
            merged = singles[0] if len(singles) == 1 else singles | f"{label}/FlattenRows" >> beam.Flatten()
            groups = groups + [merged | f"{label}/Group" >> beam.ParDo(
                GroupWithinBundle(MAX_GROUP)).with_output_types(Tuple[key_type, List[Any]])]
        grouped = groups[0] if len(groups) == 1 else groups | f"{label}/Flatten" >> beam.Flatten()
        return grouped | label >> (step if isinstance(step, beam.PTransform) else beam.ParDo(step))


def _grouped_input(parsed: Any, node: Node, key_type: Any) -> beam.PCollection:
    """The parser's ``(key, [messages])`` groups for ``node``, typed so that Beam picks a
    deterministic coder for the state's key (a tagged output's type is otherwise ``Any``)."""
    groups = parsed[_input_tag(node)]
    groups.element_type = convert_to_beam_type(Tuple[key_type, List[Any]])
    return groups


def reads_in_bundles(sinks: Sequence[Sink]) -> bool:
    """Whether ``Assemble`` over ``sinks`` stays right when a bounded input reaches it in several
    bundles of one stage: no sink reads a time window, or every window reads rows routed to its
    entity (whose routing step then says when the input ended, see ``TickingRouteRowsFn``)."""
    for plan in plan_roots([s.spec for s in sinks], timedelta(0)):
        if any(item.windows for sink in plan.sinks for item in sink.inputs) and not _ticked_relations(
                plan.root, plan.sinks):
            return False
    return True


def _ticked_relations(node: Node, sinks: Tuple) -> Optional[frozenset]:
    """The routed relations the time windows of ``sinks`` read, when every window reads one
    (None otherwise, or without windows)."""
    routed = {child.edge.relation for child in _routed_children(node) if child.edge is not None}
    windowed = [item.path for sink in sinks for item in sink.inputs if item.windows]
    if not windowed or any(len(path) != 1 or path[0] not in routed for path in windowed):
        return None
    return frozenset(path[0] for path in windowed)


def _routed_children(node: Node) -> List[Node]:
    """The leaves joined through a key their rows hold: ``RouteRowsFn`` sends their rows on."""
    return [child for child in node.children.values()
            if not child.has_stage and child.edge is not None and child.edge.child_keyed]


def _input_tag(node: Node) -> str:
    """The parse output feeding ``node``'s stage (or, for a parent-keyed leaf, its lookup)."""
    return f"in:{node.label}"


def _key_type(schema: ClassSchema, attrs: Tuple[str, ...]) -> Any:
    """The type hint of a key made of ``attrs``, so Beam picks a deterministic key coder."""
    types = dict((attr, kind) for attr, kind, _ in schema.types)
    hints = [types[a] if types[a] in (str, int, bytes) else Any for a in attrs]
    return hints[0] if len(hints) == 1 else Tuple[tuple(hints)]
