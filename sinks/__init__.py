"""Feature sinks on Apache Beam: what a definitions file imports.

    from sinks import features, Primary, FeatureTime, DataFrame, after, sink, PostgreSQLSource
"""
from sinks.dataframe import DataFrame, op
from sinks.durations import parse_duration
from sinks.errors import DefinitionError, FeatureNotFoundError
from sinks.features import (
    Feature, Features, FeatureTime, Primary, Ref, feature, features, has_many, has_one,
)
from sinks.filters import after, before
from sinks.integrations import (
    MySQLSource, PostgreSQLSource, SQLiteFileSource, SQLiteInMemorySource, SQLiteSource, SQLSource,
)
from sinks.registry import Registry, load
from sinks.sink import Sink, SinkInput, SinkSpec, sink
from sinks.stream import StreamResolver, stream

__all__ = [
    "DataFrame", "DefinitionError", "Feature", "FeatureNotFoundError", "FeatureTime", "Features",
    "MySQLSource", "PostgreSQLSource", "Primary", "Ref", "Registry", "SQLSource", "SQLiteFileSource",
    "SQLiteInMemorySource", "SQLiteSource", "Sink", "SinkInput", "SinkSpec", "StreamResolver", "after",
    "before", "feature", "features", "has_many", "has_one", "load", "op", "parse_duration", "sink", "stream",
]
