"""``python -m pipelines`` end to end: generate, run on each input format, dead letters, --sink,
explain, the errors a user can cause, ``./run_local.sh``, and offline Dataflow/Flink options."""
import bz2
import gzip
import json
import os
import shutil
import sqlite3
import stat
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import apache_beam as beam
import pytest
import sqlalchemy
from apache_beam.options.pipeline_options import FlinkRunnerOptions, PortableOptions
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

import sinks
from pipelines.__main__ import main
from pipelines.build import JobSettings, build_job
from pipelines.run import pipeline_options

ROOT = Path(__file__).resolve().parent.parent
BANK = str(ROOT / "examples" / "bank.py")


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def table_counts(db: Path) -> dict:
    with sqlite3.connect(db) as connection:
        return {name: connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                for name in ("user_records", "user_txn_aggregates")}


def summary_column(out: str, sink: str, title: str) -> int:
    """The count of ``sink`` under the column titled ``title`` in a run's summary (cells are
    separated by two spaces or more; titles hold single ones)."""
    import re
    cells = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    header = next(row for row in cells if row[0] == "sink")
    row = next(row for row in cells if row[0] == sink)
    return int(row[header.index(title)].replace(",", ""))


def expected_aggregate(updates: list, user: str) -> tuple:
    """Count and sum of the user's successful transfers in the 60 days up to its latest event."""
    times = [u.get("user.ts") or u.get("account.ts") or u.get("transfer.created_at") for u in updates
             if user in (u.get("user.uuid"), u.get("account.user_id"), u.get("transfer.user_id"))]
    now = max(datetime.fromisoformat(t) for t in times)
    amounts = [u["transfer.amount"] for u in updates if u.get("transfer.user_id") == user
               and u["transfer.status"] == "successful"
               and now - timedelta(days=60) <= datetime.fromisoformat(u["transfer.created_at"]) <= now]
    return len(amounts), sum(amounts)


def test_generate_is_deterministic_and_matches_the_filters(tmp_path, sample):
    again = tmp_path / "again.jsonl"
    assert main(["generate", "--definitions", BANK, "--entities", "40", "--out", str(again)]) == 0
    assert again.read_bytes() == sample.read_bytes()
    updates = read_jsonl(sample)
    assert sum("user.uuid" in u for u in updates) == 40 and sum("account.id" in u for u in updates) == 40
    assert {u["transfer.status"] for u in updates if "transfer.id" in u} >= {"successful"}


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet", "jsonl.gz", "csv.bz2"])
def test_run_each_format_writes_the_same_rows(tmp_path, sample, suffix, capsys):
    source = sample
    if suffix != "jsonl":
        source = tmp_path / f"bank.{suffix}"
        plain = tmp_path / f"bank.{suffix.split('.')[0]}"
        assert main(["generate", "--definitions", BANK, "--entities", "40", "--out", str(plain)]) == 0
        if source != plain:    # compressed: Beam's CompressedFile has no line iterator of its own
            opener = gzip.open if suffix.endswith(".gz") else bz2.open
            with opener(source, "wb") as out:
                out.write(plain.read_bytes())
    db = tmp_path / "out.db"
    code = main(["run", "--definitions", BANK, "--input", str(source), "--database-url", f"sqlite:///{db}",
                 "--dead-letters", str(tmp_path / "dl")])
    assert code == 0
    assert table_counts(db) == {"user_records": 40, "user_txn_aggregates": 40}
    updates = read_jsonl(sample)
    with sqlite3.connect(db) as connection:
        for user in ("u0", "u7", "u39"):
            count, total = connection.execute(
                "SELECT count, total FROM user_txn_aggregates WHERE user_id = ?", (user,)).fetchone()
            want = expected_aggregate(updates, user)
            assert count == want[0] and total == pytest.approx(want[1])
    out = capsys.readouterr().out
    assert "aggregate_user_transactions" in out and f"{len(updates):,} records read" in out
    assert not (tmp_path / "dl").exists()


