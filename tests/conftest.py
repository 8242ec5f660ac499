"""Shared fixtures: a fresh registry per test, and the real databases of this machine.

Database tests read ``SINKS_TEST_POSTGRES_URL`` / ``SINKS_TEST_MYSQL_URL``. When the
server is unreachable they skip with one line, or fail when ``CI=true``.
"""
import os
from typing import Optional

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


def _reachable(url: str) -> str:
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as error:  # any failure to connect means "no server here"
        reason = f"{url.split('://')[0]} server unreachable ({type(error).__name__})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _reachable(POSTGRES_URL)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return _reachable(MYSQL_URL)


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
