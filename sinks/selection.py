"""Which sinks a run deploys: ``environment`` and ``tags`` of ``@sink``, with Chalk's meanings.

- ``environment``: a sink without one runs in every environment; with one (or a list), only in
  those. A run names its environment with ``run --environment ENV``.
- ``tags``: a sink without tags is a candidate for every set of tags; a tagged sink runs only when
  every one of its tags matches a tag of the run (``run --tag TAG``, repeatable). A tag is ``key`` or
  ``key:value``; a sink's ``key`` matches the run's ``key`` and any ``key:value``, a sink's
  ``key:value`` only the same ``key:value``.

A run that names neither selects nothing out: every sink runs.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, TypeVar

from sinks.sink import Sink, SinkSpec

S = TypeVar("S", bound=Sink)


def tag_matches(sink_tag: str, run_tags: Sequence[str]) -> bool:
    """Whether one of a sink's tags is met by the tags a run was given."""
    if ":" in sink_tag:
        return sink_tag in run_tags
    return any(tag == sink_tag or tag.split(":", 1)[0] == sink_tag for tag in run_tags)


def deployed(sink: Sink, environment: Optional[str] = None, tags: Sequence[str] = ()) -> bool:
    """Whether ``sink`` runs in ``environment`` (None: any) with the run's ``tags`` (empty: any)."""
    spec = sink.spec
    if environment is not None and spec.environment and environment not in spec.environment:
        return False
    return not tags or all(tag_matches(tag, tags) for tag in spec.tags)


def select_sinks(sinks: Sequence[S], environment: Optional[str] = None, tags: Sequence[str] = ()) -> List[S]:
    """The sinks a run in ``environment`` with ``tags`` deploys, in their order; KeyError when none."""
    chosen = [s for s in sinks if deployed(s, environment, tags)]
    if sinks and not chosen:
        wanted = " and ".join(part for part in (
            f"environment '{environment}'" if environment is not None else "",
            f"tags {', '.join(tags)}" if tags else "") if part)
        known = "; ".join(f"{s.spec.name}: {describe_deployment(s.spec) or 'everywhere'}" for s in sinks)
        raise KeyError(f"no sink runs in {wanted} ({known})")
    return chosen


def describe_deployment(spec: SinkSpec) -> str:
    """``environment prod, staging; tags team:risk; machine_type small ...; owner ...`` (empty when
    none is set). ``machine_type`` is only shown: choosing machines is the runner's options' job."""
    parts = [f"{label} {', '.join(values)}" for label, values in
             (("environment", spec.environment), ("tags", spec.tags)) if values]
    if spec.machine_type:
        parts.append(f"machine_type {spec.machine_type} (a hint for runner options)")
    if spec.owner:
        parts.append(f"owner {spec.owner}")
    return "; ".join(parts)
