"""SQL databases that integration sinks write to, under Chalk's names and arguments.

Unset connection fields come from the environment variables Chalk's sources read (``PGHOST``,
``SNOWSQL_USER``, ``BQ_PROJECT``...), prefixed ``{name}_`` for a named source, so the bare
``PostgreSQLSource()`` of a definitions file works wherever they are set. Each source builds a
SQLAlchemy URL for its dialect package, named by a ``setup.py`` extra; :meth:`SQLSource.require`
refuses a source whose package is missing in one line naming the extra. Sources pickle as plain
settings (engines are made on workers) and never show a password, nor a secret in the URL's
query string (``?password=``, which libpq accepts), in a ``repr``.
"""
from __future__ import annotations

import importlib.util
import os
import re
from typing import Any, Dict, Mapping, Optional, Tuple

import sqlalchemy
from sqlalchemy.engine import URL, Engine

from sinks.errors import DefinitionError

# Query parameters the drivers take as connect() keywords: moved there, so the URL holds no secret.
_CONNECT_SECRETS = frozenset({"password", "passwd", "pwd", "sslpassword"})
# Query parameters shown masked wherever a URL is printed.
_SECRET_QUERY = re.compile(r"pass|pwd|secret|token|credential|private", re.IGNORECASE)


def display_url(url: URL) -> str:
    """``url`` as text a log or ``explain`` may show: its password and secret query values masked."""
    query = {key: ("***" if _SECRET_QUERY.search(key) else value) for key, value in url.query.items()}
    # "***" as SQLAlchemy masks a password; the query string would render it percent-encoded.
    return url.set(query=query).render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")


class SQLSource:
    """A SQL database reached through SQLAlchemy.

    Subclasses name their dialect (``drivername``), the module its package provides
    (``driver_module``) and the ``setup.py`` extra that installs it, the environment variable of each
    setting (``_env``), and whether the writers have an upsert for the dialect (``upserts``).
    """

    drivername = ""
    driver_module = ""
    extra = ""
    upserts = True
    _env: Dict[str, str] = {}

    def __init__(self, host: Optional[str] = None, port: Optional[int] = None, db: Optional[str] = None,
                 user: Optional[str] = None, password: Optional[str] = None, name: Optional[str] = None,
                 engine_args: Optional[Dict[str, Any]] = None, url: Optional[str] = None) -> None:
        self.name = name
        self.engine_args = dict(engine_args or {})
        self._url_override = url
        self.host = self._setting(host, "host")
        port_value = self._setting(port, "port")
        self.port = int(port_value) if port_value is not None else None
        self.db = self._setting(db, "db")
        self.user = self._setting(user, "user")
        self._password = self._setting(password, "password")

    def _setting(self, value: Any, key: str) -> Any:
        """An argument, else its environment variable (prefixed ``{name}_`` for a named source)."""
        if value is not None or key not in self._env:
            return value
        prefix = f"{self.name}_" if self.name else ""
        return os.environ.get(prefix + self._env[key]) or None

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL, without secrets: the password is masked by its ``str``/``repr`` and
        a secret query parameter is held apart and given to the driver (:meth:`create_engine`)."""
        return self._split()[0]

    def _split(self) -> Tuple[URL, Dict[str, Any]]:
        url = sqlalchemy.make_url(self._url_override) if self._url_override is not None else self.build_url()
        secrets = {key: value for key, value in url.query.items() if key.lower() in _CONNECT_SECRETS}
        if not secrets:
            return url, {}
        return url.difference_update_query(secrets), secrets

    def build_url(self) -> URL:
        """The URL from this source's settings (each dialect arranges them its own way)."""
        return URL.create(self.drivername, username=self.user, password=self._password,
                          host=self.host, port=self.port, database=self.db)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def require(self) -> None:
        """Refuse, in one line naming the extra to install, a source whose dialect package is missing."""
        if self.driver_module and importlib.util.find_spec(self.driver_module.split(".")[0]) is None:
            raise DefinitionError(
                f"{type(self).__name__} needs the {self.driver_module.split('.')[0]} package: "
                f"pip install 'beam-feature-sinks[{self.extra}]'")

    def create_engine(self, **overrides: Any) -> Engine:
        """A new engine with ``pool_pre_ping`` on; call it on the worker, in ``DoFn.setup``."""
        url, secrets = self._split()
        args = {"pool_pre_ping": True, **self.engine_args, **overrides}
        if secrets:
            args["connect_args"] = {**secrets, **args.get("connect_args", {})}
        return sqlalchemy.create_engine(url, **args)

    def __repr__(self) -> str:
        url = self.url
        if self._url_override is None and self._env and not (url.host or url.database):
            variables = ", ".join(f"{self.name}_{v}" if self.name else v for v in self._env.values())
            return f"{type(self).__name__}(not configured: set {variables} or pass arguments)"
        return f"{type(self).__name__}({display_url(url)!r})"


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
    driver_module = "pymysql"
    extra = "mysql"
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


