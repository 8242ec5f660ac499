"""Feature sinks on Apache Beam: Chalk-style @sink definitions compiled into Beam pipelines."""
from setuptools import find_packages, setup

setup(
    name="beam-feature-sinks",
    version="0.1.0",
    description="Chalk-style feature sinks compiled into Apache Beam pipelines",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sinks", "sinks.*", "transforms", "transforms.*",
                                    "pipelines", "pipelines.*"]),
    install_requires=[
        "apache-beam>=2.77,<3",
        "sqlalchemy>=2,<3",
        "psycopg2-binary>=2.9",
        "pyarrow>=14",
    ],
    entry_points={"console_scripts": ["feature-sinks = pipelines.__main__:console"]},
    extras_require={
        "mysql": ["pymysql>=1.1"],
        # Dialect packages of Chalk's other SQL sources (sinks/integrations.py names each extra).
        "snowflake": ["snowflake-sqlalchemy>=1.5"],
        "bigquery": ["sqlalchemy-bigquery>=1.9"],
        "redshift": ["sqlalchemy-redshift>=0.8"],
        "databricks": ["databricks-sqlalchemy>=2"],
        "mssql": ["pymssql>=2.2"],
        "clickhouse": ["clickhouse-sqlalchemy>=0.3"],
        "trino": ["trino[sqlalchemy]>=0.328"],
        "gcp": ["apache-beam[gcp]>=2.77,<3"],
        "test": ["pytest>=8", "pymysql>=1.1", "hypothesis>=6", "pandas>=2", "ruff>=0.6", "mypy>=1.10",
                 "sqlalchemy-redshift>=0.8"],
    },
)
