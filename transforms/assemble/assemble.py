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
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from sinks.sink import Sink
from transforms.assemble.parse import BadUpdate, UpdateParser, schemas_of
from transforms.assemble.plan import ClassSchema, Edge, Node, RootPlan, plan_roots
from transforms.assemble.state import MEMBER, OWN, EntityStateFn, LookupFn, join_value
from transforms.buffer import GroupWithinBundle
from transforms.dead_letters import DEAD_LETTERS, dead_letter

# Messages of one key grouped within a bundle before a stateful stage, at most.
MAX_GROUP = 1000


class _ParseFn(beam.DoFn):
    """Checks and coerces updates; emits ``(key, OWN message)`` on the output named after its
    namespace, timestamped with its event time, or a dead letter."""

    def __init__(self, parser: UpdateParser) -> None:
        self.parser = parser
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
        yield TaggedOutput(parsed.namespace, TimestampedValue(
            (parsed.key, (OWN, parsed.time, parsed.values)), Timestamp(micros=parsed.time)))


def _memberships(element: Tuple[Any, tuple], edge: Edge) -> Iterable[Tuple[Any, tuple]]:
    key, (_, _, values) = element
    value = join_value(values, edge.parent_attrs)
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
        self.plans = plan_roots(sinks, allowed_lateness)
        self.schemas = schemas_of(s.spec.root for s in sinks)

    def expand(self, updates: beam.PCollection) -> Dict[str, beam.PCollection]:
        parsed = updates | "Parse" >> beam.ParDo(_ParseFn(UpdateParser(self.schemas))).with_outputs(
            DEAD_LETTERS, *self.schemas)
        outputs: Dict[str, beam.PCollection] = {DEAD_LETTERS: parsed[DEAD_LETTERS]}
        for plan in self.plans:
            outputs.update(self._root(plan, parsed))
        return outputs

    def _root(self, plan: RootPlan, parsed: Any) -> Dict[str, beam.PCollection]:
        root = plan.root
        fired = self._state(root, parsed, plan.sinks)
        return {sink.name: fired[sink.name] for sink in plan.sinks}

    def _state(self, node: Node, parsed: Any, sinks: Tuple = ()) -> Any:
        """The stateful stage of ``node``, fed its own updates and its children's rows."""
        own = parsed[node.schema.namespace]
        inputs: List[beam.PCollection] = [own]
        for child in node.children.values():
            rows = self._state(child, parsed)
            if not child.edge.child_keyed:
                members = own | f"Members[{child.label}]" >> beam.FlatMap(_memberships, child.edge)
                join_type = _key_type(child.schema, child.edge.child_attrs)
                rows = self._keyed(f"Lookup[{child.label}]", (rows, members), LookupFn(), join_type)
            inputs.append(rows)
        step = EntityStateFn(node, sinks)
        if sinks:
            step = beam.ParDo(step).with_outputs(*[s.name for s in sinks])
        key_type = _key_type(node.schema, (node.schema.primary,))
        return self._keyed(f"State[{node.label}]", tuple(inputs), step, key_type)

    @staticmethod
    def _keyed(label: str, inputs: Tuple[beam.PCollection, ...], step: Any, key_type: Any) -> Any:
        grouped = (
            inputs
            | f"{label}/Flatten" >> beam.Flatten()
            | f"{label}/Group" >> beam.ParDo(GroupWithinBundle(MAX_GROUP)).with_output_types(
                Tuple[key_type, List[Any]]))
        return grouped | label >> (step if isinstance(step, beam.PTransform) else beam.ParDo(step))


def _key_type(schema: ClassSchema, attrs: Tuple[str, ...]) -> Any:
    """The type hint of a key made of ``attrs``, so Beam picks a deterministic key coder."""
    types = dict((attr, kind) for attr, kind, _ in schema.types)
    hints = [types[a] if types[a] in (str, int, bytes) else Any for a in attrs]
    return hints[0] if len(hints) == 1 else Tuple[tuple(hints)]
