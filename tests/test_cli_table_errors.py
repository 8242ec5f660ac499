"""Issue 22 item 10 through the command line: a table the run cannot write at all (a login without
INSERT privilege) stops the run at once, non-zero, with one line naming the sink and the table;
a table that does not match its class does the same before anything runs."""
import time
import uuid

import pytest
import sqlalchemy as sa

from pipelines.__main__ import main
from tests.test_cli_faults import BANK

SINKS = ["--sink", "user_data_export", "--sink", "aggregate_user_transactions"]


@pytest.fixture
def bank_tables(postgres_url, sample, tmp_path):
    """The bank example's two tables, made by a first run as the database's owner; dropped after."""
    assert main(["run", "--definitions", BANK, "--input", str(sample), "--database-url", postgres_url,
                 "--create-tables", "--dead-letters", str(tmp_path / "first"), *SINKS]) == 0
    yield postgres_url
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        for table in ("user_records", "user_txn_aggregates"):
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
    engine.dispose()


@pytest.fixture
def reader_url(bank_tables):
    """A login that may read the bank tables and not write them."""
    name = f"sinks_reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(bank_tables)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE ROLE {name} LOGIN PASSWORD 'reader'"))
        connection.execute(sa.text(f"GRANT SELECT ON user_records, user_txn_aggregates TO {name}"))
    yield sa.make_url(bank_tables).set(username=name, password="reader").render_as_string(False)
    with admin.begin() as connection:
        connection.execute(sa.text(f"DROP OWNED BY {name}"))
        connection.execute(sa.text(f"DROP ROLE {name}"))
    admin.dispose()


def test_a_login_without_insert_privilege_stops_the_run_with_one_line(reader_url, sample, tmp_path, capsys):
    started = time.monotonic()
    code = main(["run", "--definitions", BANK, "--input", str(sample), "--database-url", reader_url,
                 "--dead-letters", str(tmp_path / "letters"), *SINKS])
    seconds = time.monotonic() - started
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "internal"))]
    assert code == 2
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: sink '")
    assert "cannot write to table 'user_" in errors[0] and "permission denied" in errors[0]
    assert len(errors[0]) < 300
    assert seconds < 60
    assert not list((tmp_path / "letters").glob("*.jsonl")) or all(
        p.stat().st_size == 0 for p in (tmp_path / "letters").glob("*.jsonl"))   # no per-row dead letters


def test_a_table_that_does_not_match_its_class_stops_the_run_before_it_starts(bank_tables, sample, tmp_path,
                                                                                capsys):
    engine = sa.create_engine(bank_tables)
    with engine.begin() as connection:
        connection.execute(sa.text('ALTER TABLE user_txn_aggregates DROP COLUMN "total"'))
    engine.dispose()
    code = main(["run", "--definitions", BANK, "--input", str(sample), "--database-url", bank_tables,
                 "--dead-letters", str(tmp_path / "letters"), *SINKS])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "internal"))]
    assert code == 2
    assert errors == ["error: sink 'aggregate_user_transactions': table 'user_txn_aggregates' has no column "
                      "'total' (mapped by UserTxnAggregate)"]
