"""A readable plan of each sink: what it reads, how it is paced and where its output goes."""
from __future__ import annotations

from typing import List

from sinks.features import info
from sinks.registry import Registry
from sinks.sink import SinkSpec


def describe(spec: SinkSpec) -> List[str]:
    """Lines describing one sink's compiled plan."""
    kind = "batch" if spec.is_batch else "per-row"
    lines = [f"sink {spec.name} ({kind}{', async' if spec.is_async else ''}) at {spec.location}",
             f"  root: {spec.root.__name__} keyed by {info(spec.root).primary.fqn}"]
    for item in spec.inputs:
        optional = " (optional)" if item.optional else ""
        lines.append(f"  input {item.parameter}: {item.ref!r}{optional}")
        for step in item.ref.steps[:-1] + ((item.ref.leaf,) if item.is_has_many else ()):
            lines.append(f"    join {step!r}: {step.join!r}")
    pacing = [f"{name}={value}" for name, value in (
        ("buffer_size", spec.buffer_size), ("debounce", spec.debounce), ("max_delay", spec.max_delay))
        if value is not None]
    lines.append(f"  pacing: {', '.join(pacing) or 'none'}")
    if spec.integration is not None:
        table = getattr(spec.output_model, "__tablename__", spec.output_model.__name__)
        mode = "upsert" if spec.upsert else "append"
        lines.append(f"  writes: {mode} into {table} at {spec.integration!r}")
    else:
        lines.append(f"  calls: {spec.module}.{spec.qualname}")
    return lines


def explain(registry: Registry) -> str:
    """The plan of every sink in ``registry``."""
    return "\n\n".join("\n".join(describe(s.spec)) for s in registry.sinks.values())
