"""A known password must never appear in output, logs, errors, explain, dead letters or reprs."""
import logging
import textwrap
from pathlib import Path

import pytest
import sqlalchemy

import sinks
from pipelines.__main__ import main

PASSWORD = "Tr0ub4dor-and-3-horses"


def _with_password(url: str, where: str) -> str:
    """``url`` carrying the password in its user part, or in its query string (which libpq accepts)."""
    parsed = sqlalchemy.make_url(url)
    if where == "query":
        return parsed.update_query_dict({"password": PASSWORD}).render_as_string(hide_password=False)
    return parsed.set(password=PASSWORD).render_as_string(hide_password=False)


@pytest.fixture(params=["userinfo", "query"])
def password_in(request) -> str:
    return request.param


@pytest.fixture
def definitions(tmp_path, postgres_url, password_in) -> Path:
    """The bank example's append sink pointed at PostgreSQL with a password (the server trusts
    local connections, so the password is sent and ignored), and a sink that always fails."""
    url = _with_password(postgres_url, password_in)
    path = tmp_path / "secret_definitions.py"
    path.write_text(textwrap.dedent(f'''
        from examples.bank import User, UserRecord
        from sinks import PostgreSQLSource, sink

        DATABASE = PostgreSQLSource(url={url!r})

        @sink(integration=DATABASE)
        def export_with_password(uid: User.uuid, name: User.full_name) -> UserRecord:
            return UserRecord(uuid=uid, full_name=name, title="t")

        @sink
        def always_fails(uid: User.uuid, name: User.full_name):
            raise RuntimeError("connection to " + str(DATABASE) + " failed")
    '''))
    return path


def test_password_never_appears(tmp_path, definitions, postgres_url, password_in, capsys, caplog):
    from examples.bank import UserRecord
    engine = sqlalchemy.create_engine(postgres_url)
    UserRecord.__table__.drop(engine, checkfirst=True)
    updates = tmp_path / "updates.jsonl"
    updates.write_text('{"user.uuid": "u1", "user.full_name": "Ann"}\n{"user.uuid": "u2", "user.full_name": "Bo"}\n')
    letters = tmp_path / "letters"
    caplog.set_level(logging.DEBUG)
    try:
        assert main(["run", "--definitions", str(definitions), "--input", str(updates), "--create-tables",
                     "--dead-letters", str(letters), "--sink_retry_base_delay", "0.001", "--verbose"]) == 0
        assert main(["explain", "--definitions", str(definitions)]) == 0
        unreachable = _with_password("postgresql+psycopg2://root@127.0.0.1:1/test", password_in)
        assert main(["run", "--definitions", str(definitions), "--input", str(updates),
                     "--database-url", unreachable]) == 2
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(
                UserRecord.__table__)).scalar() == 2
    finally:
        UserRecord.__table__.drop(engine, checkfirst=True)
        engine.dispose()
    captured = capsys.readouterr()
    registry = sinks.load(str(definitions))
    texts = {
        "stdout": captured.out, "stderr": captured.err, "logs": caplog.text,
        "dead letters": "".join(p.read_text() for p in letters.iterdir()),
        "reprs": repr(registry.sinks) + repr(registry.sinks["export_with_password"].spec),
        "the source's url": str(registry.sinks["export_with_password"].spec.integration.url)
        + repr(registry.sinks["export_with_password"].spec.integration.url),
    }
    assert "always_fails" in texts["dead letters"] and "export_with_password" in texts["stdout"]
    for where, text in texts.items():
        assert PASSWORD not in text, f"the password appears in {where}"
