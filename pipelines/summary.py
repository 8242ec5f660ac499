"""The table a bounded run ends with: per sink, what Beam's metrics counted."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from apache_beam.metrics.metric import MetricsFilter

# (title, metric). "upserts" counts rows sent in upsert statements: a key upserted three times
# counts three, and adds one row to its table at most (the run prints the tables' row counts).
COLUMNS = (
    ("updates", "rows"), ("calls", "calls"), ("batches", "batches"), ("retries", "retries"),
    ("dead letters", "dead_letters"), ("appended", "rows_appended"), ("upserts", "rows_upserted"),
    ("write batches", "write_batches"), ("write retries", "write_retries"),
    ("write dead letters", "write_dead_letters"),
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
    """A text table, one row per sink, after the input line."""
    values = counters(result)
    source = values.get("sinks.source", {})
    assemble = values.get("sinks.assemble", {})
    lines: List[str] = [
        f"input: {source.get('updates_read', 0):,} records read, {source.get('dead_letters', 0):,} unreadable; "
        f"{assemble.get('updates', 0):,} updates parsed; {assemble.get('dead_letters', 0):,} dead letters "
        "from parsing and joining"]
    header = ["sink"] + [title for title, _ in COLUMNS]
    rows = [[name] + [f"{values.get(f'sinks.{name}', {}).get(metric, 0):,}" for _, metric in COLUMNS]
            for name in sink_names]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        lines.append("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def show_value(value: Any) -> str:
    """A stored value as a person reads it: a float to at most 12 significant digits, so the
    binary noise of a sum (``1322.5800000000002``) does not show."""
    if isinstance(value, float):
        return f"{value:.12g}"
    return str(value)

