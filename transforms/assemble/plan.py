"""Input plans: what the assemble stage must hold and join for a set of sinks, as plain data.

A root class and the sinks reading it compile into a tree of :class:`Node`s,
one per relation path the sinks follow (``User`` → ``account`` → ``bank``;
``User`` → ``transfers``). Each non-root node is joined to its parent by an
:class:`Edge`:

- child-keyed: the child holds the parent's primary key (``Account.user_id ==
  User.uuid``), so a child row goes straight to its parent's state;
- parent-keyed: the parent holds the child's key or any other feature
  (``User.account_id == Account.id``), so child rows meet their parents in a
  lookup keyed by the join value.

Everything here is strings, types and tuples, so the DoFns holding a plan
pickle without the user's classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, List, Optional, Tuple

from sinks.features import Feature, Ref, info
from sinks.filters import And, Filter, Not, Or, TimeWindow
from sinks.options import Constraints
from sinks.sink import SinkSpec


@dataclass(frozen=True)
class ClassSchema:
    """One feature class's scalar features, as the parser needs them."""

    namespace: str
    name: str
    primary: str
    time: Optional[str]
    types: Tuple[Tuple[str, Any, bool], ...]    # (attr, python type, optional)
    relations: Tuple[str, ...]
    # The features declaring limits (``feature(min=, max_length=, strict=)``): (attr, Constraints).
    constraints: Tuple[Tuple[str, Constraints], ...] = ()


@dataclass(frozen=True)
class Edge:
    """How a node's rows join its parent's: ``parent.parent_attrs == child.child_attrs``."""

    relation: str                  # the parent's relation attribute (``account``)
    many: bool
    parent_attrs: Tuple[str, ...]
    child_attrs: Tuple[str, ...]
    child_keyed: bool              # parent_attrs is the parent's primary key alone


@dataclass
class Node:
    """A class reached by one relation path from the root, with the relations below it."""

    schema: ClassSchema
    path: Tuple[str, ...]
    edge: Optional[Edge] = None
    children: Dict[str, "Node"] = field(default_factory=dict)
    # Rows of a has-many node older than this (on the parent's clock) are pruned; None keeps all.
    horizon: Optional[timedelta] = None

    # Where the node sits, from the root: ``user``, ``user.account``, ``user.account.bank``.
    label: str = ""
    # Whether the node's class is also a class above it (``Employee.reports``): its updates are
    # the entity's own too, and need not repeat the join key, so its rows cannot be routed by it.
    recursive: bool = False

    @property
    def has_stage(self) -> bool:
        """Whether the node keeps its rows in a stage of its own, which sends each row to the
        parent (or lookup) its latest join key names and tells the old one it left; otherwise
        (a leaf) the parser sends every update of a row to its parent's routing step
        (``transforms.assemble.route``), which places the row by the join key merged from its
        updates, or to a lookup keyed by the row's own key, which never changes."""
        edge = self.edge
        return (edge is None or bool(self.children) or self.recursive
                or (not edge.child_keyed and edge.child_attrs != (self.schema.primary,)))

    def post_order(self) -> Iterable["Node"]:
        for child in self.children.values():
            yield from child.post_order()
        yield self


@dataclass(frozen=True)
class WindowPlan:
    """A time window of a has-many input, on rows' ``attr`` (µs): ``after`` keeps rows with
    ``now - ago <= row[attr] <= now``, ``before`` rows with ``row[attr] <= now - ago``."""

    side: str
    ago: int                       # µs
    attr: str

    def changes(self, time: int) -> Tuple[int, ...]:
        """The instants ``now`` at which a row with ``row[attr] == time`` enters or leaves."""
        if self.side == "after":
            return time, time + self.ago + 1
        return (time + self.ago,)


@dataclass(frozen=True)
class SinkInputPlan:
    """One value a sink receives: a parameter (per-row) or a column (batch)."""

    name: str
    path: Tuple[str, ...]          # has-one relations from the root, then the feature or has-many relation
    many: bool
    optional: bool
    # A has-many input's time window (``after(days_ago=60)``): its rows change as the clock moves.
    window: Optional[timedelta] = None
    # A timestamp feature: held as µs since the epoch (see ``transforms.assemble.parse``), received as a datetime.
    moment: bool = False
    # Every time window of a has-many input's filters, wherever it sits (``&``, ``|``, ``~``):
    # as the clock moves, its rows enter and leave them.
    windows: Tuple[WindowPlan, ...] = ()
    # ``(value,)`` when the feature declares a default (``feature(default=)``): what it reads as
    # while its entity never received it; ``()`` without one.
    default: Tuple[Any, ...] = ()


@dataclass(frozen=True)
class SinkPlan:
    name: str
    inputs: Tuple[SinkInputPlan, ...]
    # Root features (other than the key) and top-level relations whose updates fire the sink.
    triggers: frozenset
    # Only the entity's latest firing matters (``SinkSpec.keeps_latest_only``).
    latest_only: bool = False


@dataclass
class RootPlan:
    root: Node
    sinks: Tuple[SinkPlan, ...]

    @property
    def name(self) -> str:
        return self.root.schema.name


