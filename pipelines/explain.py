"""A readable plan of each sink: what it reads, how it is paced and where its output goes."""
from __future__ import annotations

from typing import List

from sinks.features import info
from sinks.options import class_options_text, feature_options_text
from transforms.assemble.plan import edge_of, plan_roots
from sinks.registry import Registry
from sinks.selection import describe_deployment
from sinks.sink import SinkSpec


def describe(spec: SinkSpec) -> List[str]:
    """Lines describing one sink's compiled plan."""
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
            how = ("rows go to their parent's state by that key" if edge.child_keyed
                   else f"rows meet parents in a lookup keyed by {step.related.__name__}."
                        f"{', '.join(edge.child_attrs)}")
            lines.append(f"    join {step!r}: {step.join!r} ({how})")
    (plan,) = plan_roots([spec])
    for node in plan.root.post_order():
        if node.horizon is not None:
            lines.append(f"  keeps {node.label} rows for {node.horizon} behind the entity's clock, then prunes them")
    pacing = [f"{name}={value}" for name, value in (
        ("buffer_size", spec.buffer_size), ("debounce", spec.debounce), ("max_delay", spec.max_delay))
        if value is not None]
    lines.append(f"  pacing: {', '.join(pacing) or 'none'}")
    lines.append(f"  deployed: {describe_deployment(spec) or 'every environment, any tags'}")
    if spec.integration is not None and spec.output_model is not None:
        table = getattr(spec.output_model, "__tablename__", spec.output_model.__name__)
        mode = "upsert" if spec.upsert else "append"
        lines.append(f"  writes: {mode} into {table} at {spec.integration!r}")
    else:
        lines.append(f"  calls: {spec.module}.{spec.qualname}")
    return lines


def explain(registry: Registry) -> str:
    """The plan of every sink in ``registry``."""
    return "\n\n".join("\n".join(describe(s.spec)) for s in registry.sinks.values())


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
