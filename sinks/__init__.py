"""Feature sinks on Apache Beam: what a definitions file imports.

    from sinks import features, Primary, FeatureTime, DataFrame, after, sink, PostgreSQLSource
"""
from sinks.dataframe import DataFrame, op
from sinks.durations import parse_duration
from sinks.errors import DefinitionError, FeatureNotFoundError
from sinks.features import Feature, Features, FeatureTime, Primary, Ref, features, has_many, has_one
from sinks.filters import after, before
from sinks.integrations import (
    BigQuerySource, ClickhouseSource, CloudSQLSource, DatabricksSource, MSSQLSource, MySQLSource,
    PostgreSQLSource, RedshiftSource, SnowflakeSource, SQLiteFileSource, SQLiteInMemorySource, SQLiteSource,
    SQLSource, TrinoSource,
)
from sinks.options import feature
from sinks.registry import Registry, load
from sinks.sink import Sink, SinkInput, SinkSpec, sink
from sinks.stream import StreamResolver, stream

__all__ = [
    "after", "before", "BigQuerySource", "ClickhouseSource", "CloudSQLSource", "DatabricksSource",
    "DataFrame", "DefinitionError", "Feature", "feature", "FeatureNotFoundError", "features", "Features",
    "FeatureTime", "has_many", "has_one", "load", "MSSQLSource", "MySQLSource", "op", "parse_duration",
    "PostgreSQLSource", "Primary", "RedshiftSource", "Ref", "Registry", "Sink", "sink", "SinkInput",
    "SinkSpec", "SnowflakeSource", "SQLiteFileSource", "SQLiteInMemorySource", "SQLiteSource", "SQLSource",
    "stream", "StreamResolver", "TrinoSource",
]
