"""Issue 22 items 7 and 8 through the command line on the bank example: reruns and backfills.

- An upsert sink whose model has a version column (``info={"version": True}``) gets the
  entity's event time there, and a later run over older data never regresses a stored row.
- An append sink whose model declares a unique key appends with ``skip_existing`` on it: a
  run stopped midway then run again over all of the input adds no duplicates.
"""
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipelines.__main__ import main
from tests.test_cli import BANK

TABLES = ("user_records", "user_txn_aggregates")
AGGREGATES = ["--sink", "aggregate_user_transactions"]


def bank_with(tmp_path: Path, replacements: dict) -> str:
    """The bank example with its models changed; a definitions file of its own."""
    text = Path(BANK).read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "bank_versioned.py"
    path.write_text(text)
    return str(path)


VERSIONED = {
    "from sqlalchemy import Float, Integer, String\n":
        "from datetime import datetime\n\nfrom sqlalchemy import DateTime, Float, Integer, String, UniqueConstraint\n",
    "    total: Mapped[float] = mapped_column(Float)\n":
        "    total: Mapped[float] = mapped_column(Float)\n"
        "    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True, info={'version': True})\n",
}


@pytest.fixture
def database(postgres_url):
    def drop():
        engine = sa.create_engine(postgres_url)
        with engine.begin() as connection:
            for table in TABLES:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()
    drop()
    yield postgres_url
    drop()


def run(definitions, lines, url, tmp_path, *extra):
    data = tmp_path / f"input-{len(list(tmp_path.glob('input-*')))}.jsonl"
    data.write_text("".join(lines))
    code = main(["run", "--definitions", definitions, "--input", str(data), "--database-url", url,
                 "--create-tables", "--dead-letters", str(tmp_path / "letters"), *extra])
    assert code == 0


def stored(url, table, order_by, columns):
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text(f'SELECT {", ".join(columns)} FROM "{table}" ORDER BY {order_by}')).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_a_backfill_of_older_data_leaves_the_versioned_aggregates_as_they_are(database, sample, tmp_path):
    definitions = bank_with(tmp_path, VERSIONED)
    lines = Path(sample).read_text().splitlines(keepends=True)
    run(definitions, lines, database, tmp_path, *AGGREGATES)
    after_all = stored(database, "user_txn_aggregates", "user_id", ["user_id", "count", "total", "as_of"])
    assert after_all and all(as_of is not None for *_, as_of in after_all)
    older = lines[:len(lines) // 2]             # the generated input is in event-time order
    run(definitions, older, database, tmp_path, *AGGREGATES)
    assert stored(database, "user_txn_aggregates", "user_id", ["user_id", "count", "total", "as_of"]) == after_all


def test_without_a_version_column_the_same_backfill_regresses_them_and_explain_warns(database, sample, tmp_path,
                                                                                   capsys):
    """What the version column prevents (and why ``explain`` warns about the example's model)."""
    lines = Path(sample).read_text().splitlines(keepends=True)
    run(BANK, lines, database, tmp_path, *AGGREGATES)
    after_all = stored(database, "user_txn_aggregates", "user_id", ["user_id", "count", "total"])
    run(BANK, lines[:len(lines) // 2], database, tmp_path, *AGGREGATES)
    assert stored(database, "user_txn_aggregates", "user_id", ["user_id", "count", "total"]) != after_all
    capsys.readouterr()
    assert main(["explain", "--definitions", BANK]) == 0
    assert "warning: user_txn_aggregates has no version column" in capsys.readouterr().out
    assert main(["explain", "--definitions", bank_with(tmp_path, VERSIONED)]) == 0
    assert "warning: user_txn_aggregates" not in capsys.readouterr().out
