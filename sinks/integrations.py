"""SQL databases that integration sinks write to.

Unset connection fields come from the usual environment variables, so the
bare ``PostgreSQLSource()`` of a definitions file works wherever ``PGHOST``
and friends are set. Sources pickle as plain settings (engines are made on
workers) and never show their password in a ``repr``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import sqlalchemy
from sqlalchemy.engine import URL, Engine


class SQLSource:
    """A SQL database reached through SQLAlchemy."""

    drivername = ""
    _env: Dict[str, str] = {}

    def __init__(self, host: Optional[str] = None, port: Optional[int] = None, db: Optional[str] = None,
                 user: Optional[str] = None, password: Optional[str] = None, name: Optional[str] = None,
                 engine_args: Optional[Dict[str, Any]] = None, url: Optional[str] = None) -> None:
        self.name = name
        self.engine_args = dict(engine_args or {})
        self._url_override = url
        prefix = f"{name}_" if name else ""

        def setting(value: Any, key: str) -> Any:
            if value is not None or key not in self._env:
                return value
            return os.environ.get(prefix + self._env[key]) or None

        self.host = setting(host, "host")
        port_value = setting(port, "port")
        self.port = int(port_value) if port_value is not None else None
        self.db = setting(db, "db")
        self.user = setting(user, "user")
        self._password = setting(password, "password")

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL (its ``str`` and ``repr`` mask the password)."""
        if self._url_override is not None:
            return sqlalchemy.make_url(self._url_override)
        return URL.create(self.drivername, username=self.user, password=self._password,
                          host=self.host, port=self.port, database=self.db)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def create_engine(self, **overrides: Any) -> Engine:
        """A new engine with ``pool_pre_ping`` on; call it on the worker, in ``DoFn.setup``."""
        args = {"pool_pre_ping": True, **self.engine_args, **overrides}
        return sqlalchemy.create_engine(self.url, **args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url.render_as_string(hide_password=True)!r})"


class PostgreSQLSource(SQLSource):
    """PostgreSQL through psycopg2; defaults from ``PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD``
    (prefixed ``{name}_`` when ``name=`` is given)."""

    drivername = "postgresql+psycopg2"
    _env = {"host": "PGHOST", "port": "PGPORT", "db": "PGDATABASE", "user": "PGUSER",
            "password": "PGPASSWORD"}


class MySQLSource(SQLSource):
    """MySQL or MariaDB through PyMySQL (extra ``mysql``); defaults from ``MYSQL_HOST
    MYSQL_TCP_PORT MYSQL_DATABASE MYSQL_USER MYSQL_PWD`` (prefixed ``{name}_`` when named)."""

    drivername = "mysql+pymysql"
    _env = {"host": "MYSQL_HOST", "port": "MYSQL_TCP_PORT", "db": "MYSQL_DATABASE",
            "user": "MYSQL_USER", "password": "MYSQL_PWD"}


class SQLiteSource(SQLSource):
    """A SQLite database file, or an in-memory database when ``filename`` is None."""

    drivername = "sqlite"

    def __init__(self, filename: Optional[str] = None, name: Optional[str] = None,
                 engine_args: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(db=filename, name=name, engine_args=engine_args)

    @property
    def filename(self) -> Optional[str]:
        return self.db


def SQLiteFileSource(filename: str, name: Optional[str] = None) -> SQLiteSource:
    """Chalk's spelling of :class:`SQLiteSource` for a file."""
    return SQLiteSource(filename, name=name)


def SQLiteInMemorySource(name: Optional[str] = None) -> SQLiteSource:
    """Chalk's spelling of :class:`SQLiteSource` in memory."""
    return SQLiteSource(None, name=name)
