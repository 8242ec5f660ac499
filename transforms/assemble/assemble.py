"""``Assemble``: feature updates → each sink's complete inputs, every time one of them changes.

For one root class (``User``) and the sinks reading it::

    updates ─ Parse ─┬─ transfer ─ Key ─ State(transfer) ──────────────── (user key, row) ─┐
                     ├─ account ── Key ─ State(account) ───────────────── (user key, row) ─┤
                     │                   (parent-keyed: ─ Lookup(join value) ─ parent key) │
                     ├─ user ───── Key ───────────────────────────────────────────────────┴─ State(user) ─┬─ sink A
                     │                                                                                   └─ sink B
                     └─ dead_letters

Every node of the plan (``transforms.assemble.plan``) is one keyed stateful
stage, built leaves first; its rows flow up to its parent, and the root's
stage fires the sinks. See ``transforms.assemble.state`` for what the state
holds and when a sink fires.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from sinks.sink import Sink
from transforms.assemble.parse import BadUpdate, UpdateParser, schemas_of
from transforms.assemble.plan import ClassSchema, Edge, Node, plan_roots
from transforms.assemble.state import MEMBER, OWN, REL, EntityStateFn, LookupFn, join_value
from transforms.buffer import GroupWithinBundle
from transforms.dead_letters import DEAD_LETTERS, dead_letter

# Messages of one key grouped within a bundle before a stateful stage, at most.
MAX_GROUP = 1000


class _ParseFn(beam.DoFn):
    """Checks and coerces updates, timestamped with their event time, and sends each where
    ``routes`` say: ``(key, OWN message)`` to the stage of its own class, ``(join value, REL
    message)`` to the stage (or lookup) of each parent whose related row it is; anything
    unusable goes to dead letters with the reason.

    A keyed stage reads one output of this step, so the runner can fuse them: a ``Flatten``
    in between makes the FnApiRunner hold its whole input in memory."""

    def __init__(self, parser: UpdateParser, routes: Dict[str, List[Tuple[str, Optional[Edge]]]]) -> None:
        self.parser = parser
        self.routes = routes
        self.parsed = Metrics.counter("sinks.assemble", "updates")
        self.rejected = Metrics.counter("sinks.assemble", "dead_letters")

    def process(self, update: Any, timestamp=beam.DoFn.TimestampParam) -> Iterable[TaggedOutput]:
        try:
            parsed = self.parser.parse(update, timestamp.micros)
        except BadUpdate as error:
            self.rejected.inc()
            yield TaggedOutput(DEAD_LETTERS, dead_letter("parse", None, error, update))
            return
        self.parsed.inc()
        namespace, key, time, values = parsed.namespace, parsed.key, parsed.time, parsed.values
        at = Timestamp(micros=time)
        for tag, edge in self.routes.get(namespace, ()):
            if edge is None:
                yield TaggedOutput(tag, TimestampedValue((key, (OWN, time, values)), at))
                continue
            value = join_value(values, edge.child_attrs)
            if value is None:
                self.rejected.inc()
                needed = ", ".join(f"'{namespace}.{a}'" for a in edge.child_attrs)
                unplaced = BadUpdate(f"an update of a related row must carry its join key {needed} "
                                     f"(relation '{edge.relation}')")
                yield TaggedOutput(DEAD_LETTERS, dead_letter("parse", None, unplaced, update))
                continue
            yield TaggedOutput(tag, TimestampedValue(
                (value, (REL, edge.relation, value, key, time, values)), at))


def _memberships(element: Tuple[Any, tuple], edge: Edge) -> Iterable[Tuple[Any, tuple]]:
    key, message = element
    if message[0] != OWN:
        return
    value = join_value(message[2], edge.parent_attrs)
    if value is not None:
        yield value, (MEMBER, key)


class Assemble(beam.PTransform):
    """Turn a stream of feature updates into each sink's inputs.

    Input: feature updates, dicts of fully qualified feature names to values, all
    of one namespace (``{"user.uuid": "u1", "user.full_name": "Ann"}``).

    Returns a dict: for each sink's name, ``(root_key, update)`` pairs ready for
    :class:`transforms.CallSink` (parameter → value for a per-row sink, column →
    value for a batch sink; has-many inputs as
    :class:`transforms.assemble.related.RelatedRows`), timestamped with the entity's
    clock; and ``dead_letters``, one record per update that could not be used.

    Args:
      sinks: the sinks to assemble inputs for; sinks sharing a root class share its state.
      allowed_lateness: how far behind an entity's clock an update may arrive and still
        count in a time window; has-many rows older than the longest window plus this are pruned.
    """

    def __init__(self, sinks: Sequence[Sink], allowed_lateness: timedelta = timedelta(0)) -> None:
        super().__init__()
        if not sinks:
            raise ValueError("Assemble needs at least one sink")
        self.plans = plan_roots([s.spec for s in sinks], allowed_lateness)
        self.schemas = schemas_of(s.spec.root for s in sinks)

    def expand(self, updates: beam.PCollection) -> Dict[str, beam.PCollection]:
        routes: Dict[str, List[Tuple[str, Optional[Edge]]]] = {}
        for plan in self.plans:
            for node in plan.root.post_order():
                if node.edge is None or node.children:      # a node with a stage of its own
                    routes.setdefault(node.schema.namespace, []).append((_input_tag(node), None))
                for child in node.children.values():
                    if not child.children:                   # a leaf: routed by its join key
                        assert child.edge is not None
                        tag = _input_tag(node) if child.edge.child_keyed else _input_tag(child)
                        routes.setdefault(child.schema.namespace, []).append((tag, child.edge))
        tags = sorted({tag for found in routes.values() for tag, _ in found})
        parsed = updates | "Parse" >> beam.ParDo(
            _ParseFn(UpdateParser(self.schemas), routes)).with_outputs(DEAD_LETTERS, *tags)
        outputs: Dict[str, beam.PCollection] = {}
        for plan in self.plans:
            fired = self._state(plan.root, parsed, plan.sinks)
            outputs.update((sink.name, fired[sink.name]) for sink in plan.sinks)
        outputs[DEAD_LETTERS] = parsed[DEAD_LETTERS]
        return outputs

    def _state(self, node: Node, parsed: Any, sinks: Tuple = ()) -> Any:
        """The stateful stage of ``node``, fed its own updates and its children's rows."""
        own = parsed[_input_tag(node)]
        inputs = [own] + [self._related(child, own, parsed) for child in node.children.values()
                          if child.children or not (child.edge and child.edge.child_keyed)]
        step = EntityStateFn(node, sinks)
        if sinks:
            step = beam.ParDo(step).with_outputs(*[s.name for s in sinks])
        key_type = _key_type(node.schema, (node.schema.primary,))
        return self._keyed(f"State[{node.label}]", tuple(inputs), step, key_type)

    def _related(self, child: Node, parent_updates: beam.PCollection, parsed: Any) -> beam.PCollection:
        """REL messages for the parent of ``child`` (one with a stage of its own, or a lookup),
        keyed by the parent's key. The rows of a child-keyed leaf class come with the parent's
        own input (``_ParseFn`` routes them there).
        """
        edge = child.edge
        assert edge is not None   # a child node
        rows = self._state(child, parsed) if child.children else parsed[_input_tag(child)]
        if edge.child_keyed:
            return rows
        members = parent_updates | f"Members[{child.label}]" >> beam.FlatMap(_memberships, edge)
        join_type = _key_type(child.schema, edge.child_attrs)
        return self._keyed(f"Lookup[{child.label}]", (rows, members),
                           LookupFn(edge.relation, child.schema.time), join_type)

    @staticmethod
    def _keyed(label: str, inputs: Tuple[beam.PCollection, ...], step: Any, key_type: Any) -> Any:
        merged = inputs[0] if len(inputs) == 1 else inputs | f"{label}/Flatten" >> beam.Flatten()
        grouped = merged | f"{label}/Group" >> beam.ParDo(GroupWithinBundle(MAX_GROUP)).with_output_types(
            Tuple[key_type, List[Any]])
        return grouped | label >> (step if isinstance(step, beam.PTransform) else beam.ParDo(step))


def _input_tag(node: Node) -> str:
    """The parse output feeding ``node``'s stage (or, for a parent-keyed leaf, its lookup)."""
    return f"in:{node.label}"


def _key_type(schema: ClassSchema, attrs: Tuple[str, ...]) -> Any:
    """The type hint of a key made of ``attrs``, so Beam picks a deterministic key coder."""
    types = dict((attr, kind) for attr, kind, _ in schema.types)
    hints = [types[a] if types[a] in (str, int, bytes) else Any for a in attrs]
    return hints[0] if len(hints) == 1 else Tuple[tuple(hints)]
