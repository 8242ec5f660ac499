"""``generate`` writes its updates in event-time order through sorted runs spilled to disk."""
import csv
import json
import os

import pyarrow.parquet as pq
import pytest

import sinks
from pipelines import generate as generating

BANK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "bank.py")


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_runs_merged_from_disk_equal_one_sort_in_memory(tmp_path, monkeypatch, suffix):
    registry = sinks.load(BANK)
    made = list(generating._Generator(registry, 30, 180, 1).updates())
    expected = [g.update for g in sorted(made, key=lambda g: g.at)]   # a stable sort: ties keep their order
    monkeypatch.setattr(generating, "RUN_SIZE", 7)                       # dozens of runs to merge
    out = tmp_path / f"updates.{suffix}"

    assert generating.generate(registry, 30, str(out)) == len(expected)

    if suffix == "jsonl":
        written = [json.loads(line) for line in out.read_text().splitlines()]
    elif suffix == "csv":
        with open(out, newline="") as handle:
            written = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]
        expected = [{k: str(v) for k, v in update.items()} for update in expected]
    else:
        written = [{k: v for k, v in row.items() if v is not None} for row in pq.read_table(out).to_pylist()]
    assert written == expected
    assert len({json.dumps(u, sort_keys=True) for u in written}) == len(written)   # nothing twice
