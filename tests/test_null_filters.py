"""``== None`` / ``!= None`` in a filter mean is-null / is-not-null, as in Chalk (issue 17, defect 1)."""
from datetime import datetime, timezone
from typing import Optional

import pytest

from sinks import DataFrame, after, features
from sinks.filters import IsNull, Not
from transforms.assemble.related import RelatedRows
from transforms.assemble.parse import to_micros

NOW = datetime(2024, 5, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def shop():
    @features
    class Order:
        id: str
        customer_id: "Customer.id"
        coupon_code: Optional[str]
        ts: datetime

    @features
    class Customer:
        id: str
        orders: DataFrame[Order]

    return Customer, Order


def _frame(Customer, Order, ref):
    rows = [{"id": "o1", "customer_id": "c", "coupon_code": None, "ts": to_micros(NOW)},
            {"id": "o2", "customer_id": "c", "coupon_code": "SPRING", "ts": to_micros(NOW)},
            {"id": "o3", "customer_id": "c", "coupon_code": None, "ts": to_micros(NOW)}]
    return RelatedRows(rows, to_micros(NOW)).frame(ref)


def test_eq_none_is_an_is_null_filter(shop):
    Customer, Order = shop
    assert isinstance(Order.coupon_code == None, IsNull)  # noqa: E711 - Chalk's spelling
    assert isinstance(Order.coupon_code != None, Not)  # noqa: E711
    assert repr(Order.coupon_code == None) == "Order.coupon_code == None"  # noqa: E711
    assert repr(Order.coupon_code != None) == "Order.coupon_code != None"  # noqa: E711


def test_eq_none_keeps_the_rows_without_a_value(shop):
    Customer, Order = shop
    ref = Customer.orders[Order.coupon_code == None, after(days_ago=1)]  # noqa: E711
    frame = _frame(Customer, Order, ref)
    assert sorted(r["order.id"] for r in frame) == ["o1", "o3"]


def test_ne_none_keeps_the_rows_with_a_value(shop):
    Customer, Order = shop
    frame = _frame(Customer, Order, Customer.orders[Order.coupon_code != None])  # noqa: E711
    assert [r["order.id"] for r in frame] == ["o2"]


def test_null_filters_combine(shop):
    Customer, Order = shop
    either = (Order.coupon_code == None) | (Order.id == "o2")  # noqa: E711
    assert len(_frame(Customer, Order, Customer.orders[either])) == 3
    assert len(_frame(Customer, Order, Customer.orders[~(Order.coupon_code == None)])) == 1  # noqa: E711
