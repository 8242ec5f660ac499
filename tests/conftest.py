"""Shared fixtures: a fresh registry per test, and the real databases of this machine.

Database tests read ``SINKS_TEST_POSTGRES_URL`` / ``SINKS_TEST_MYSQL_URL`` (the servers
``tests/services.sh`` starts). When the server is unreachable they skip with one line, or fail
when ``CI=true``. Each test run works in a database of its own on each server, made when first
needed and dropped at the end, so runs side by side never see each other's tables.
"""
import os
import uuid
from typing import Iterator, Optional

import pytest
import sqlalchemy

from sinks import DataFrame, FeatureTime, MySQLSource, PostgreSQLSource, Primary, SQLiteSource, features
from sinks.registry import Registry

POSTGRES_URL = os.environ.get("SINKS_TEST_POSTGRES_URL", "postgresql+psycopg2://root@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("SINKS_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture(autouse=True)
def registry():
    """Definitions made inside a test go to a registry of their own."""
    with Registry().activate() as fresh:
        yield fresh


def _run_database(server_url: str) -> Iterator[str]:
    """A database of this test run's own on the server ``server_url`` names; dropped afterwards."""
    server = sqlalchemy.make_url(server_url)
    name = f"sinks_test_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(server, connect_args={"connect_timeout": 3},
                                      isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except Exception as error:  # any failure to connect means "no server here"
        engine.dispose()
        reason = f"{server.get_backend_name()} server unreachable ({type(error).__name__})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            if server.get_backend_name() == "postgresql":
                connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    yield from _run_database(POSTGRES_URL)


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    yield from _run_database(MYSQL_URL)


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def database(request, tmp_path):
    """Each SQL database of this machine in turn, and a SQLite file."""
    if request.param == "postgresql":
        return PostgreSQLSource(url=request.getfixturevalue("postgres_url"))
    if request.param == "mariadb":
        return MySQLSource(url=request.getfixturevalue("mysql_url"))
    return SQLiteSource(str(tmp_path / "test.db"))


@pytest.fixture
def bank(registry):
    """User, Account and Transfer of the bank example, declared afresh in the test's registry."""
    @features
    class User:
        uuid: Primary[str]
        full_name: str
        email: Optional[str]
        ts: FeatureTime
        account: "Account"
        transfers: "DataFrame[Transfer]"

    @features
    class Account:
        id: str
        user_id: User.uuid
        title: str

    @features
    class Transfer:
        id: str
        user_id: User.uuid
        status: str
        amount: float
        created_at: FeatureTime

    return User, Account, Transfer


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """Sample updates of the bank example: 40 users, their accounts and transfers (JSONL)."""
    from pipelines.__main__ import main
    path = tmp_path_factory.mktemp("sample") / "bank.jsonl"
    bank = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "bank.py")
    assert main(["generate", "--definitions", bank, "--entities", "40", "--out", str(path)]) == 0
    return path
