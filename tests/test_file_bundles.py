"""Files read in bundles (issue 22, item 15): on the in-process FnApiRunner a file's reader hands the
rest of the file back to the runner after ``records_per_bundle`` records, and the runner reads it in
a new bundle. Every record is read once, in every format, with its line number; the time windows
of a job read that way end as of the input's final clock (the semantics model runs such reads too,
in tests/test_semantics_model.py)."""
import csv
import gzip
import io
import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any, Iterable, List, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import run as run_command
from pipelines.__main__ import main
from tests.test_cli import BANK, expected_aggregate, read_jsonl
from sinks import DataFrame, FeatureTime, after, features, sink
from transforms.assemble import Assemble, clock, reads_in_bundles
from transforms.assemble.state import END_OF_INPUT
from pipelines.sources import END, RECORDS_PER_BUNDLE, ReadUpdates, _Lines, _ReadFileInBundlesFn, _ResumableTracker
from transforms.dead_letters import DEAD_LETTERS


class _BundleSizes(beam.DoFn):
    """How many elements each bundle had: fused with the reader, its bundles are the reader's."""

    def start_bundle(self) -> None:
        self.seen = 0

    def process(self, element: Any) -> Iterable[Any]:
        self.seen += 1
        return ()

    def finish_bundle(self) -> Iterable[Any]:
        if self.seen:
            yield beam.utils.windowed_value.WindowedValue(self.seen, 0, [beam.transforms.window.GlobalWindow()])


def check(pattern: str, per_bundle: Any, updates: List[dict], letter_lines: List[int], sizes: List[int]) -> None:
    """Reads ``pattern`` on the FnApiRunner and checks its updates, its dead letters' line numbers
    and how many updates each bundle read."""
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        result = pipeline | ReadUpdates(pattern, records_per_bundle=per_bundle,
                                        input_id=None if per_bundle is None else "test-input")
        assert_that(result.updates, equal_to(updates), label="Updates")
        lines = result[DEAD_LETTERS] | "Lines" >> beam.Map(lambda letter: json.loads(letter["input"])["line"])
        assert_that(lines, equal_to(letter_lines), label="Letters")
        assert_that(result.updates | beam.ParDo(_BundleSizes()), equal_to(sizes), label="Sizes")


def _jsonl(count: int) -> List[bytes]:
    return [json.dumps({"user.uuid": f"u{i}", "user.full_name": f"N{i}"}).encode() for i in range(count)]


@pytest.mark.parametrize("opener", [open, gzip.open], ids=["plain", "gzip"])
def test_a_jsonl_file_is_read_whole_across_bundles_with_its_line_numbers(tmp_path, opener):
    lines = _jsonl(23)
    lines[9:9] = [b"", b"{not json"]             # a blank line, then a bad one: line 11
    lines.append(b'{"truncated": ')              # the last line: 26, without a newline after it
    path = tmp_path / ("in.jsonl.gz" if opener is gzip.open else "in.jsonl")
    with opener(path, "wb") as out:
        out.write(b"\n".join(lines))
    updates = [json.loads(line) for line in _jsonl(23)]
    check(str(path), None, updates, [11, 26], [23])
    # Records 9 to 12 are u8, the bad line, u9 and u10; the last bundle reads the truncated line alone.
    check(str(path), 4, updates, [11, 26], [4, 4, 3, 4, 4, 4])


def test_a_csv_record_spanning_lines_is_read_once_across_bundles(tmp_path):
    path = tmp_path / "in.csv"
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["user.uuid", "user.full_name"])
        for i in range(10):
            writer.writerow([f"u{i}", f"line one\nline two {i}" if i % 3 == 0 else f"N{i}"])
        out.write('u-extra,"x\ny",too many\n')   # lines 16-17 (four records above span two lines)
        writer.writerow(["u-last", ""])          # an empty cell: left out of the update
    updates = [{"user.uuid": f"u{i}", "user.full_name": f"line one\nline two {i}" if i % 3 == 0 else f"N{i}"}
               for i in range(10)] + [{"user.uuid": "u-last"}]
    check(str(path), 3, updates, [16], [3, 3, 3, 2])      # the fourth: u9, the bad row, u-last


def _csv_with_line_ends(path: Any, opener: Any, end: str) -> List[dict]:
    """A CSV file whose lines end in ``end``; the bad row is line 10 (u2 spans lines 4-5)."""
    with opener(path, "wt", newline="") as out:
        writer = csv.writer(out, lineterminator=end)
        writer.writerow(["user.uuid", "user.full_name"])
        for i in range(7):
            writer.writerow([f"u{i}", f"a{end}b" if i == 2 else f"N{i}"])
        out.write(f"u-extra,x,too many{end}")
        writer.writerow(["u-last", "L"])
    return ([{"user.uuid": f"u{i}", "user.full_name": f"a{end}b" if i == 2 else f"N{i}"} for i in range(7)]
            + [{"user.uuid": "u-last", "user.full_name": "L"}])


