"""The table a bounded run ends with: per sink, what Beam's metrics counted."""
from __future__ import annotations

from typing import Dict, List, Sequence

from apache_beam.metrics.metric import MetricsFilter

COLUMNS = (
    ("updates", "rows"), ("calls", "calls"), ("appended", "rows_appended"), ("upserted", "rows_upserted"),
    ("batches", "batches"), ("retries", "retries"), ("write retries", "write_retries"),
    ("dead letters", "dead_letters"), ("write dead letters", "write_dead_letters"),
)


def counters(result) -> Dict[str, Dict[str, int]]:
    """Committed counters by namespace and name."""
    found: Dict[str, Dict[str, int]] = {}
    for counter in result.metrics().query(MetricsFilter())["counters"]:
        key = counter.key.metric
        found.setdefault(key.namespace, {})
        found[key.namespace][key.name] = found[key.namespace].get(key.name, 0) + (counter.committed or 0)
    return found


def summary_table(result, sink_names: Sequence[str]) -> str:
    """A text table, one row per sink, plus the input line."""
    values = counters(result)
    source = values.get("sinks.source", {})
    assemble = values.get("sinks.assemble", {})
    lines: List[str] = [
        f"input: {source.get('updates_read', 0):,} records read, {source.get('dead_letters', 0):,} unreadable; "
        f"{assemble.get('updates', 0):,} updates accepted, {assemble.get('dead_letters', 0):,} rejected"]
    header = ["sink"] + [title for title, _ in COLUMNS]
    rows = [[name] + [f"{values.get(f'sinks.{name}', {}).get(metric, 0):,}" for _, metric in COLUMNS]
            for name in sink_names]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        lines.append("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))))
    return "\n".join(lines)
