"""``python -m pipelines``: what the command line promises about its options and exit status.

Every option is checked before anything runs (one line, exit 2); a bug is not reported as a
mistake in the command (exit 1, pointing at --verbose); each shard count reaches what it names;
the write deadline reaches the writer and abandoned writes fail a batch run (exit 3); the
clock of a live run is captured for that run only, and importing the code patches nothing.
"""
import math
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from pipelines import progress
from pipelines.__main__ import main
from tests.test_cli import BANK, ROOT, summary_column

RUN = ["run", "--definitions", BANK]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("WARNING")]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


# -- 6: production code patches nothing on import; a live run's clock is its own -------------

def test_importing_the_command_patches_nothing_in_beam():
    code = (
        "from apache_beam.runners.direct import clock, direct_runner\n"
        "import pipelines.__main__, pipelines.run, pipelines.build, transforms.call, transforms.buffer\n"
        "assert direct_runner.TestClock is clock.TestClock, direct_runner.TestClock\n"
        "import sys\n"
        "assert not [m for m in sys.modules if m == 'tests' or m.startswith('tests.')]\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    production = [p for folder in ("pipelines", "transforms", "sinks") for p in (ROOT / folder).rglob("*.py")]
    assert not [p for p in production if "testing" in p.name]
    assert not [p for p in production if "import tests" in p.read_text() or "from tests" in p.read_text()]


def test_a_live_clock_is_captured_for_its_run_only():
    import apache_beam as beam
    from apache_beam.runners.direct import direct_runner
    from apache_beam.testing.test_stream import TestStream

    from pipelines.live_clock import LiveClock

    before = direct_runner.TestClock     # tests' own TestStream helper may have replaced it
    first, second = LiveClock(), LiveClock()
    seen = _SEEN
    seen.clear()

    def run(clock, seconds):
        events = TestStream().add_elements(["x"]).advance_processing_time(seconds).add_elements(["y"])
        pipeline = beam.Pipeline(runner="BundleBasedDirectRunner")
        pipeline | events | beam.Map(_record_time, clock)
        with clock.capturing():
            result = pipeline.run()
        assert direct_runner.TestClock is before   # restored as soon as run() returns
        result.wait_until_finish()

    run(first, 7)
    run(second, 3)
    assert [t for e, t in seen[:2]] == [0.0, 7.0] and [t for e, t in seen[2:]] == [0.0, 3.0]
    assert first() == 7.0 and second() == 3.0   # two runs, two clocks
    first.release()
    with pytest.raises(RuntimeError):
        first()


_SEEN: list = []


def _record_time(element, clock):
    """Runs in this process (the BundleBasedDirectRunner), by reference, so ``_SEEN`` is this one."""
    _SEEN.append((element, clock()))


# -- 5: a bug is not a mistake in the command ------------------------------------------------

@pytest.mark.parametrize("bug", [KeyError("surprise"), ValueError("surprise"), OSError(5, "surprise")])
def test_an_internal_error_exits_1_pointing_at_verbose(sample, capsys, monkeypatch, bug):
    def broken(*args, **kwargs):
        raise bug
    monkeypatch.setattr("pipelines.run.build_job", broken)
    assert main(RUN + ["--input", str(sample)]) == 1
    line = one_error_line(capsys)
    assert line.startswith("internal error:") and "surprise" in line and "--verbose" in line
    with pytest.raises(type(bug)):
        main(RUN + ["--input", str(sample), "--verbose"])


def test_a_definitions_file_that_raises_is_a_mistake_in_the_command(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("raise KeyError('no such thing')\n")
    assert main(["explain", "--definitions", str(broken)]) == 2
    assert "broken.py" in one_error_line(capsys)


# -- 4: one name per meaning, each reaching what it names -------------------------------------

def test_the_dead_beam_num_shards_option_is_refused(sample, capsys):
    assert main(RUN + ["--input", str(sample), "--num_shards", "4"]) == 2
    assert "unknown option(s): --num_shards" in one_error_line(capsys)


def test_num_shards_splits_a_paced_sinks_buffers(tmp_path, sample, capsys):
    calls = {}
    for shards in (1, 4):
        assert main(RUN + ["--input", str(sample), "--database-url", f"sqlite:///{tmp_path / f'{shards}.db'}",
                           "--sink", "batch_user_updates", "--num-shards", str(shards)]) == 0
        calls[shards] = summary_column(capsys.readouterr().out, "batch_user_updates", "calls")
    # 40 users' updates fit one buffer of 100: one call with one shard, one per shard with four.
    assert calls == {1: 1, 4: 4}


def test_write_shards_splits_an_upsert_tables_writes(tmp_path, sample, capsys):
    batches = {}
    for shards in (1, 4):
        assert main(RUN + ["--input", str(sample), "--database-url", f"sqlite:///{tmp_path / f'{shards}.db'}",
                           "--sink", "aggregate_user_transactions", "--write-shards", str(shards)]) == 0
        out = capsys.readouterr().out
        batches[shards] = summary_column(out, "aggregate_user_transactions", "write batches")
        assert "user_txn_aggregates 40 rows" in out
    assert batches[4] > batches[1]


# -- 13: every option checked before anything runs ---------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    (["--sink_retry_attempts", "0"], "--sink_retry_attempts 0: must be at least 1"),
    (["--sink_retry_attempts", "-2"], "--sink_retry_attempts -2: must be at least 1"),
    (["--sink_retry_attempts", "many"], "--sink_retry_attempts: invalid int value: 'many'"),
    (["--sink_timeout", "-1"], "--sink_timeout -1: must be a positive number of seconds"),
    (["--sink_retry_base_delay", "-1"], "--sink_retry_base_delay -1: must be at least 0"),
    (["--stop-after", "5"], "--stop-after: only with --follow"),
    (["--follow", "--stop-after", "-5"], "--stop-after -5: must be a positive number of seconds"),
    (["--show-rows", "-1"], "--show-rows -1: must be at least 0"),
    (["--num-shards", "0"], "--num-shards 0: must be at least 1"),
    (["--write-shards", "0"], "--write-shards 0: must be at least 1"),
    (["--write-deadline", "-1"], "--write-deadline -1: must be at least 0"),
    (["--allowed-lateness", "soon"], "--allowed-lateness: 'soon' is not a duration"),
    (["--max-clock-skew", "a while"], "--max-clock-skew: 'a while' is not a duration"),
    (["--max-clock-skew", "-5"], "--max-clock-skew: '-5' is not a duration"),
    (["--as-of", "yesterday"], "--as-of: 'yesterday' is not a time: use ISO 8601"),
    (["--as-of", "now", "--follow"], "--as-of: only for a bounded input"),
    (["--database-url", "postgresql+psycopg2://root@127.0.0.1:abc/test"],
     "--database-url: the port must be a number from 1 to 65535"),
    (["--database-url", "postgresql+psycopg2://root@127.0.0.1:99999/test"],
     "--database-url: port 99999 is out of range (1 to 65535)"),
    (["--database-url", "mysql+pymysql://root@127.0.0.1:3306/test?charset=klingon"],
     "--database-url: unknown character set 'klingon' for MySQL/MariaDB (try utf8mb4)"),
    (["--database-url", "oracle://scott@db/orcl"], "--database-url: unsupported database 'oracle'"),
    (["--database-url", "not a url"], "--database-url: not a database URL"),
    (["--runner", "NoSuchRunner"], "--runner: Unexpected pipeline runner: NoSuchRunner"),
])
def test_a_bad_option_is_one_line_before_anything_runs(tmp_path, sample, capsys, monkeypatch, arguments, message):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the job was built before the options were checked")
    monkeypatch.setattr("pipelines.run.build_job", must_not_run)
    assert main(RUN + ["--input", str(sample)] + arguments) == 2
    assert message in one_error_line(capsys)


