"""Chalk's other SQL sources (issue 21): Chalk's arguments and environment variables, a SQLAlchemy URL
for their dialect package, refused in one line naming the extra when it is missing, and repr()s
that hide every secret (issue 22, item 14)."""
import importlib.util
import pickle

import pytest

from sinks import (
    BigQuerySource, ClickhouseSource, CloudSQLSource, DatabricksSource, DefinitionError, MSSQLSource,
    PostgreSQLSource, RedshiftSource, SnowflakeSource, TrinoSource, features, sink,
)
from sinks.integrations import display_url

SECRET = "s3cr3t-pa55"

CASES = [
    (SnowflakeSource, {"SNOWSQL_ACCOUNT_IDENTIFIER": "xy12345.us-east-1", "SNOWSQL_USER": "ann",
                       "SNOWSQL_PWD": SECRET, "SNOWSQL_DATABASE": "bank", "SNOWSQL_SCHEMA": "public",
                       "SNOWSQL_WAREHOUSE": "compute_wh", "SNOWSQL_ROLE": "writer"},
     "snowflake://ann:***@xy12345.us-east-1/bank/public?role=writer&warehouse=compute_wh"),
    (BigQuerySource, {"BQ_PROJECT": "proj", "BQ_DATASET": "bank", "BQ_LOCATION": "EU",
                      "BQ_CREDENTIALS_BASE64": SECRET},
     "bigquery://proj/bank?credentials_base64=***&location=EU"),
    (RedshiftSource, {"REDSHIFT_HOST": "rs.example", "REDSHIFT_PORT": "5439", "REDSHIFT_DB": "dev",
                      "REDSHIFT_USER": "ann", "REDSHIFT_PASSWORD": SECRET},
     "redshift+psycopg2://ann:***@rs.example:5439/dev"),
    (DatabricksSource, {"DATABRICKS_HOST": "dbc.example", "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/x",
                        "DATABRICKS_TOKEN": SECRET, "DATABRICKS_DATABASE": "bank"},
     "databricks://token:***@dbc.example?http_path=%2Fsql%2F1.0%2Fwarehouses%2Fx&schema=bank"),
    (CloudSQLSource, {"CLOUDSQL_INSTANCE_NAME": "proj:eu:pg", "CLOUDSQL_DATABASE": "bank",
                      "CLOUDSQL_USER": "ann", "CLOUDSQL_PASSWORD": SECRET},
     "postgresql+psycopg2://ann:***@/bank?host=%2Fcloudsql%2Fproj%3Aeu%3Apg"),
    (MSSQLSource, {"MSSQL_HOST": "ms.example", "MSSQL_TCP_PORT": "1433", "MSSQL_DATABASE": "bank",
                   "MSSQL_USER": "ann", "MSSQL_PWD": SECRET},
     "mssql+pymssql://ann:***@ms.example:1433/bank"),
    (ClickhouseSource, {"CLICKHOUSE_HOST": "ch.example", "CLICKHOUSE_PORT": "9000",
                        "CLICKHOUSE_DATABASE": "bank", "CLICKHOUSE_USER": "ann", "CLICKHOUSE_PASSWORD": SECRET},
     "clickhouse+native://ann:***@ch.example:9000/bank"),
    (TrinoSource, {"TRINO_HOST": "trino.example", "TRINO_PORT": "8080", "TRINO_CATALOG": "hive",
                   "TRINO_SCHEMA": "bank", "TRINO_USER": "ann", "TRINO_PASSWORD": SECRET},
     "trino://ann:***@trino.example:8080/hive/bank"),
]


@pytest.mark.parametrize("source_class, environment, shown", CASES, ids=[c[0].__name__ for c in CASES])
def test_settings_come_from_chalks_environment_variables(monkeypatch, source_class, environment, shown):
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    source = source_class()
    assert display_url(source.url) == shown
    assert SECRET not in repr(source) and shown in repr(source)
    assert SECRET in source.url.render_as_string(hide_password=False)   # the driver still gets it
    assert display_url(pickle.loads(pickle.dumps(source)).url) == shown


