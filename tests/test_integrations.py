"""SQL sources: settings from arguments or environment, hidden passwords, real connections."""
import pickle

import pytest
import sqlalchemy

from sinks import MySQLSource, PostgreSQLSource, SQLiteFileSource, SQLiteInMemorySource, SQLiteSource

SECRET = "s3cr3t-pa55"


def test_postgres_reads_pg_environment(monkeypatch):
    for key, value in {"PGHOST": "db.example", "PGPORT": "6543", "PGDATABASE": "bank",
                       "PGUSER": "ann", "PGPASSWORD": SECRET}.items():
        monkeypatch.setenv(key, value)
    source = PostgreSQLSource()
    url = source.url
    assert (url.host, url.port, url.database, url.username, url.password) == (
        "db.example", 6543, "bank", "ann", SECRET)
    assert url.drivername == "postgresql+psycopg2"


def test_named_source_reads_prefixed_environment(monkeypatch):
    monkeypatch.setenv("PGHOST", "wrong")
    monkeypatch.setenv("RISK_PGHOST", "risk.example")
    monkeypatch.setenv("RISK_PGDATABASE", "risk")
    source = PostgreSQLSource(name="RISK")
    assert source.url.host == "risk.example" and source.url.database == "risk"


def test_arguments_win_over_environment(monkeypatch):
    monkeypatch.setenv("PGHOST", "env-host")
    assert PostgreSQLSource(host="arg-host").url.host == "arg-host"


def test_mysql_reads_mysql_environment(monkeypatch):
    for key, value in {"MYSQL_HOST": "m.example", "MYSQL_TCP_PORT": "3307", "MYSQL_DATABASE": "bank",
                       "MYSQL_USER": "bob", "MYSQL_PWD": SECRET}.items():
        monkeypatch.setenv(key, value)
    url = MySQLSource().url
    assert (url.host, url.port, url.database, url.username, url.password) == (
        "m.example", 3307, "bank", "bob", SECRET)
    assert url.drivername == "mysql+pymysql"


def test_sqlite_spellings(tmp_path):
    path = str(tmp_path / "x.db")
    assert SQLiteSource(path).url.database == path
    assert SQLiteFileSource(path).filename == path
    assert SQLiteInMemorySource().url.database is None


@pytest.mark.parametrize("source", [
    PostgreSQLSource(host="h", user="u", password=SECRET),
    MySQLSource(host="h", user="u", password=SECRET),
    PostgreSQLSource(url=f"postgresql+psycopg2://u:{SECRET}@h/db"),
])
def test_password_never_shown(source):
    assert SECRET not in repr(source)
    assert SECRET not in str(source.url) and SECRET not in repr(source.url)
    assert "***" in repr(source)


def test_sources_pickle_without_an_engine():
    source = PostgreSQLSource(host="h", user="u", password=SECRET, engine_args={"pool_size": 2})
    source.create_engine()
    restored = pickle.loads(pickle.dumps(source))
    assert restored.url.password == SECRET and restored.engine_args == {"pool_size": 2}


def _select_one(source):
    engine = source.create_engine()
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text("SELECT 1")).scalar()
    finally:
        engine.dispose()


def test_engine_reaches_real_postgres(postgres_url):
    assert _select_one(PostgreSQLSource(url=postgres_url)) == 1


def test_engine_reaches_real_mariadb(mysql_url):
    assert _select_one(MySQLSource(url=mysql_url)) == 1


def test_engine_reaches_sqlite(tmp_path):
    assert _select_one(SQLiteSource(str(tmp_path / "x.db"))) == 1


def test_engine_has_pre_ping():
    assert SQLiteSource().create_engine().pool._pre_ping