def test_malformed_records_go_to_owner_only_dead_letter_files(tmp_path, sample, capsys):
    good = sample.read_bytes().splitlines()[:30]
    bad = [b'{"user.uuid": "u1", "user.full_', b"\xff\xfe not utf-8", b'{"nope.id": 1}',
           b'{"user.uuid": "u1", "user.ts": "not a time"}', b"[1, 2, 3]"]
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b"\n".join(good[:10] + bad + good[10:]) + b"\n")
    letters_dir = tmp_path / "letters"
    code = main(["run", "--definitions", BANK, "--input", str(source), "--database-url",
                 f"sqlite:///{tmp_path / 'out.db'}", "--dead-letters", str(letters_dir)])
    assert code == 0
    files = list(letters_dir.iterdir())
    assert files and stat.S_IMODE(letters_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    letters = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(letter["stage"] for letter in letters) == ["parse", "parse", "parse", "read", "read"]
    assert all(letter["error"] and letter["input"] for letter in letters)
    assert "5 dead letter(s) written under" in capsys.readouterr().out


def test_sink_selection_runs_only_the_named_sinks(tmp_path, sample):
    db = tmp_path / "out.db"
    assert main(["run", "--definitions", BANK, "--input", str(sample), "--database-url", f"sqlite:///{db}",
                 "--sink", "aggregate_user_transactions"]) == 0
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"user_txn_aggregates"}


def test_run_against_postgresql(tmp_path, sample, postgres_url):
    from examples.bank import UserRecord, UserTxnAggregate
    engine = sqlalchemy.create_engine(postgres_url)
    for model in (UserRecord, UserTxnAggregate):
        model.__table__.drop(engine, checkfirst=True)
    try:
        assert main(["run", "--definitions", BANK, "--input", str(sample), "--database-url", postgres_url,
                     "--create-tables"]) == 0
        with engine.connect() as connection:
            counts = [connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(m.__table__)).scalar()
                      for m in (UserRecord, UserTxnAggregate)]
            row = connection.execute(sqlalchemy.text(
                "SELECT count, total FROM user_txn_aggregates WHERE user_id = 'u3'")).one()
        assert counts == [40, 40]
        want = expected_aggregate(read_jsonl(sample), "u3")
        assert row.count == want[0] and row.total == pytest.approx(want[1])
    finally:
        for model in (UserRecord, UserTxnAggregate):
            model.__table__.drop(engine, checkfirst=True)
        engine.dispose()


def test_explain_prints_plans_and_writes_the_graph(tmp_path, capsys):
    dot = tmp_path / "graph.dot"
    assert main(["explain", "--definitions", BANK, "--dot", str(dot)]) == 0
    out = capsys.readouterr().out
    assert "sink aggregate_user_transactions (per-row)" in out and "upsert into user_txn_aggregates" in out
    graph = dot.read_text()
    assert graph.startswith("digraph pipeline {") and "State[user]" in graph and "->" in graph