@pytest.mark.parametrize("block", [_Lines.BLOCK, 5], ids=["block", "5-byte-blocks"])
@pytest.mark.parametrize("opener", [open, gzip.open], ids=["plain", "gzip"])
@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_csv_lines_may_end_in_lf_crlf_or_a_bare_cr(tmp_path, monkeypatch, end, opener, block):
    # Small blocks put a block's end inside a \r\n and inside a record.
    monkeypatch.setattr(_Lines, "BLOCK", block)
    path = tmp_path / ("in.csv.gz" if opener is gzip.open else "in.csv")
    updates = _csv_with_line_ends(path, opener, end)
    check(str(path), None, updates, [10], [8])
    check(str(path), 3, updates, [10], [3, 3, 2])


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"b", b"\r", b"\n"]), max_size=40).map(b"".join),
       block=st.integers(1, 8), any_line_end=st.booleans(), move=st.integers(0, 40), counted=st.booleans())
def test_lines_are_split_as_python_splits_them_across_blocks_and_moves(data, block, any_line_end, move, counted):
    # A move after the first line to the start of a later one, as a resumed CSV file does after
    # its header: the lines after it, their offsets and numbers, as if read from there.
    expected = data.splitlines(keepends=True) if any_line_end else io.BytesIO(data).readlines()
    starts = [0]
    for line in expected:
        starts.append(starts[-1] + len(line))
    to = min(move, len(expected))
    lines = _Lines(io.BytesIO(data), any_line_end)
    lines.BLOCK = block
    read = []
    for raw in lines:
        read.append((raw, lines.offset, lines.line))
        if len(read) == 1 and to > 1:
            lines.move_to(starts[to], None if counted else to)
    kept = range(len(expected)) if to <= 1 else [0, *range(to, len(expected))]
    assert read == [(expected[i], starts[i + 1], i + 1) for i in kept]


def test_the_rest_of_a_csv_file_with_bare_cr_line_ends_counts_its_lines_again(tmp_path):
    path = tmp_path / "in.csv"
    _csv_with_line_ends(path, open, "\r")
    rest = len("\r".join(["user.uuid,user.full_name", "u0,N0", "u1,N1", 'u2,"a\rb"'])) + 1   # where u3 starts
    reader = _ReadFileInBundlesFn(None, False, 100, "test-input")
    reader.setup()
    out = list(reader.process(str(path), _ResumableTracker(OffsetRange(rest, END))))
    assert [json.loads(o.value["input"])["line"] for o in out if isinstance(o, beam.pvalue.TaggedOutput)] == [10]
    assert [u["user.uuid"] for u in out if isinstance(u, dict)] == ["u3", "u4", "u5", "u6", "u-last"]


def test_a_parquet_file_is_read_whole_across_row_groups_and_bundles(tmp_path):
    path = tmp_path / "in.parquet"
    table = pa.table({"user.uuid": [f"u{i}" for i in range(20)],
                      "user.full_name": [None if i == 5 else f"N{i}" for i in range(20)]})
    pq.write_table(table, path, row_group_size=6)
    updates = [{"user.uuid": f"u{i}"} if i == 5 else {"user.uuid": f"u{i}", "user.full_name": f"N{i}"}
               for i in range(20)]
    check(str(path), 7, updates, [], [7, 7, 6])


def test_the_rest_of_a_file_read_in_another_process_counts_its_lines_again(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = _jsonl(6)
    lines.insert(4, b"{bad")                        # line 5
    path.write_bytes(b"\n".join(lines) + b"\n")
    rest = len(b"\n".join(lines[:3])) + 1           # where line 4 starts
    reader = _ReadFileInBundlesFn(None, False, 100, "test-input")
    reader.setup()                                  # a process that read nothing of the file before
    clock.read_deferred("test-input")             # as the process that read the first lines did
    out = list(reader.process(str(path), _ResumableTracker(OffsetRange(rest, END))))
    assert clock.input_read("test-input")
    assert [json.loads(o.value["input"])["line"] for o in out if isinstance(o, beam.pvalue.TaggedOutput)] == [5]
    assert [u["user.uuid"] for u in out if isinstance(u, dict)] == ["u3", "u4", "u5"]


def test_only_the_readers_own_checkpoints_split_a_file():
    tracker = _ResumableTracker(OffsetRange(0, END))
    assert tracker.try_claim(10)
    assert tracker.try_split(0.5) is None
    primary, residual = tracker.try_split(0)
    assert (primary.stop, residual.start) == (11, 11)


def test_run_reads_in_bundles_only_on_the_in_process_fnapi_runner(monkeypatch, tmp_path):
    chosen = []
    real = run_command.ReadUpdates

    def recording(*args: Any, **kwargs: Any) -> Any:
        chosen.append(kwargs.get("records_per_bundle"))
        return real(*args, **kwargs)
    monkeypatch.setattr(run_command, "ReadUpdates", recording)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(_jsonl(3)) + b"\n")
    for runner in ([], ["--runner", "BundleBasedDirectRunner"]):
        assert main(["run", "--definitions", BANK, "--input", str(source),
                     "--database-url", f"sqlite:///{tmp_path / 'out.db'}"] + runner) == 0
    assert chosen == [RECORDS_PER_BUNDLE, None]


