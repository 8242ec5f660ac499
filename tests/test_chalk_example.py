"""examples/chalk_surface.py, a definitions file using all of Chalk's surface this project takes,
loads and runs through ``python -m pipelines run`` into PostgreSQL (issue 21's acceptance)."""
from pathlib import Path

import sqlalchemy

import sinks
from pipelines.__main__ import main

UPDATES = Path(__file__).with_name("chalk_surface_updates.jsonl")


def test_the_chalk_surface_example_loads():
    registry = sinks.load("examples/chalk_surface.py")
    assert list(registry.sinks) == ["shopper_spend", "trip_log", "borrower_exposure", "book_shelf"]
    spec = registry.sink("shopper_spend").spec
    assert (spec.environment, spec.tags, spec.machine_type) == (("prod", "staging"), ("team:growth",),
                                                                 "n2-standard-2")


def test_the_chalk_surface_example_runs_into_postgresql(tmp_path, postgres_url, capsys):
    from examples.chalk_surface import Base
    engine = sqlalchemy.create_engine(postgres_url)
    tables = Base.metadata.sorted_tables
    try:
        assert main(["run", "--definitions", "examples/chalk_surface.py", "--input", str(UPDATES),
                     "--database-url", postgres_url, "--create-tables", "--environment", "prod",
                     "--dead-letters", str(tmp_path / "letters")]) == 0
        assert "11 updates parsed; 0 dead letters from parsing and joining" in capsys.readouterr().out
        with engine.connect() as connection:
            rows = {table.name: [tuple(r) for r in connection.execute(sqlalchemy.select(table))]
                    for table in tables}
    finally:
        Base.metadata.drop_all(engine)
        engine.dispose()
    # full price: p1 and p3 (coupon == None); with a coupon: p2; online (web, app): 12.5 + 7.0
    assert rows["shopper_spend"] == [("s1", 2, 1, 19.5)]
    assert rows["trip_log"] == [(1, "t1", "Bo", "pro", "fleet")]
    # tradelines with balance >= 0: 100 + 50; opened before two years ago: tl1 (2020)
    assert rows["borrower_exposure"] == [("u1", 150.0, 1)]


def test_explain_shows_what_chalks_keywords_declared(capsys):
    assert main(["explain", "--definitions", "examples/chalk_surface.py"]) == 0
    out = capsys.readouterr().out
    assert "input kind: Book.kind (default 'paperback')" in out
    assert "deployed: environment prod, staging; tags team:growth; machine_type n2-standard-2" in out
    assert "PostgreSQLSource (from the environment: PGHOST" in out or "PostgreSQLSource('postgresql" in out


def test_explain_shows_class_and_feature_options(tmp_path, capsys):
    path = tmp_path / "options_explain_defs.py"
    path.write_text(
        "from sinks import feature, features, sink\n"
        "@features(owner='risk@bank.example', tags=['pii'], max_staleness='1d')\n"
        "class Loan:\n"
        "    id: str\n"
        "    rate: float = feature(min=0, max=1, strict=True, version=2)\n"
        "    note: str = feature(max_length=50)\n"
        "@sink\n"
        "def rates(lid: Loan.id, rate: Loan.rate, note: Loan.note):\n"
        "    pass\n")
    assert main(["explain", "--definitions", str(path)]) == 0
    out = capsys.readouterr().out
    assert "class Loan: owner risk@bank.example; tags pii; max_staleness 1d" in out
    assert "input rate: Loan.rate (min=0, max=1 (strict: breaking updates are refused); version 2)" in out
    assert "input note: Loan.note (max_length=50 (not strict: breaks are counted))" in out