class _WarehouseSource(SQLSource):
    """A source whose settings go beyond host/port/db/user/password (``_more`` names them,
    with their environment variables in ``_env``)."""

    _more: Tuple[str, ...] = ()

    def _settings(self, given: Mapping[str, Any]) -> None:
        self.settings = {key: self._setting(given.get(key), key) for key in self._more}


class RedshiftSource(SQLSource):
    """Amazon Redshift through sqlalchemy-redshift (extra ``redshift``); defaults from
    ``REDSHIFT_HOST REDSHIFT_PORT REDSHIFT_DB REDSHIFT_USER REDSHIFT_PASSWORD``. Appends only:
    Redshift has no ``ON CONFLICT`` upsert."""

    drivername = "redshift+psycopg2"
    driver_module = "sqlalchemy_redshift"
    extra = "redshift"
    upserts = False
    _env = {"host": "REDSHIFT_HOST", "port": "REDSHIFT_PORT", "db": "REDSHIFT_DB", "user": "REDSHIFT_USER",
            "password": "REDSHIFT_PASSWORD"}

    def __init__(self, host: Optional[str] = None, db: Optional[str] = None, user: Optional[str] = None,
                 password: Optional[str] = None, port: Optional[int] = None, name: Optional[str] = None,
                 s3_bucket: Optional[str] = None, unload_iam_role: Optional[str] = None,
                 engine_args: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(host=host, port=port, db=db, user=user, password=password, name=name,
                         engine_args=engine_args)
        self.s3_bucket, self.unload_iam_role = s3_bucket, unload_iam_role   # Chalk's unload settings


class CloudSQLSource(SQLSource):
    """Google Cloud SQL for PostgreSQL through its Unix socket ``/cloudsql/INSTANCE``; defaults from
    ``CLOUDSQL_INSTANCE_NAME CLOUDSQL_DATABASE CLOUDSQL_USER CLOUDSQL_PASSWORD``."""

    drivername = "postgresql+psycopg2"
    _env = {"host": "CLOUDSQL_INSTANCE_NAME", "db": "CLOUDSQL_DATABASE", "user": "CLOUDSQL_USER",
            "password": "CLOUDSQL_PASSWORD"}

    def __init__(self, instance_name: Optional[str] = None, db: Optional[str] = None,
                 user: Optional[str] = None, password: Optional[str] = None, name: Optional[str] = None,
                 engine_args: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(host=instance_name, db=db, user=user, password=password, name=name,
                         engine_args=engine_args)

    @property
    def instance_name(self) -> Optional[str]:
        return self.host

    def build_url(self) -> URL:
        query = {"host": f"/cloudsql/{self.host}"} if self.host else {}
        return URL.create(self.drivername, username=self.user, password=self._password,
                          database=self.db, query=query)


class MSSQLSource(SQLSource):
    """Microsoft SQL Server through pymssql (extra ``mssql``); defaults from ``MSSQL_HOST
    MSSQL_TCP_PORT MSSQL_DATABASE MSSQL_USER MSSQL_PWD``. Appends only (SQL Server's upsert is a
    ``MERGE``, which the writers do not build)."""

    drivername = "mssql+pymssql"
    driver_module = "pymssql"
    extra = "mssql"
    upserts = False
    _env = {"host": "MSSQL_HOST", "port": "MSSQL_TCP_PORT", "db": "MSSQL_DATABASE", "user": "MSSQL_USER",
            "password": "MSSQL_PWD"}


class ClickhouseSource(SQLSource):
    """ClickHouse through clickhouse-sqlalchemy's native protocol (extra ``clickhouse``); defaults
    from ``CLICKHOUSE_HOST CLICKHOUSE_PORT CLICKHOUSE_DATABASE CLICKHOUSE_USER CLICKHOUSE_PASSWORD``.
    Appends only: ClickHouse has no row upsert."""

    drivername = "clickhouse+native"
    driver_module = "clickhouse_sqlalchemy"
    extra = "clickhouse"
    upserts = False
    _env = {"host": "CLICKHOUSE_HOST", "port": "CLICKHOUSE_PORT", "db": "CLICKHOUSE_DATABASE",
            "user": "CLICKHOUSE_USER", "password": "CLICKHOUSE_PASSWORD"}

    def __init__(self, host: Optional[str] = None, port: Optional[int] = None, db: Optional[str] = None,
                 user: Optional[str] = None, password: Optional[str] = None, use_tls: Optional[bool] = None,
                 name: Optional[str] = None, engine_args: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(host=host, port=port, db=db, user=user, password=password, name=name,
                         engine_args=engine_args)
        self.use_tls = use_tls

    def build_url(self) -> URL:
        url = super().build_url()
        return url.update_query_dict({"secure": "True"}) if self.use_tls else url


class SnowflakeSource(_WarehouseSource):
    """Snowflake through snowflake-sqlalchemy (extra ``snowflake``); defaults from ``SNOWSQL_DATABASE
    SNOWSQL_SCHEMA SNOWSQL_ROLE SNOWSQL_WAREHOUSE SNOWSQL_USER SNOWSQL_PWD SNOWSQL_ACCOUNT_IDENTIFIER``.
    Appends only (Snowflake's upsert is a ``MERGE``)."""

    drivername = "snowflake"
    driver_module = "snowflake.sqlalchemy"
    extra = "snowflake"
    upserts = False
    _more = ("schema", "role", "warehouse", "account_identifier")
    _env = {"db": "SNOWSQL_DATABASE", "schema": "SNOWSQL_SCHEMA", "role": "SNOWSQL_ROLE",
            "warehouse": "SNOWSQL_WAREHOUSE", "user": "SNOWSQL_USER", "password": "SNOWSQL_PWD",
            "account_identifier": "SNOWSQL_ACCOUNT_IDENTIFIER"}

    def __init__(self, *, name: Optional[str] = None, account_identifier: Optional[str] = None,
                 warehouse: Optional[str] = None, user: Optional[str] = None, password: Optional[str] = None,
                 db: Optional[str] = None, schema: Optional[str] = None, role: Optional[str] = None,
                 engine_args: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(db=db, user=user, password=password, name=name, engine_args=engine_args)
        self._settings(dict(schema=schema, role=role, warehouse=warehouse, account_identifier=account_identifier))

    def build_url(self) -> URL:
        s = self.settings
        database = "/".join(p for p in (self.db, s["schema"]) if p) or None
        query = {k: v for k, v in (("warehouse", s["warehouse"]), ("role", s["role"])) if v}
        return URL.create(self.drivername, username=self.user, password=self._password,
                          host=s["account_identifier"], database=database, query=query)


class BigQuerySource(_WarehouseSource):
    """Google BigQuery through sqlalchemy-bigquery (extra ``bigquery``); defaults from ``BQ_PROJECT
    BQ_DATASET BQ_LOCATION BQ_CREDENTIALS_BASE64 BQ_CREDENTIALS_PATH``. Appends only."""

    drivername = "bigquery"
    driver_module = "sqlalchemy_bigquery"
    extra = "bigquery"
    upserts = False
    _more = ("project", "dataset", "location", "credentials_base64", "credentials_path")
    _env = {"project": "BQ_PROJECT", "dataset": "BQ_DATASET", "location": "BQ_LOCATION",
            "credentials_base64": "BQ_CREDENTIALS_BASE64", "credentials_path": "BQ_CREDENTIALS_PATH"}

    def __init__(self, *, name: Optional[str] = None, project: Optional[str] = None,
                 dataset: Optional[str] = None, location: Optional[str] = None,
                 credentials_base64: Optional[str] = None, credentials_path: Optional[str] = None,
                 engine_args: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(name=name, engine_args=engine_args)
        self._settings(dict(project=project, dataset=dataset, location=location,
                            credentials_base64=credentials_base64, credentials_path=credentials_path))

    def build_url(self) -> URL:
        s = self.settings
        query = {k: s[k] for k in ("location", "credentials_base64", "credentials_path") if s[k]}
        return URL.create(self.drivername, host=s["project"], database=s["dataset"], query=query)


class DatabricksSource(_WarehouseSource):
    """Databricks SQL through databricks-sqlalchemy (extra ``databricks``); defaults from
    ``DATABRICKS_HOST DATABRICKS_HTTP_PATH DATABRICKS_TOKEN DATABRICKS_DATABASE DATABRICKS_PORT``.
    The access token travels as the URL's password (masked). Appends only."""

    drivername = "databricks"
    driver_module = "databricks.sqlalchemy"
    extra = "databricks"
    upserts = False
    _more = ("http_path",)
    _env = {"host": "DATABRICKS_HOST", "http_path": "DATABRICKS_HTTP_PATH", "password": "DATABRICKS_TOKEN",
            "db": "DATABRICKS_DATABASE", "port": "DATABRICKS_PORT"}

    def __init__(self, *, host: Optional[str] = None, http_path: Optional[str] = None,
                 access_token: Optional[str] = None, db: Optional[str] = None, port: Optional[int] = None,
                 name: Optional[str] = None, engine_args: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(host=host, port=port, db=db, user="token", password=access_token, name=name,
                         engine_args=engine_args)
        self._settings(dict(http_path=http_path))

    def build_url(self) -> URL:
        query = {k: v for k, v in (("http_path", self.settings["http_path"]), ("schema", self.db)) if v}
        return URL.create(self.drivername, username=self.user, password=self._password, host=self.host,
                          port=self.port, query=query)


class TrinoSource(_WarehouseSource):
    """Trino through the trino package's SQLAlchemy dialect (extra ``trino``); defaults from
    ``TRINO_HOST TRINO_PORT TRINO_CATALOG TRINO_SCHEMA TRINO_USER TRINO_PASSWORD``. Appends only."""

    drivername = "trino"
    driver_module = "trino.sqlalchemy"
    extra = "trino"
    upserts = False
    _more = ("catalog", "schema")
    _env = {"host": "TRINO_HOST", "port": "TRINO_PORT", "catalog": "TRINO_CATALOG", "schema": "TRINO_SCHEMA",
            "user": "TRINO_USER", "password": "TRINO_PASSWORD"}

    def __init__(self, *, name: Optional[str] = None, host: Optional[str] = None, port: Optional[int] = None,
                 catalog: Optional[str] = None, schema: Optional[str] = None, user: Optional[str] = None,
                 password: Optional[str] = None, engine_args: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(host=host, port=port, user=user, password=password, name=name, engine_args=engine_args)
        self._settings(dict(catalog=catalog, schema=schema))

    def build_url(self) -> URL:
        database = "/".join(p for p in (self.settings["catalog"], self.settings["schema"]) if p) or None
        return URL.create(self.drivername, username=self.user, password=self._password, host=self.host,
                          port=self.port, database=database)


WAREHOUSE_SOURCES = (RedshiftSource, CloudSQLSource, MSSQLSource, ClickhouseSource, SnowflakeSource,
                     BigQuerySource, DatabricksSource, TrinoSource)