def test_the_bank_job_read_in_bundles_ends_its_windows_as_of_the_inputs_clock(monkeypatch, tmp_path, sample):
    monkeypatch.setattr(run_command, "RECORDS_PER_BUNDLE", 50)        # the sample: 14 bundles
    db = tmp_path / "out.db"
    assert main(["run", "--definitions", BANK, "--input", str(sample), "--database-url", f"sqlite:///{db}"]) == 0
    updates = read_jsonl(sample)
    times = [datetime.fromisoformat(u.get("user.ts") or u.get("account.ts") or u["transfer.created_at"])
             for u in updates]
    now = max(times)                                                  # the input's final clock
    expected = {}
    for update in updates:
        if update.get("transfer.status") == "successful" and (
                now - timedelta(days=60) <= datetime.fromisoformat(update["transfer.created_at"]) <= now):
            count, total = expected.get(update["transfer.user_id"], (0, 0.0))
            expected[update["transfer.user_id"]] = (count + 1, total + update["transfer.amount"])
    with sqlite3.connect(db) as connection:
        stored = {user: (count, total) for user, count, total in connection.execute(
            "SELECT user_id, count, total FROM user_txn_aggregates")}
    assert len(stored) == 40
    for user, (count, total) in stored.items():
        want = expected.get(user, (0, 0.0))
        assert count == want[0] and total == pytest.approx(want[1]), user


def test_the_routing_step_ticks_its_parents_only_once_nothing_of_the_input_waits():
    from tests.test_moved_rows import _State, _transfers_plan
    from transforms.assemble.messages import ROWS, Rel, Tick
    from transforms.assemble.route import TickingRouteRowsFn, routing_key

    plan = _transfers_plan(windowed=True)
    route = TickingRouteRowsFn(plan.root.children.values(), "id", ["transfers"], "ticks-input")
    route.start_bundle()
    state, timer = _State(), _Timer()
    values = {"id": "t1", "user_id": "u1", "created_at": 5}
    list(route.process((routing_key(ROWS, "transfers", "t1"), [Rel("transfers", "u1", "t1", 5, values)]),
                       state, timer))
    assert timer.set_to == [END_OF_INPUT]
    list(route.finish_bundle())
    clock.read_deferred("ticks-input")                               # the rest of a file waits
    route.start_bundle()
    assert list(route.input_ended(state, timer)) == [] and list(route.finish_bundle()) == []
    assert timer.set_to == [END_OF_INPUT, END_OF_INPUT]               # set again, for a later bundle
    clock.read_resumed("ticks-input")
    route.start_bundle()
    list(route.input_ended(state, timer))
    ticks = [group.value for group in route.finish_bundle()]
    assert ticks == [("u1", [Tick()])] and len(timer.set_to) == 2


class _Timer:
    def __init__(self) -> None:
        self.set_to: List[Any] = []

    def set(self, when: Any) -> None:
        self.set_to.append(when)


def test_windows_over_rows_not_routed_to_their_entity_keep_a_file_in_one_bundle(registry):
    @features
    class Employee:
        id: str
        manager_id: "Optional[Employee.id]"
        ts: FeatureTime
        reports: "DataFrame[Employee]"     # related to itself: the reports get a stage, not routing

    @sink
    def recent_hires(eid: Employee.id, reports: Employee.reports[after(days_ago=30)]) -> None:
        pass

    @sink
    def names(eid: Employee.id) -> None:
        pass

    assert not reads_in_bundles([recent_hires]) and reads_in_bundles([names])
    with pytest.raises(ValueError, match="read it in one"):
        Assemble([recent_hires], input_id="x")
    options = PipelineOptions(["--runner", "FnApiRunner"])
    assert run_command.bundled_input(options, [recent_hires]) is None
    assert run_command.bundled_input(options, [names]) is not None      # no windows: bundles are safe
    assert run_command.bundled_input(PipelineOptions(["--runner", "PrismRunner"]), [names]) is None
