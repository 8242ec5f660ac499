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


WITH_IDENTITY = {
    **VERSIONED,
    '    __tablename__ = "user_records"\n':
        '    __tablename__ = "user_records"\n'
        '    __table_args__ = (UniqueConstraint("uuid", "as_of"),)\n'
        "    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True), info={'event_time': True})\n",
}
RECORDS = ["--sink", "user_data_export"]


def record_rows(url):
    return stored(url, "user_records", "uuid, as_of", ["uuid", "full_name", "title", "as_of"])


@pytest.mark.parametrize("identity", [True, False], ids=["declared identity", "no identity"])
def test_a_run_stopped_midway_then_run_again_appends_no_duplicates(database, sample, tmp_path, identity):
    """Simulated: the first run sees half of the input (what a run killed midway committed), the
    rerun all of it. With the identity declared the table ends as one full run leaves it."""
    definitions = bank_with(tmp_path, WITH_IDENTITY) if identity else BANK
    lines = Path(sample).read_text().splitlines(keepends=True)
    run(definitions, lines, database, tmp_path, *RECORDS)
    columns = ["uuid", "full_name", "title"] + (["as_of"] if identity else [])
    once = stored(database, "user_records", ", ".join(columns), columns)
    engine = sa.create_engine(database)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM user_records"))
    engine.dispose()
    run(definitions, lines[:len(lines) // 2], database, tmp_path, *RECORDS)
    run(definitions, lines, database, tmp_path, *RECORDS)
    rerun = stored(database, "user_records", ", ".join(columns), columns)
    if identity:
        assert rerun == once
        assert all(as_of is not None for *_, as_of in rerun)
    else:   # what the identity prevents: the first half's rows twice
        assert len(rerun) > len(once)


def test_an_append_identity_is_the_one_unique_key_a_model_declares():
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    from transforms.row_identity import append_identity

    class Base(DeclarativeBase):
        pass

    class Plain(Base):
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)

    class ByConstraint(Base):
        __tablename__ = "by_constraint"
        __table_args__ = (sa.UniqueConstraint("uuid", "as_of"),)
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        uuid: Mapped[str] = mapped_column(sa.String(10))
        as_of: Mapped[int] = mapped_column(sa.BigInteger)

    class ByColumn(Base):
        __tablename__ = "by_column"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        event: Mapped[str] = mapped_column(sa.String(10), unique=True)

    class Two(Base):
        __tablename__ = "two"
        __table_args__ = (sa.UniqueConstraint("a"),)
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        a: Mapped[str] = mapped_column(sa.String(10))
        b: Mapped[str] = mapped_column(sa.String(10), unique=True)

    assert append_identity(Plain, "s") is None
    assert append_identity(ByConstraint, "s") == ["uuid", "as_of"]
    assert append_identity(ByColumn, "s") == ["event"]
    with pytest.raises(ValueError, match=r"sink 's': table 'two' declares 2 unique keys"):
        append_identity(Two, "s")
