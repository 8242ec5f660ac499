"""The runtime DataFrame that batch sinks and has-many inputs receive."""
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from sinks import DataFrame, after, before, features
from sinks.features import FeatureTime

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def Transfer():
    @features
    class Transfer:
        id: str
        status: str
        amount: float
        created_at: FeatureTime

    return Transfer


@pytest.fixture
def frame(Transfer):
    rows = [
        {Transfer.id: "t1", Transfer.status: "successful", Transfer.amount: 10.0,
         Transfer.created_at: NOW - timedelta(days=1)},
        {Transfer.id: "t2", Transfer.status: "failed", Transfer.amount: 5.0,
         Transfer.created_at: NOW - timedelta(days=2)},
        {"transfer.id": "t3", "transfer.status": "successful", "transfer.amount": 2.5,
         "transfer.created_at": NOW - timedelta(days=90)},
    ]
    return DataFrame(rows, time_column=Transfer.created_at, now=NOW)


def test_rows_by_feature_or_fqn(frame):
    assert len(frame) == 3 and frame.count() == 3
    assert frame.columns == ["transfer.id", "transfer.status", "transfer.amount", "transfer.created_at"]
    assert [row["transfer.id"] for row in frame] == ["t1", "t2", "t3"]


def test_projection_and_aggregations(frame, Transfer):
    amounts = frame[Transfer.amount]
    assert amounts.columns == ["transfer.amount"]
    assert amounts.sum() == 17.5
    assert amounts.mean() == pytest.approx(17.5 / 3)
    assert amounts.min() == 2.5 and amounts.max() == 10.0
    assert frame[Transfer.id, Transfer.amount].columns == ["transfer.id", "transfer.amount"]


def test_filters_like_sink_subscripts(frame, Transfer):
    ok = frame[Transfer.status == "successful"]
    assert [r["transfer.id"] for r in ok] == ["t1", "t3"]
    recent_ok = frame[Transfer.status == "successful", after(days_ago=60)]
    assert [r["transfer.id"] for r in recent_ok] == ["t1"]
    assert recent_ok[Transfer.amount].sum() == 10.0
    assert [r["transfer.id"] for r in frame[before(days_ago=60)]] == ["t3"]
    assert [r["transfer.id"] for r in frame[Transfer.status.is_in(["failed"]) | (Transfer.amount < 3)]] == ["t2", "t3"]
    assert [r["transfer.id"] for r in frame[~(Transfer.status == "failed")]] == ["t1", "t3"]
    assert frame[(Transfer.amount >= 5) & (Transfer.amount <= 5)].count() == 1
    assert frame[Transfer.amount > 5].count() == 1 and frame[Transfer.amount != 5].count() == 2


def test_empty_results(frame, Transfer):
    none = frame[Transfer.status == "nope"]
    assert none.count() == 0
    assert none[Transfer.amount].sum() == 0
    assert none[Transfer.amount].mean() is None
    assert none[Transfer.amount].max() is None


def test_empty_frame_keeps_a_typed_schema(Transfer):
    empty = DataFrame([], columns=[Transfer.id, Transfer.amount, Transfer.created_at])
    assert empty.count() == 0
    assert empty.to_arrow().schema.field("transfer.amount").type == pa.float64()
    assert empty[Transfer.amount].sum() == 0


def test_declared_types_hold_beside_an_inferred_column():
    from decimal import Decimal

    @features
    class Fee:
        id: str
        rate: Decimal          # no fixed Arrow type: inferred
        amount: float
        charged_at: FeatureTime

    stamp = 1_772_323_200_000_000       # 2026-03-01, as the assemble stage holds timestamps
    frame = DataFrame([{Fee.id: "f1", Fee.rate: Decimal("0.5"), Fee.amount: 3, Fee.charged_at: stamp}],
                      columns=[Fee.id, Fee.rate, Fee.amount, Fee.charged_at], time_column=Fee.charged_at, now=NOW)
    schema = frame.to_arrow().schema
    assert (schema.field("fee.amount").type, schema.field("fee.charged_at").type) == (
        pa.float64(), pa.timestamp("us", tz="UTC"))
    assert frame.to_pylist()[0]["fee.charged_at"] == NOW
    assert frame[after(days_ago=1)].count() == 1


def test_aggregation_needs_one_column(frame):
    with pytest.raises(ValueError, match="exactly one column"):
        frame.sum()


def test_unknown_column(frame):
    with pytest.raises(KeyError, match="no column 'user.uuid'"):
        frame["user.uuid"]


def test_window_without_time_column(Transfer):
    frame = DataFrame([{Transfer.id: "t", Transfer.created_at: NOW}], now=NOW)
    with pytest.raises(KeyError, match="no time column"):
        frame[after(days_ago=1)]
    assert frame[after(days_ago=1, index=Transfer.created_at)].count() == 1


def test_arrow_round_trip_and_exports(frame):
    again = DataFrame(frame.to_arrow())
    assert again.to_pylist() == frame.to_pylist()
    assert frame.to_pylist()[0]["transfer.created_at"] == NOW - timedelta(days=1)
    pandas = pytest.importorskip("pandas")
    assert isinstance(frame.to_pandas(), pandas.DataFrame)