def schema_of(cls: type) -> ClassSchema:
    class_info = info(cls)
    time = class_info.feature_time
    return ClassSchema(
        namespace=class_info.namespace,
        name=cls.__name__,
        primary=class_info.primary.name,
        time=time.name if time is not None else None,
        types=tuple((f.name, f.type, f.optional) for f in class_info.scalars),
        relations=tuple(name for name, f in class_info.features.items() if f.kind != "scalar"),
        constraints=tuple((f.name, f.constraints) for f in class_info.scalars if f.constraints),
    )


def edge_of(relation: Feature) -> Edge:
    pairs = relation.join.pairs
    parent_attrs = tuple(parent.name for parent, _ in pairs)
    return Edge(
        relation=relation.name,
        many=relation.kind == "has_many",
        parent_attrs=parent_attrs,
        child_attrs=tuple(child.name for _, child in pairs),
        child_keyed=parent_attrs == (info(relation.owner).primary.name,),
    )


def plan_roots(specs: Iterable[SinkSpec], allowed_lateness: timedelta = timedelta(0)) -> List[RootPlan]:
    """One plan per root class; sinks that share a root share its plan (and its state)."""
    by_root: Dict[type, List[SinkSpec]] = {}
    for spec in specs:
        by_root.setdefault(spec.root, []).append(spec)
    return [_plan_root(root, group, allowed_lateness) for root, group in by_root.items()]


def _plan_root(root_cls: type, specs: List[SinkSpec], allowed_lateness: timedelta) -> RootPlan:
    root = Node(schema_of(root_cls), (), label=info(root_cls).namespace)
    windows: Dict[Tuple[str, ...], List[Optional[timedelta]]] = {}
    plans = []
    for spec in specs:
        inputs, triggers = [], set()
        for item in spec.inputs:
            ref = item.ref
            node = root
            ancestors: Tuple[str, ...] = (root.schema.namespace,)
            for step in ref.steps[:-1] + ((ref.leaf,) if item.is_has_many else ()):
                node = node.children.get(step.name) or _add_child(node, step, ancestors)
                ancestors += (node.schema.namespace,)
            path = tuple(step.name for step in ref.steps)
            window = _bounding_window(ref) if item.is_has_many else None
            if item.is_has_many:
                windows.setdefault(path, []).append(window)
            name = item.parameter if not spec.is_batch else ref.fqn
            moment = not item.is_has_many and ref.leaf.type is datetime
            every = _windows(ref) if item.is_has_many else ()
            default = (ref.leaf.default,) if not item.is_has_many and ref.leaf.has_default else ()
            inputs.append(SinkInputPlan(name, path, item.is_has_many, item.optional, window, moment, every,
                                        default))
            if len(path) > 1 or item.is_has_many or path[0] != root.schema.primary:
                triggers.add(path[0])
        plans.append(SinkPlan(spec.name, tuple(inputs), frozenset(triggers), spec.keeps_latest_only))
    for path, bounds in windows.items():
        node = root
        for attr in path:
            node = node.children[attr]
        known = [bound for bound in bounds if bound is not None]
        if len(known) == len(bounds):
            node.horizon = max(known) + allowed_lateness
    return RootPlan(root, tuple(plans))


def _add_child(parent: Node, relation: Feature, ancestors: Tuple[str, ...]) -> Node:
    schema = schema_of(relation.related)
    child = Node(schema, parent.path + (relation.name,), edge_of(relation),
                 label=f"{parent.label}.{relation.name}", recursive=schema.namespace in ancestors)
    parent.children[relation.name] = child
    return child


def _bounding_window(ref: Ref) -> Optional[timedelta]:
    """How far back a has-many input looks: its ``after()`` window on the related class's
    FeatureTime, when the filters require one; None when it may read rows of any age."""
    related_time = info(ref.leaf.related).feature_time
    bounds = [w.ago for f in ref.filters for w in _required_windows(f)
              if w.side == "after" and (w.index is None or w.index.leaf is related_time)]
    return min(bounds) if bounds else None


def _windows(ref: Ref) -> Tuple[WindowPlan, ...]:
    related = ref.leaf.related
    found: List[WindowPlan] = []
    for item in ref.filters:
        for window in all_windows(item):
            feature = window.index.leaf if window.index is not None else info(related).feature_time
            assert feature is not None   # checked when the sink was defined (TimeWindow.time_ref)
            attr = feature.name
            found.append(WindowPlan(window.side, window.ago // timedelta(microseconds=1), attr))
    return tuple(dict.fromkeys(found))


def all_windows(item: Filter) -> Iterable[TimeWindow]:
    """Every time window in a filter, wherever it sits (``&``, ``|``, ``~``)."""
    if isinstance(item, TimeWindow):
        yield item
    elif isinstance(item, (And, Or)):
        yield from all_windows(item.left)
        yield from all_windows(item.right)
    elif isinstance(item, Not):
        yield from all_windows(item.inner)


def _required_windows(item: Filter) -> Iterable[TimeWindow]:
    """Windows every matching row must satisfy (those reached through ``&`` only)."""
    if isinstance(item, TimeWindow):
        yield item
    elif isinstance(item, And):
        yield from _required_windows(item.left)
        yield from _required_windows(item.right)