@pytest.mark.parametrize("arguments, message", [
    (["--input", "/nonexistent/*.jsonl"], "no input file matches"),
    (["--sink", "nope"], "no sink named 'nope'"),
    (["--no_such_beam_option", "1"], "unknown option(s): --no_such_beam_option"),
    (["--database-url", "postgresql+psycopg2://nobody@127.0.0.1:1/x"], "cannot use the database"),
])
def test_user_errors_print_one_line(sample, capsys, arguments, message):
    base = {"--definitions": BANK, "--input": str(sample)}
    args = ["run"]
    for flag, value in base.items():
        if flag not in arguments:
            args += [flag, value]
    assert main(args + arguments) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_bad_definitions_print_where(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("from sinks import sink\n\n@sink(buffer_size=0)\ndef f(x: int): pass\n")
    assert main(["explain", "--definitions", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.py:" in err[0]


def test_run_local_sh_fills_local_db(tmp_path):
    """A fresh copy of the project runs ./run_local.sh (sharing this .venv) into its own local.db."""
    copy = tmp_path / "project"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    venv = ROOT / ".venv"
    if not (venv / ".installed").exists():
        pytest.skip("run_local.sh's .venv is not set up here")
    (copy / ".venv").symlink_to(venv)
    # Older than the venv's install stamp, so run_local.sh never reinstalls the shared venv from the copy.
    installed = (venv / ".installed").stat().st_mtime
    os.utime(copy / "setup.py", (installed - 1, installed - 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for run in ("first", "second"):   # a second run starts from a fresh local.db, not appending to it
        done = subprocess.run(["./run_local.sh"], cwd=copy, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert table_counts(copy / "local.db") == {"user_records": 1000, "user_txn_aggregates": 1000}, run
    assert "removing the previous local.db" in done.stderr
    updates = read_jsonl(copy / "data" / "bank_updates.jsonl")
    with sqlite3.connect(copy / "local.db") as connection:
        count, total = connection.execute(
            "SELECT count, total FROM user_txn_aggregates WHERE user_id = 'u42'").fetchone()
    want = expected_aggregate(updates, "u42")
    assert count == want[0] and total == pytest.approx(want[1])
    assert "user_txn_aggregates (1,000 rows, first 5)" in done.stdout


def test_run_local_sh_says_what_it_is_doing_while_it_installs(tmp_path):
    """The first run installs for a minute or two: it says so, step by step (pip is stubbed here)."""
    for name in ("run_local.sh", "setup.py"):
        shutil.copy2(ROOT / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "pip.log"}\n')
    python.chmod(0o755)
    done = subprocess.run(["./run_local.sh", "nonsense"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage:" in done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("run_local.sh: ")]
    assert len(said) == 5 and "installing the project" in said[0] and said[-1] == "run_local.sh: installed"
    assert (tmp_path / "pip.log").read_text().splitlines()[-1] == "-m pip install --quiet -e .[test]"


def test_dataflow_and_flink_options_validate_offline_and_every_dofn_pickles():
    registry = sinks.load(BANK)
    for args in (
        ["--runner", "DataflowRunner", "--project", "my-project", "--region", "europe-west1",
         "--temp_location", "gs://my-bucket/tmp", "--setup_file", "./setup.py"],
        ["--runner", "FlinkRunner", "--flink_master", "localhost:8081", "--environment_type", "LOOPBACK"],
    ):
        options = pipeline_options(args, None, streaming=False)   # raises on any unknown option
        pipeline = beam.Pipeline(options=options, runner="FnApiRunner")
        build_job(pipeline | beam.Create([]), registry, JobSettings(), validate=False)
        runner_name = args[1]
        if runner_name == "DataflowRunner":
            from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
            assert PipelineOptionsValidator(options, DataflowRunner()).validate() == []
        else:
            flink = options.view_as(FlinkRunnerOptions)
            assert (flink.flink_master, options.view_as(PortableOptions).environment_type) == (
                "localhost:8081", "LOOPBACK")
        # The portable form of the job carries every DoFn pickled; reading it back unpickles them all.
        proto = pipeline.to_runner_api()
        assert beam.Pipeline.from_runner_api(proto, pipeline.runner, options) is not None


def test_stream_resolver_turns_raw_messages_into_updates(tmp_path):
    events = [
        {"type": "user", "id": "u1", "name": "Ann", "at": "2026-03-01T00:00:00Z"},
        {"type": "transfer", "id": "t1", "user": "u1", "state": "successful", "cents": 1250,
         "at": "2026-03-02T00:00:00Z"},
        {"type": "transfer", "id": "t2", "user": "u1", "state": "successful", "cents": 250,
         "at": "2026-03-03T00:00:00Z"},
        {"type": "refund", "id": "r1"},
    ]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in events) + "\nnot json at all\n")
    db, letters = tmp_path / "out.db", tmp_path / "letters"
    assert main(["run", "--definitions", "tests.stream_definitions", "--resolver", "bank_events",
                 "--input", str(source), "--database-url", f"sqlite:///{db}", "--dead-letters", str(letters)]) == 0
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT user_id, count, total FROM user_txn_aggregates").fetchall() == [
            ("u1", 2, 15.0)]
    found = [json.loads(line) for f in letters.iterdir() for line in f.read_text().splitlines()]
    assert sorted((f["stage"], f["sink"]) for f in found) == [("resolve", "bank_events")] * 2
    assert {f["error_type"] for f in found} == {"ValueError", "JSONDecodeError"}


def test_follow_reads_files_as_they_arrive_and_loses_nothing(tmp_path, sample):
    """--follow on the DirectRunner with real timers: files renamed into the directory while the
    pipeline runs are processed live; stopping flushes every buffer."""
    import threading
    import time
    watched, db = tmp_path / "incoming", tmp_path / "out.db"
    watched.mkdir()
    lines = sample.read_text().splitlines()
    chunks = [lines[i::4] for i in range(4)]

    def arrive():
        for number, chunk in enumerate(sorted(chunks, key=len)):
            time.sleep(0.7)
            part = tmp_path / f"part-{number}.tmp"
            part.write_text("\n".join(sorted(chunk, key=lambda l: lines.index(l))) + "\n")
            part.rename(watched / f"part-{number}.jsonl")
        time.sleep(1.0)
        (watched / "STOP").touch()

    from examples import bank as bank_module
    bank_module.notifications.clear()
    writer = threading.Thread(target=arrive)
    writer.start()
    started = time.monotonic()
    code = main(["run", "--definitions", BANK, "--input", str(watched), "--follow", "--stop-after", "60",
                 "--database-url", f"sqlite:///{db}", "--dead-letters", str(tmp_path / "dl")])
    writer.join()
    assert code == 0 and time.monotonic() - started < 30
    assert table_counts(db) == {"user_records": 40, "user_txn_aggregates": 40}
    assert sorted(p.name for p in watched.iterdir()) == ["STOP"] + [f"part-{n}.jsonl.done" for n in range(4)]
    updates = read_jsonl(sample)
    with sqlite3.connect(db) as connection:
        count, total = connection.execute(
            "SELECT count, total FROM user_txn_aggregates WHERE user_id = 'u5'").fetchone()
    want = expected_aggregate(updates, "u5")
    assert count == want[0] and total == pytest.approx(want[1])
    # The batch sink (debounce 100ms) was called by its timers while files were still arriving
    # (the DirectRunner runs in this process, so its notifications are here).
    batches = [n for kind, n, *_ in bank_module.notifications if kind == "batch"]
    assert len(batches) >= 2 and sum(batches) == 40


def test_pubsub_and_kafka_inputs_build_through_beams_own_ios():
    from pipelines.sources import SourceError, read_stream
    assert isinstance(read_stream("pubsub://projects/my-project/subscriptions/updates"), beam.io.ReadFromPubSub)
    from apache_beam.io.kafka import ReadFromKafka
    kafka = read_stream("kafka://broker-1:9092,broker-2:9092/feature-updates")
    assert isinstance(kafka.read, ReadFromKafka)   # expanded by Beam's Java service at submit time
    for bad in ("pubsub://projects/p/updates", "kafka://broker:9092"):
        with pytest.raises(SourceError):
            read_stream(bad)
    # A Pub/Sub job for Dataflow builds and validates offline.
    registry = sinks.load(BANK)
    options = pipeline_options(["--runner", "DataflowRunner", "--project", "my-project", "--region", "europe-west1",
                                "--temp_location", "gs://my-bucket/tmp"], None, streaming=True)
    pipeline = beam.Pipeline(options=options, runner="FnApiRunner")
    messages = pipeline | read_stream("pubsub://projects/my-project/subscriptions/updates")
    build_job(messages | beam.Map(json.loads), registry, JobSettings(), validate=False)
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
    assert PipelineOptionsValidator(options, DataflowRunner()).validate() == []
