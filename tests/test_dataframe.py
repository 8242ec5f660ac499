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


# Chalk's DataFrame methods on a sink's input ------------------------------------------------

def test_shape_columns_is_empty_item(frame, Transfer):
    assert frame.shape == (3, 4)
    assert frame.columns[1] == "transfer.status"
    assert not frame.is_empty() and frame[Transfer.status == "nope"].is_empty()
    assert frame[Transfer.id == "t2"][Transfer.amount].item() == 5.0
    with pytest.raises(ValueError, match="1 row and 1 column"):
        frame[Transfer.amount].item()


def test_from_dict_and_from_list(Transfer):
    by_columns = DataFrame.from_dict({Transfer.id: ["a", "b"], "transfer.amount": [1.0, 2.5]})
    by_rows = DataFrame.from_list([{Transfer.id: "a", Transfer.amount: 1.0},
                                   {"transfer.id": "b", "transfer.amount": 2.5}])
    assert by_columns.to_pylist() == by_rows.to_pylist() == [
        {"transfer.id": "a", "transfer.amount": 1.0}, {"transfer.id": "b", "transfer.amount": 2.5}]
    assert DataFrame({Transfer.amount: [1.0, 2.0]})[Transfer.amount].sum() == 3.0
    with pytest.raises(ValueError, match="differ in length"):
        DataFrame.from_dict({Transfer.id: ["a"], Transfer.amount: [1.0, 2.0]})


def test_sort_and_slice(frame, Transfer):
    assert [r["transfer.id"] for r in frame.sort(Transfer.amount)] == ["t3", "t2", "t1"]
    assert [r["transfer.id"] for r in frame.sort(Transfer.amount, descending=True)] == ["t1", "t2", "t3"]
    assert [r["transfer.id"] for r in frame.sort([Transfer.status, Transfer.amount], descending=[True, False])] == [
        "t3", "t1", "t2"]
    with_null = DataFrame({Transfer.id: ["a", "b", "c"], Transfer.amount: [2.0, None, 1.0]})
    assert [r["transfer.id"] for r in with_null.sort(Transfer.amount)] == ["c", "a", "b"]   # nulls last
    assert [r["transfer.id"] for r in frame.slice(1)] == ["t2", "t3"]
    assert [r["transfer.id"] for r in frame.slice(0, 2)] == ["t1", "t2"]
    assert [r["transfer.id"] for r in frame.slice(-1)] == ["t3"] and frame.slice(5).count() == 0


def test_statistics(frame, Transfer):
    amounts = frame[Transfer.amount]            # 10.0, 5.0, 2.5
    assert amounts.median() == 5.0
    assert DataFrame({Transfer.amount: [1.0, 2.0, 4.0, 10.0]})[Transfer.amount].median() == 3.0
    assert amounts.var() == pytest.approx(sum((v - 17.5 / 3) ** 2 for v in (10.0, 5.0, 2.5)) / 2)
    assert amounts.std() == pytest.approx(amounts.var() ** 0.5)
    assert amounts.var(ddof=0) == pytest.approx(sum((v - 17.5 / 3) ** 2 for v in (10.0, 5.0, 2.5)) / 3)
    single = DataFrame({Transfer.amount: [4.0]})[Transfer.amount]
    assert single.var() is None and single.std() is None and single.median() == 4.0
    assert frame[Transfer.status].num_unique() == 2
    assert frame.num_unique(Transfer.status) == 2 and frame.num_unique() == 3
    assert DataFrame({Transfer.status: ["a", None, None]}).num_unique() == 2


def test_any_all():
    flags = DataFrame({"x.flag": [True, False, None]})
    assert flags.any() and not flags.all()
    assert DataFrame({"x.flag": [True, True]}).all() and not DataFrame({"x.flag": [False]}).any()
    assert DataFrame({"x.flag": []}).all() and not DataFrame({"x.flag": []}).any()


def test_group_by_with_aggregations(frame, Transfer):
    from sinks import op
    grouped = frame.group_by(group={Transfer.status: Transfer.status},
                             agg={Transfer.amount: op.sum(Transfer.amount), "transfer.n": op.count(),
                                  "transfer.largest": op.max(Transfer.amount)})
    assert grouped.to_pylist() == [
        {"transfer.status": "successful", "transfer.amount": 12.5, "transfer.n": 2, "transfer.largest": 10.0},
        {"transfer.status": "failed", "transfer.amount": 5.0, "transfer.n": 1, "transfer.largest": 5.0}]
    with pytest.raises(TypeError, match="op.sum"):
        frame.group_by(group={Transfer.status: Transfer.status}, agg={Transfer.amount: "sum"})


def test_exports(frame):
    assert frame.to_pyarrow().num_rows == 3
    assert frame.to_pandas()["transfer.amount"].tolist() == [10.0, 5.0, 2.5]
    try:
        import polars  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install polars"):
            frame.to_polars()
    else:
        assert frame.to_polars().shape == (3, 4)


def test_null_comparisons_are_is_null(Transfer):
    frame = DataFrame({Transfer.id: ["a", "b", "c"], Transfer.status: ["ok", None, "no"]})
    assert [r["transfer.id"] for r in frame[Transfer.status == None]] == ["b"]  # noqa: E711
    assert [r["transfer.id"] for r in frame[Transfer.status != None]] == ["a", "c"]  # noqa: E711
    # Any other comparison with a null is unknown, and so is its negation: the row is left out.
    assert [r["transfer.id"] for r in frame[~(Transfer.status == "ok")]] == ["c"]
    assert [r["transfer.id"] for r in frame[(Transfer.status == "ok") | (Transfer.id == "b")]] == ["a", "b"]


def test_same_answers_as_arrow(frame, Transfer):
    """The list-backed evaluation agrees with Arrow's kernels (the filters' own ``mask``)."""
    conditions = [Transfer.status == "successful", after(days_ago=60), Transfer.amount >= 5,
                  Transfer.status.is_in(["failed", "x"]), ~(Transfer.amount < 3) | (Transfer.status == "failed")]
    table = frame.to_arrow()
    for condition in conditions:
        mask = condition.mask(table, frame._column_or_time, NOW)
        expected = table.filter(mask, null_selection_behavior="drop").to_pylist()
        assert frame[condition].to_pylist() == expected, condition
