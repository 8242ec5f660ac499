"""A readable plan of each sink: what it reads, how it is paced and where its output goes."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, List, Optional, Sequence

from sinks.durations import INFINITY
from sinks.features import info
from sinks.options import class_options_text, feature_options_text
from transforms.assemble.plan import RootPlan, all_windows, edge_of, plan_roots
from sinks.registry import Registry
from sinks.selection import describe_deployment
from sinks.sink import SinkSpec
from transforms.sql import TableSpec


# What moves a time window's "now": the same words for every sink (see ``transforms.assemble.clock``).
WINDOW_CLOCK = ("re-evaluated by the stream's event-time clock (the watermark), and at the end of a bounded "
                "input as of its final event time (or --as-of)")


def describe(spec: SinkSpec, plan: Optional[RootPlan] = None) -> List[str]:
    """Lines describing one sink's compiled plan. ``plan`` is its root's plan across every sink run
    with it (rows are kept as long as any of them reads them); by default the sink's alone."""
    kind = "batch" if spec.is_batch else "per-row"
    lines = [f"sink {spec.name} ({kind}{', async' if spec.is_async else ''}) at {spec.location}",
             f"  root: {spec.root.__name__} keyed by {info(spec.root).primary.fqn}"]
    if class_options_text(spec.root):
        lines.append(f"  class {spec.root.__name__}: {class_options_text(spec.root)}")
    for item in spec.inputs:
        optional = " (optional)" if item.optional else ""
        options = feature_options_text(item.ref.leaf)
        lines.append(f"  input {item.parameter}: {item.ref!r}{optional}{f' ({options})' if options else ''}")
        for step in item.ref.steps[:-1] + ((item.ref.leaf,) if item.is_has_many else ()):
            edge = edge_of(step)
            how = ("rows go to the parent their latest key names, and leave the old one" if edge.child_keyed
                   else f"rows meet parents in a lookup keyed by {step.related.__name__}."
                        f"{', '.join(edge.child_attrs)}")
            lines.append(f"    join {step!r}: {step.join!r} ({how})")
    for item in spec.inputs:
        if item.is_has_many:
            windows = _window_texts(item.ref)
            if windows:
                lines.append(f"  windows: {item.parameter} {' and '.join(windows)}, {WINDOW_CLOCK}")
    if plan is None:
        (plan,) = plan_roots([spec])
    read = {tuple(step.name for step in item.ref.steps) for item in spec.inputs if item.is_has_many}
    for node in plan.root.post_order():
        if node.path in read:
            if node.horizon is not None:
                lines.append(f"  keeps {node.label} rows for {show_setting(node.horizon)} behind the entity's clock "
                             "(the longest any sink of the class reads), then prunes them")
            else:
                lines.append(f"  keeps every {node.label} row (a sink of the class reads rows of any age)")
    pacing = [f"{name}={show_setting(value)}" for name, value in (
        ("buffer_size", spec.buffer_size), ("debounce", spec.debounce), ("max_delay", spec.max_delay))
        if value is not None]
    lines.append(f"  pacing: {', '.join(pacing) or 'none'}")
    lines.append(f"  deployed: {describe_deployment(spec) or 'every environment, any tags'}")
    if spec.integration is not None and spec.output_model is not None:
        table = getattr(spec.output_model, "__tablename__", spec.output_model.__name__)
        mode = "upsert" if spec.upsert else "append"
        lines.append(f"  writes: {mode} into {table} at {describe_source(spec.integration)}")
        if spec.upsert and TableSpec(spec.output_model).version is None:
            lines.append(f"  warning: {table} has no version column, so a later run over older data (a backfill, "
                         "a replay) overwrites newer rows; flag a DateTime column with info={\"version\": True}, "
                         "and each row gets its entity's event time there")
    else:
        lines.append(f"  calls: {spec.module}.{spec.qualname}")
    return lines


def _window_texts(ref: Any) -> List[str]:
    """``after(60d) on Transfer.created_at`` for each time window in a has-many input's filters."""
    related = ref.leaf.related
    texts = []
    for item in ref.filters:
        for window in all_windows(item):
            feature = window.index.leaf if window.index is not None else info(related).feature_time
            assert feature is not None   # checked when the sink was defined (TimeWindow.time_ref)
            texts.append(f"{window.side}({show_duration(window.ago)}) on {feature.owner.__name__}.{feature.name}")
    return list(dict.fromkeys(texts))


def show_setting(value: Any) -> str:
    """A setting as a definition would spell it: durations in Chalk's grammar (``100ms``, ``1h30m``)."""
    return show_duration(value) if isinstance(value, timedelta) else str(value)


def show_duration(value: timedelta) -> str:
    """``timedelta(seconds=90)`` as ``1m30s``, ``timedelta(0)`` as ``0s``, no limit as ``infinity``."""
    if value >= INFINITY:
        return "infinity"
    micros = value // timedelta(microseconds=1)
    if micros % 1000:
        return f"{micros / 1000:g}ms"    # finer than Chalk's grammar goes
    parts = []
    remaining = micros // 1000
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


def describe_source(source: Any) -> str:
    """Where an integration writes, without its password, and saying so when the environment
    variables it reads are not set (its URL would be just ``postgresql+psycopg2://``)."""
    url = source.url
    name = type(source).__name__
    if url.get_backend_name() == "sqlite":
        return f"{name}({url.database})" if url.database else f"{name} (in memory)"
    if url.host or url.database or url.username:
        shown = url.difference_update_query(["password"]).render_as_string(hide_password=True)
        return f"{name}({shown!r})"
    variables = list(getattr(source, "_env", {}).values())
    prefix = f"{source.name}_" if getattr(source, "name", None) else ""
    if variables:
        return f"{name} (from the environment: {', '.join(prefix + v for v in variables)} not set)"
    return f"{name} (no connection settings)"


def explain(registry: Registry) -> str:
    """The plan of every sink in ``registry``, each root's planned across all its sinks (as a run
    of every sink plans it: a relation's rows are kept as long as any sink reads them)."""
    specs = [s.spec for s in registry.sinks.values()]
    plans: Dict[type, RootPlan] = dict(zip(_roots(specs), plan_roots(specs)))
    return "\n\n".join("\n".join(describe(spec, plans[spec.root])) for spec in specs)


def _roots(specs: Sequence[SinkSpec]) -> List[type]:
    """The root classes in the order :func:`plan_roots` plans them."""
    return list(dict.fromkeys(spec.root for spec in specs))


def graph_dot(registry: Registry) -> str:
    """The Beam graph of a job running every sink of ``registry``, as Graphviz DOT."""
    import apache_beam as beam

    from pipelines.build import JobSettings, build_job

    pipeline = beam.Pipeline(runner="FnApiRunner")
    updates = pipeline | "Updates" >> beam.Create([])
    build_job(updates, registry, JobSettings(), validate=False)
    proto = pipeline.to_runner_api()
    transforms = proto.components.transforms
    producers = {}
    leaves = [tid for tid, t in transforms.items() if not t.subtransforms and t.unique_name]
    for tid in leaves:
        for pcoll in transforms[tid].outputs.values():
            producers[pcoll] = tid
    lines = ["digraph pipeline {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
    for tid in leaves:
        lines.append(f'  "{tid}" [label="{transforms[tid].unique_name}"];')
    for tid in leaves:
        for pcoll in transforms[tid].inputs.values():
            if pcoll in producers:
                lines.append(f'  "{producers[pcoll]}" -> "{tid}";')
    lines.append("}")
    return "\n".join(lines) + "\n"