@pytest.mark.parametrize("source_class, environment, shown", CASES, ids=[c[0].__name__ for c in CASES])
def test_a_named_source_reads_prefixed_variables(monkeypatch, source_class, environment, shown):
    for key, value in environment.items():
        monkeypatch.setenv(f"RISK_{key}", value)
    assert display_url(source_class(name="RISK").url) == shown


def test_arguments_win_and_use_chalks_names():
    source = SnowflakeSource(account_identifier="acct", warehouse="wh", user="u", password=SECRET, db="d",
                             schema="s", role="r")
    assert display_url(source.url) == "snowflake://u:***@acct/d/s?role=r&warehouse=wh"
    assert display_url(BigQuerySource(project="p", dataset="d").url) == "bigquery://p/d"
    assert display_url(DatabricksSource(host="h", http_path="/p", access_token=SECRET).url) == \
        "databricks://token:***@h?http_path=%2Fp"
    assert display_url(ClickhouseSource(host="h", use_tls=True).url) == "clickhouse+native://h?secure=True"
    assert CloudSQLSource(instance_name="i").instance_name == "i"


@pytest.mark.parametrize("source_class", [c[0] for c in CASES if c[0].driver_module])
def test_a_missing_dialect_package_is_refused_naming_the_extra(monkeypatch, source_class):
    real = importlib.util.find_spec
    package = source_class.driver_module.split(".")[0]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))

    @features
    class Row:
        id: str

    with pytest.raises(DefinitionError) as raised:
        @sink(integration=source_class())
        def export(rid: Row.id) -> object:
            pass
    message = str(raised.value)
    assert "\n" not in message and "parameter 'integration'" in message
    assert f"pip install 'beam-feature-sinks[{source_class.extra}]'" in message


def test_upsert_is_refused_where_the_dialect_has_none(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())

    @features
    class Row:
        id: str

    with pytest.raises(DefinitionError, match="SnowflakeSource has no upsert here"):
        @sink(integration=SnowflakeSource(), upsert=True)
        def export(rid: Row.id) -> object:
            pass


def test_a_query_string_password_is_hidden_and_still_used(postgres_url):
    import sqlalchemy
    url = sqlalchemy.make_url(postgres_url).update_query_dict({"password": SECRET, "application_name": "t"})
    source = PostgreSQLSource(url=url.render_as_string(hide_password=False))
    for text in (repr(source), str(source), str(source.url), repr(source.url), display_url(source.url)):
        assert SECRET not in text and "application_name=t" in text
    engine = source.create_engine()
    try:
        with engine.connect() as connection:   # the server trusts local users: the password is sent, unused
            assert connection.execute(sqlalchemy.text("select 1")).scalar() == 1
    finally:
        engine.dispose()


def test_an_unconfigured_source_says_so():
    assert repr(PostgreSQLSource(name="NOPE")) == (
        "PostgreSQLSource(not configured: set NOPE_PGHOST, NOPE_PGPORT, NOPE_PGDATABASE, NOPE_PGUSER, "
        "NOPE_PGPASSWORD or pass arguments)")


@pytest.mark.parametrize("source", [
    MSSQLSource(host="h", db="d", user="u", password=SECRET),
    RedshiftSource(host="h", db="d", user="u", password=SECRET),
], ids=["mssql", "redshift"])
def test_appends_compile_for_the_dialect(source):
    """The dialect the URL names loads (built into SQLAlchemy, or the extra's package) and compiles
    the writers' appends with bound parameters; no server of either runs on this machine."""
    import sqlalchemy
    from examples.chalk_surface import ShopperSpend
    try:
        dialect = source.url.get_dialect()()
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as error:
        pytest.skip(f"the dialect's package is not installed: {error}")
    statement = sqlalchemy.insert(ShopperSpend.__table__).values(
        shopper_id="s1", full_price=1, with_coupon=0, online_total=2.5)
    compiled = statement.compile(dialect=dialect)
    assert str(compiled).startswith("INSERT INTO shopper_spend (shopper_id, full_price, with_coupon, online_total)")
    assert "s1" not in str(compiled) and compiled.params["shopper_id"] == "s1"