def test_an_unwritable_dead_letter_directory_is_refused_before_the_run(tmp_path, sample, capsys, monkeypatch):
    monkeypatch.setattr("pipelines.run.build_job", lambda *a, **k: pytest.fail("the job was built"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(RUN + ["--input", str(sample), "--dead-letters", str(blocker / "letters")]) == 2
    assert f"--dead-letters {blocker / 'letters'}: cannot write there" in one_error_line(capsys)


def test_a_bad_port_in_a_definitions_source_is_one_line(tmp_path, sample, capsys):
    definitions = tmp_path / "bank_on_a_bad_port.py"
    definitions.write_text((ROOT / "examples" / "bank.py").read_text().replace(
        "PostgreSQLSource()", 'PostgreSQLSource(host="127.0.0.1", port=70000)'))
    assert main(["run", "--definitions", str(definitions), "--input", str(sample), "--sink", "user_data_export"]) == 2
    assert "sink user_data_export: PostgreSQLSource: port 70000 is out of range (1 to 65535)" in one_error_line(capsys)


@pytest.mark.parametrize("arguments, message", [
    (["--entities", "-5"], "--entities -5: must be at least 1"),
    (["--days", "0"], "--days 0: must be at least 1"),
    (["--out", "/nonexistent/dir/x.jsonl"], "--out /nonexistent/dir/x.jsonl: no such directory"),
    (["--out", "/tmp/x.txt"], "--out /tmp/x.txt: name the file .jsonl, .csv or .parquet"),
])
def test_generate_checks_its_options(tmp_path, capsys, arguments, message):
    base = ["generate", "--definitions", BANK]
    if "--out" not in arguments:
        base += ["--out", str(tmp_path / "x.jsonl")]
    assert main(base + arguments) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "x.jsonl").exists()


# -- 11: the write deadline reaches the writer; abandoned writes fail a batch run --------------

@pytest.mark.parametrize("arguments, deadline", [
    ([], 300.0), (["--write-deadline", "2.5"], 2.5), (["--write-deadline", "0"], math.inf)])
def test_write_deadline_reaches_the_sql_writers(sample, monkeypatch, arguments, deadline):
    seen = []

    def capture(updates, registry, settings, **kwargs):
        seen.append(settings)
        raise KeyError("stop here")
    monkeypatch.setattr("pipelines.run.build_job", capture)
    assert main(RUN + ["--input", str(sample), "--allowed-lateness", "10m"] + arguments) == 1
    (settings,) = seen
    assert settings.write_retry.deadline == deadline
    assert settings.allowed_lateness == timedelta(minutes=10)


@pytest.mark.parametrize("arguments, as_of, skew", [
    ([], None, timedelta(days=1)),
    (["--as-of", "2024-03-01T12:00:00", "--max-clock-skew", "2h"],
     datetime(2024, 3, 1, 12, tzinfo=timezone.utc), timedelta(hours=2)),
    (["--as-of", "2024-03-01T12:00:00+02:00", "--max-clock-skew", "infinity"],
     datetime(2024, 3, 1, 10, tzinfo=timezone.utc), None),
])
def test_the_window_clock_options_reach_the_job(sample, monkeypatch, arguments, as_of, skew):
    seen = []

    def capture(updates, registry, settings, **kwargs):
        seen.append(settings)
        raise KeyError("stop here")
    monkeypatch.setattr("pipelines.run.build_job", capture)
    assert main(RUN + ["--input", str(sample)] + arguments) == 1
    (settings,) = seen
    assert settings.as_of == as_of
    assert settings.max_clock_skew == skew


def test_as_of_now_is_the_wall_clock_when_the_command_starts(sample, monkeypatch):
    seen = []

    def capture(updates, registry, settings, **kwargs):
        seen.append(settings)
        raise KeyError("stop here")
    monkeypatch.setattr("pipelines.run.build_job", capture)
    before = datetime.now(timezone.utc)
    assert main(RUN + ["--input", str(sample), "--as-of", "now"]) == 1
    assert before <= seen[0].as_of <= datetime.now(timezone.utc)


def test_a_live_run_retries_writes_for_ever_by_default(tmp_path, monkeypatch):
    seen = []

    def capture(updates, registry, settings, **kwargs):
        seen.append(settings)
        raise KeyError("stop here")
    monkeypatch.setattr("pipelines.run.build_job", capture)
    assert main(RUN + ["--input", str(tmp_path), "--follow", "--stop-after", "1"]) == 1
    assert seen[0].write_retry.deadline == math.inf


def test_a_batch_run_with_rows_not_written_exits_3_and_says_so(tmp_path, sample, capsys):
    db = tmp_path / "out.db"
    with sqlite3.connect(db) as connection:   # the table refuses some rows: they cannot be written
        connection.execute("CREATE TABLE user_records (id INTEGER PRIMARY KEY, uuid VARCHAR NOT NULL, "
                           "full_name VARCHAR, title VARCHAR CHECK (title NOT LIKE '%3%'))")
    code = main(RUN + ["--input", str(sample), "--database-url", f"sqlite:///{db}", "--sink", "user_data_export",
                       "--dead-letters", str(tmp_path / "dl")])
    out = capsys.readouterr().out
    assert code == 3
    refused = summary_column(out, "user_data_export", "write dead letters")
    assert refused > 0
    assert f"NOT WRITTEN: {refused:,} row(s)" in out


# -- issue 21: what a newcomer sees ------------------------------------------------------------

def test_explain_spells_durations_and_unset_sources_like_a_definition(capsys, monkeypatch):
    for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert main(["explain", "--definitions", BANK]) == 0
    out = capsys.readouterr().out
    assert "pacing: buffer_size=100, debounce=100ms, max_delay=1s" in out
    assert "keeps user.transfers rows for 60d behind" in out
    assert "at PostgreSQLSource (from the environment: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD not set)" in out
    assert "postgresql+psycopg2://'" not in out and "0:00:00" not in out


def test_explain_shows_each_sinks_windows_and_plans_the_sinks_of_a_class_together(tmp_path, capsys):
    definitions = tmp_path / "two_readers.py"
    definitions.write_text(
        "from sinks import DataFrame, FeatureTime, Primary, after, features, sink\n"
        "@features\nclass User:\n    uuid: Primary[str]\n    ts: FeatureTime\n"
        "    transfers: 'DataFrame[Transfer]'\n"
        "@features\nclass Transfer:\n    id: str\n    user_id: User.uuid\n    amount: float\n"
        "    created_at: FeatureTime\n"
        "@sink\ndef recent(uid: User.uuid, txns: User.transfers[after(days_ago=60)]) -> None:\n    pass\n"
        "@sink\ndef everything(uid: User.uuid, txns: User.transfers) -> None:\n    pass\n")
    assert main(["explain", "--definitions", str(definitions)]) == 0
    recent = capsys.readouterr().out.split("\n\n")[0]
    assert "windows: txns after(60d) on Transfer.created_at, re-evaluated by the stream's event-time clock" in recent
    # Another sink of User reads every transfer: none is pruned, whatever this sink's window says.
    assert "keeps every user.transfers row" in recent
    assert "keeps user.transfers rows for 60d" not in recent


@pytest.mark.parametrize("value, shown", [
    (timedelta(milliseconds=100), "100ms"), (timedelta(minutes=90), "1h30m"), (timedelta(days=60), "60d"),
    (timedelta(0), "0s"), (timedelta(seconds=1, milliseconds=5), "1s5ms"), (timedelta.max, "infinity")])
def test_durations_are_shown_in_chalks_grammar(value, shown):
    from pipelines.explain import show_duration
    from sinks.durations import parse_duration
    assert show_duration(value) == shown
    assert parse_duration(shown) == value


@pytest.mark.parametrize("source, shown", [
    ("PostgreSQLSource(url='postgresql+psycopg2://ann:secret@db:5433/x?password=secret')",
     "PostgreSQLSource('postgresql+psycopg2://ann:***@db:5433/x')"),
    ("MySQLSource(host='db', db='x')", "MySQLSource('mysql+pymysql://db/x')"),
    ("MySQLSource(name='shop')", "MySQLSource (from the environment: shop_MYSQL_HOST, shop_MYSQL_TCP_PORT, "
                                 "shop_MYSQL_DATABASE, shop_MYSQL_USER, shop_MYSQL_PWD not set)"),
    ("SQLiteSource('local.db')", "SQLiteSource(local.db)"),
    ("SQLiteSource()", "SQLiteSource (in memory)"),
])
def test_explain_says_where_a_source_writes_without_secrets(source, shown):
    import sinks.integrations
    from pipelines.explain import describe_source
    assert describe_source(eval(source, vars(sinks.integrations))) == shown


def test_explain_of_a_file_without_sinks_is_an_error(tmp_path, capsys):
    empty = tmp_path / "nothing.py"
    empty.write_text("from sinks import features\n")
    assert main(["explain", "--definitions", str(empty)]) == 2
    assert "defines no sink" in one_error_line(capsys)


def test_shown_rows_have_no_float_noise(tmp_path, sample, capsys):
    from pipelines.summary import show_value
    assert show_value(1322.5800000000002) == "1322.58" and show_value(0.1 + 0.2) == "0.3"
    assert show_value(1e-20) == "1e-20" and show_value(12) == "12"
    assert main(RUN + ["--input", str(sample), "--database-url", f"sqlite:///{tmp_path / 'o.db'}",
                       "--sink", "aggregate_user_transactions", "--show-rows", "40"]) == 0
    shown = capsys.readouterr().out.split("user_txn_aggregates (40 rows, first 40):")[1]
    assert "00000000" not in shown and "99999999" not in shown


def test_the_summary_counts_upserts_and_the_rows_a_table_holds(tmp_path, sample, capsys):
    assert main(RUN + ["--input", str(sample), "--database-url", f"sqlite:///{tmp_path / 'o.db'}"]) == 0
    out = capsys.readouterr().out
    assert summary_column(out, "aggregate_user_transactions", "upserts") >= 40
    assert "tables now hold: user_records 40 rows, user_txn_aggregates 40 rows" in out
    assert "upserted" not in out and "updates parsed; 0 dead letters from parsing and joining" in out


def test_progress_shows_only_on_a_terminal_with_time_left(tmp_path, sample, capsys, monkeypatch):
    monkeypatch.setattr(progress.ShowProgress.__init__, "__defaults__", (None, 0.0))
    monkeypatch.setattr(progress.ShowProgress, "process", _every_update(progress.ShowProgress.process))
    db = f"sqlite:///{tmp_path / 'o.db'}"
    assert main(RUN + ["--input", str(sample), "--database-url", db, "--sink", "user_data_export"]) == 0
    assert "updates (" not in capsys.readouterr().err          # stderr is not a terminal here
    monkeypatch.setattr(progress, "wanted", lambda: True)
    total = len(sample.read_text().splitlines())
    assert main(RUN + ["--input", str(sample), "--database-url", db, "--sink", "user_data_export"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("read ")]
    assert lines and f"of {total:,} updates" in lines[-1] and "s left" in lines[-1]


def _every_update(process):
    """``ShowProgress.process`` printing at every update, not every 1,024th (a test has few)."""
    def every(self, update):
        self._count |= 1023
        yield from process(self, update)
    return every


def test_progress_line_says_rate_and_time_left():
    assert progress.progress_line(1000, 2.0, 3000) == "read 1,000 of 3,000 updates (500/s), about 4 s left"
    assert progress.progress_line(1000, 2.0, None) == "read 1,000 updates (500/s)"


def test_a_missing_table_says_which_flag_creates_it(sample, postgres_url, capsys):
    assert main(RUN + ["--input", str(sample), "--database-url", postgres_url, "--sink", "user_data_export"]) == 2
    line = one_error_line(capsys)
    assert "table 'user_records' does not exist" in line and "pass --create-tables" in line
