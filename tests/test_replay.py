"""``run --replay-dead-letters DIR``: a sink failing for some entities, then fixed, gets exactly
those inputs again; rows a table refused are written once it takes them; updates that fail again
are dead-lettered anew; the files replayed move to ``DIR/replayed/`` and a second replay does nothing."""
import json
import sqlite3

import pytest

from pipelines.__main__ import main
from transforms.dead_letters import dead_letter

DEFINITIONS = '''
import os
from datetime import datetime
from sqlalchemy import DateTime, Float, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sinks import DataFrame, FeatureTime, Primary, SQLiteSource, features, sink

DOWN_FOR = {down!r}     # a file listing the users the services fail for
CALLS = {calls!r}       # a file the sinks log their calls to
DB = SQLiteSource({db!r})


@features
class User:
    uuid: Primary[str]
    full_name: str
    ts: FeatureTime
    transfers: "DataFrame[Transfer]"


@features
class Transfer:
    id: str
    user_id: User.uuid
    amount: float
    created_at: FeatureTime


class Base(DeclarativeBase):
    pass


class Named(Base):
    __tablename__ = "named"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(256))
    ts: Mapped[datetime] = mapped_column(DateTime)


class Totals(Base):
    __tablename__ = "totals"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Float)


def service(sink, uid):
    if os.path.exists(DOWN_FOR) and uid in open(DOWN_FOR).read().split():
        raise ConnectionError(f"the service is down for {{uid}}")
    with open(CALLS, "a") as log:
        log.write(f"{{sink}} {{uid}}\\n")


@sink(integration=DB)
def export_names(uid: User.uuid, name: User.full_name, ts: User.ts) -> Named:
    service("export_names", uid)
    return Named(uuid=uid, full_name=name, ts=ts)


@sink(integration=DB, upsert=True)
def totals(uid: User.uuid, txns: User.transfers) -> Totals:
    service("totals", uid)
    return Totals(user_id=uid, count=txns.count(), total=txns[Transfer.amount].sum())
'''

USERS = 10
DOWN = {"u3", "u7"}
BLOCKED = "u5"     # its name is refused by the table while a trigger stands


def updates():
    for i in range(USERS):
        for j in range(3):
            yield {"transfer.id": f"t{i}-{j}", "transfer.user_id": f"u{i}", "transfer.amount": 10.0 * j + i,
                   "transfer.created_at": f"2024-01-0{j + 1}T00:00:00Z"}
        yield {"user.uuid": f"u{i}", "user.full_name": "Blocked" if f"u{i}" == BLOCKED else f"Name {i}",
               "user.ts": "2024-01-10T00:00:00Z"}
    yield {"transfer.id": "bad", "transfer.user_id": "u1", "transfer.amount": "abc",
           "transfer.created_at": "2024-01-01T00:00:00Z"}


def table(db, query):
    with sqlite3.connect(db) as connection:
        return connection.execute(query).fetchall()


def letters_in(directory):
    return [json.loads(line) for f in sorted(directory.glob("*.jsonl")) for line in f.read_text().splitlines()]


@pytest.fixture
def job(tmp_path):
    down, calls, db = tmp_path / "down", tmp_path / "calls", tmp_path / "out.db"
    definitions = tmp_path / "defs.py"
    definitions.write_text(DEFINITIONS.format(down=str(down), calls=str(calls), db=str(db)))
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(u) + "\n" for u in updates()))
    return definitions, source, down, calls, db


def test_replay_delivers_exactly_what_failed_and_only_once(tmp_path, job):
    definitions, source, down, calls, db = job
    letters = tmp_path / "letters"
    base = ["run", "--definitions", str(definitions), "--sink_retry_attempts", "1"]
    with sqlite3.connect(db) as connection:   # the table refuses one user's name for now
        connection.execute("CREATE TABLE named (id INTEGER PRIMARY KEY AUTOINCREMENT, uuid VARCHAR(64), "
                           "full_name VARCHAR(256), ts DATETIME)")
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON named WHEN NEW.full_name = 'Blocked' "
                           "BEGIN SELECT RAISE(ABORT, 'name refused'); END")
    down.write_text(" ".join(sorted(DOWN)))
    assert main(base + ["--input", str(source), "--dead-letters", str(letters)]) == 3   # a row not written
    first = letters_in(letters)
    assert {(r["stage"], r["sink"]) for r in first} == {
        ("call", "export_names"), ("call", "totals"), ("write", "export_names"), ("parse", None)}
    assert {json.loads(r["key"]) for r in first if r["stage"] == "call"} == DOWN
    assert sorted(u for (u,) in table(db, "SELECT uuid FROM named")) == sorted(
        f"u{i}" for i in range(USERS) if f"u{i}" not in DOWN | {BLOCKED})
    called = calls.read_text().splitlines()

    down.unlink()
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TRIGGER refuse")
    again = tmp_path / "again"
    assert main(base + ["--replay-dead-letters", str(letters), "--dead-letters", str(again)]) == 0
    replayed_calls = calls.read_text().splitlines()[len(called):]
    assert {line.split()[1] for line in replayed_calls} == DOWN                 # only the users that failed
    assert sorted(set(replayed_calls)) == sorted(f"{sink} {uid}" for sink in ("export_names", "totals") for uid in DOWN)
    names = table(db, "SELECT uuid, full_name FROM named")
    assert sorted(u for u, _ in names) == [f"u{i}" for i in range(USERS)]       # each once: no duplicate
    assert (BLOCKED, "Blocked") in names
    assert sorted(table(db, "SELECT user_id, count, total FROM totals")) == sorted(
        (f"u{i}", 3, 30.0 + 3 * i) for i in range(USERS))
    # The update that cannot be parsed is dead-lettered anew; the files replayed are moved away.
    assert [(r["stage"], json.loads(r["input"])["transfer.id"]) for r in letters_in(again)] == [("parse", "bad")]
    assert not list(letters.glob("*.jsonl")) and len(list((letters / "replayed").glob("*.jsonl"))) >= 1

    before = (calls.read_text(), table(db, "SELECT * FROM named"), table(db, "SELECT * FROM totals"))
    assert main(base + ["--replay-dead-letters", str(letters), "--dead-letters", str(tmp_path / "third")]) == 0
    assert (calls.read_text(), table(db, "SELECT * FROM named"), table(db, "SELECT * FROM totals")) == before
    assert not (tmp_path / "third").exists() or not list((tmp_path / "third").iterdir())


