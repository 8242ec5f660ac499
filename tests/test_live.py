"""``--follow`` (pipelines/live.py): nothing read is lost, whatever the size of a poll, a stop or a
crash, or a file written in place."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.live import MAX_LINE_BYTES, DirectoryEvents, ReadDirectory
from transforms.dead_letters import DEAD_LETTERS

ROOT = Path(__file__).resolve().parent.parent
BANK = str(ROOT / "examples" / "bank.py")

# What the in-process DirectRunner's last pipeline emitted (its DoFns run in this process).
collected: dict = {"updates": [], "dead_letters": []}


def _collect(kind: str, value) -> None:
    collected[kind].append(value)


def test_more_than_a_grpc_message_in_one_poll_delivers_every_record(tmp_path):
    """25,000 records (6.6 MB) in one poll, a 3 MiB+ line and a malformed line: the runner reads the
    event service over gRPC (4 MiB per message), so events are chunked; the others are dead letters."""
    watched = tmp_path / "in"
    watched.mkdir()
    padding = "x" * 240
    lines = [json.dumps({"n": n, "pad": padding}) for n in range(25_000)]
    lines[10] = "{not json"
    lines[20] = json.dumps({"n": 20, "pad": "y" * (MAX_LINE_BYTES + 1)})
    (watched / "big.jsonl").write_text("\n".join(lines) + "\n")
    (watched / "STOP").touch()
    collected["updates"].clear()
    collected["dead_letters"].clear()
    live = ReadDirectory(str(watched), stop_after=60)
    pipeline = beam.Pipeline(options=PipelineOptions(runner="BundleBasedDirectRunner"))
    read = pipeline | live
    read.updates | "Updates" >> beam.Map(lambda u: _collect("updates", u["n"]))
    read[DEAD_LETTERS] | "Dead" >> beam.Map(lambda d: _collect("dead_letters", d))
    try:
        assert str(pipeline.run().wait_until_finish()).endswith("DONE")
    finally:
        live.stop()
    assert sorted(collected["updates"]) == [n for n in range(25_000) if n not in (10, 20)]
    letters = sorted(collected["dead_letters"], key=lambda d: json.loads(d["input"])["line"])
    assert [(json.loads(d["input"])["file"], json.loads(d["input"])["line"]) for d in letters] == [
        (str(watched / "big.jsonl"), 11), (str(watched / "big.jsonl"), 21)]
    assert "bytes: --follow sends lines of up to" in letters[1]["error"]
    assert live.commit() == [str(watched / "big.jsonl")]
    assert sorted(os.listdir(watched)) == ["STOP", "big.jsonl.done"]


def test_a_file_written_in_place_is_read_in_complete_lines_until_it_is_stable(tmp_path):
    path = tmp_path / "updates.jsonl"
    events = DirectoryEvents(str(tmp_path), settle=3600)

    def read():
        return [(r.line, json.loads(r.data)["n"]) for r in events.read_new_lines()]

    with open(path, "w") as handle:
        handle.write('{"n": 1}\n{"n": 2}\n{"n"')       # a copy caught half-way through a line
        handle.flush()
        assert read() == [(1, 1), (2, 2)]
        assert read() == []
        handle.write(': 3}\n\n{"n": 4}\n{"n": 5}')        # the rest; the last line has no newline yet
        handle.flush()
        assert read() == [(3, 3), (5, 4)]
    assert events.complete_files() == []                  # still changing (or may be): read again later
    final = [(r.line, json.loads(r.data)["n"]) for r in events.read_new_lines(final=True)]
    assert final == [(6, 5)]                              # the stream ends: the last line counts without newline
    assert events.complete_files() == [str(path)]


def test_a_file_that_grows_after_it_looked_complete_is_read_on(tmp_path):
    path = tmp_path / "updates.jsonl"
    events = DirectoryEvents(str(tmp_path), settle=0)
    path.write_text('{"n": 1}\n{"n": 2}')
    assert [r.line for r in events.read_new_lines()] == [1]
    assert events.read_new_lines() == [] and events.complete_files() == []   # no newline: not the end
    with open(path, "a") as handle:
        handle.write('\n{"n": 3}\n')
    assert [r.line for r in events.read_new_lines()] == [2, 3]
    assert events.read_new_lines() == [] and events.complete_files() == [str(path)]
    with open(path, "a") as handle:
        handle.write('{"n": 4}\n')
    assert [(r.line, r.data) for r in events.read_new_lines()] == [(4, b'{"n": 4}')]
    assert events.complete_files() == []


def _start(watched: Path, db: Path, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run", "--definitions", BANK, "--input", str(watched), "--follow",
         "--stop-after", "300", "--database-url", f"sqlite:///{db}", "--dead-letters", str(tmp_path / "dl")],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _wait_until_running(process: subprocess.Popen) -> None:
    for line in process.stderr:
        if line.startswith("running "):
            return
    raise AssertionError(f"the run ended before it started: {process.wait()}")


def _counts(db: Path) -> tuple:
    with sqlite3.connect(db) as connection:
        return tuple(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                     for table in ("user_records", "user_txn_aggregates"))


def _rows_written(db: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _counts(db)[0] > 0:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    raise AssertionError("no row written")


def test_sigterm_ends_the_input_and_drains_every_buffer_before_exit(tmp_path, sample):
    """SIGTERM (what a service manager sends) right after the start: every record of the file is
    still delivered, then the file is marked done and the run exits 0."""
    watched, db = tmp_path / "in", tmp_path / "out.db"
    watched.mkdir()
    (watched / "bank.jsonl").write_text(sample.read_text())
    process = _start(watched, db, tmp_path)
    try:
        _wait_until_running(process)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err[-3000:]
    assert "SIGTERM: ending the input and draining" in err
    assert _counts(db) == (40, 40)
    assert sorted(os.listdir(watched)) == ["bank.jsonl.done"]


def test_a_killed_run_leaves_its_files_to_be_read_again(tmp_path, sample):
    """kill -9 once rows are being written: the file is not marked done, so the same command reads it
    again and every record is delivered (at least once)."""
    watched, db = tmp_path / "in", tmp_path / "out.db"
    watched.mkdir()
    (watched / "bank.jsonl").write_text(sample.read_text())
    process = _start(watched, db, tmp_path)
    try:
        _wait_until_running(process)
        _rows_written(db)
        process.kill()
        process.wait(timeout=30)
    finally:
        process.kill()
    assert sorted(os.listdir(watched)) == ["bank.jsonl"]
    (watched / "STOP").touch()
    again = _start(watched, db, tmp_path)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-3000:]
    records, aggregates = _counts(db)
    assert aggregates == 40 and records >= 40
    assert sorted(os.listdir(watched)) == ["STOP", "bank.jsonl.done"]


def test_follow_refuses_a_runner_that_would_not_read_the_directory(tmp_path, capsys):
    """Prism and the portable runners replay only a TestStream's built-in events: with the directory's
    event service they read nothing and report success (measured on Prism: 0 of 856 records)."""
    from pipelines.__main__ import main
    code = main(["run", "--definitions", BANK, "--input", str(tmp_path), "--follow", "--runner", "PrismRunner",
                 "--database-url", f"sqlite:///{tmp_path / 'out.db'}", "--dead-letters", str(tmp_path / "dl")])
    assert code == 2
    assert "--follow runs on the DirectRunner only (--runner BundleBasedDirectRunner), not PrismRunner" in \
        capsys.readouterr().err
