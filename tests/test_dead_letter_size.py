"""Dead letters stay small: a short reason and the input per record, a traceback once per failure
place and bundle, not one per row (a sink failing on a database that is down wrote 7.6 KB a record)."""
import json
from pathlib import Path

import pytest

from pipelines.__main__ import main

ROOT = Path(__file__).resolve().parent.parent

# A per-row and a batch sink that talk to a database that is not there: every call fails with
# SQLAlchemy's long chained traceback.
DEFINITIONS = '''
import sqlalchemy
from sinks import DataFrame, sink
from examples.bank import User

ENGINE = sqlalchemy.create_engine("postgresql+psycopg2://root@127.0.0.1:9/none", poolclass=sqlalchemy.pool.NullPool)

@sink
def export_user(uid: User.uuid, name: User.full_name, title: User.account.title) -> None:
    with ENGINE.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))

@sink(buffer_size=100)
def export_batch(users: DataFrame[User.uuid, User.account.title]) -> None:
    with ENGINE.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))
'''


@pytest.fixture(scope="module")
def updates(tmp_path_factory):
    path = tmp_path_factory.mktemp("size") / "bank.jsonl"
    assert main(["generate", "--definitions", str(ROOT / "examples" / "bank.py"), "--entities", "200",
                 "--out", str(path)]) == 0
    bad = [json.dumps({"user.uuid": f"u{i}", "user.ts": "not a time"}) for i in range(50)]
    path.write_text(path.read_text() + "\n".join(bad) + "\n")
    return path


def test_a_failing_sinks_dead_letters_are_small(tmp_path, updates):
    definitions = tmp_path / "down.py"
    definitions.write_text(DEFINITIONS)
    letters_dir = tmp_path / "letters"
    assert main(["run", "--definitions", str(definitions), "--sink", "export_user", "--sink", "export_batch",
                 "--input", str(updates), "--dead-letters", str(letters_dir), "--sink_retry_attempts", "1"]) == 0
    lines = [line for f in letters_dir.iterdir() for line in f.read_bytes().splitlines()]
    letters = [json.loads(line) for line in lines]
    calls = [letter for letter in letters if letter["stage"] == "call"]
    parses = [letter for letter in letters if letter["stage"] == "parse"]
    assert len(calls) == 400 and len(parses) == 50     # 200 users, each once per sink; the 50 bad updates
    assert {tuple(sorted(letter)) for letter in calls} == {
        ("error", "error_type", "input", "key", "sink", "stage", "traceback")}
    assert {letter["error_type"] for letter in calls} == {"OperationalError"}
    # Each failure place shows its traceback once per bundle: at most one per failing call.
    with_traceback = [letter for letter in calls if letter["traceback"]]
    assert 1 <= len(with_traceback) <= 10
    assert all("Traceback" in letter["traceback"] and len(letter["traceback"]) < 4200 for letter in with_traceback)
    assert not any(letter["traceback"] for letter in parses)
    assert all(len(letter["error"]) <= 1100 for letter in letters)
    per_record = sum(len(line) + 1 for line in lines) / len(lines)
    print(f"{len(lines)} dead letters, {per_record:.0f} bytes each")
    assert per_record < 1000