def test_replay_needs_a_directory_and_no_input(tmp_path, job, capsys):
    definitions, source, *_ = job
    base = ["run", "--definitions", str(definitions)]
    assert main(base + ["--input", str(source), "--replay-dead-letters", str(tmp_path)]) == 2
    assert main(base) == 2
    assert main(base + ["--replay-dead-letters", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "give --input, or --replay-dead-letters DIR (not both)" in err and "no such directory" in err


def test_a_call_records_inputs_come_back_typed(bank):
    from datetime import datetime, timezone

    from sinks import DataFrame, sink
    from pipelines.replay import NotReplayable, call_inputs
    from transforms.dead_letters import dead_letter
    User, Account, Transfer = bank

    successful = Transfer.status == "ok"

    @sink
    def per_row(uid: User.uuid, ts: User.ts, txns: User.transfers[successful]):
        pass

    @sink
    def batch(users: DataFrame[User.uuid, User.ts]):
        pass

    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    frame = DataFrame([{Transfer.id: "t1", Transfer.user_id: "u1", Transfer.status: "ok", Transfer.amount: 2.5,
                        Transfer.created_at: when}], columns=[Transfer.id, Transfer.user_id, Transfer.status,
                                                              Transfer.amount, Transfer.created_at])
    record = dead_letter("call", "per_row", ValueError("x"), {"uid": "u1", "ts": when, "txns": frame}, key="u1")
    inputs = call_inputs(per_row, json.loads(record["input"]))
    assert inputs["uid"] == "u1" and inputs["ts"] == when
    assert inputs["txns"].to_pylist() == frame.to_pylist()
    assert inputs["txns"][Transfer.amount].sum() == 2.5
    row = json.loads(dead_letter("call", "batch", ValueError("x"), {"user.uuid": "u1", "user.ts": when})["input"])
    assert call_inputs(batch, row) == {"user.uuid": "u1", "user.ts": when}
    with pytest.raises(NotReplayable, match="'ts'"):
        call_inputs(per_row, {"uid": "u1", "ts": "not a time", "txns": []})


def test_replaying_into_the_same_directory_moves_only_the_files_it_read(tmp_path, job):
    definitions, source, *_ = job
    letters = tmp_path / "letters"
    base = ["run", "--definitions", str(definitions), "--dead-letters", str(letters)]
    assert main(base + ["--input", str(source)]) == 0
    (first,) = letters.glob("*.jsonl")
    assert main(base + ["--replay-dead-letters", str(letters)]) == 0
    assert [p.name for p in (letters / "replayed").iterdir()] == [first.name]
    (anew,) = letters.glob("*.jsonl")     # the update that fails again, in a file of its own
    assert anew.name != first.name and [r["stage"] for r in letters_in(letters)] == ["parse"]


def test_a_route_record_mended_with_its_join_key_is_replayed_as_an_update(tmp_path, job):
    # The routing step's dead letter holds an update that lacked its join key; with the key added
    # by hand it goes through Assemble again, as a parse record does.
    definitions, _, _, _, db = job
    letters = tmp_path / "letters"
    letters.mkdir()
    update = {"transfer.id": "t-late", "transfer.user_id": "u1", "transfer.amount": 5.0,
              "transfer.created_at": "2024-01-05T00:00:00+00:00"}
    record = dead_letter("route", None, ValueError("no join key"), update, key="t-late")
    (letters / "dead-letters-mended.jsonl").write_text(json.dumps(record) + "\n")
    assert main(["run", "--definitions", str(definitions), "--replay-dead-letters", str(letters),
                 "--dead-letters", str(tmp_path / "again")]) == 0
    assert table(db, "SELECT user_id, count, total FROM totals") == [("u1", 1, 5.0)]
