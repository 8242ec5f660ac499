"""A Chalk user's definitions, with only the imports changed: a lending shop whose authors sell books
to shoppers, whose borrowers have tradelines and whose trips have drivers.

It uses the surface README's "Coming from Chalk" lists: ``@features``' and ``feature()``'s keywords,
defaults and limits, joins declared on one side only, features named like the project's own
attributes (``name``, ``kind``, ``type``, ``owner``, ``description``), ``== None`` filters,
``is_in``, long windows, struct/list/set features, Chalk's SQL source names, and ``environment``,
``tags`` and ``machine_type`` on ``@sink``.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import List, Optional, Set

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sinks import (
    BigQuerySource, ClickhouseSource, CloudSQLSource, DatabricksSource, DataFrame, FeatureTime, MSSQLSource,
    PostgreSQLSource, RedshiftSource, SnowflakeSource, TrinoSource, after, before, feature, features, has_many,
    sink,
)

# Chalk's source names import and read Chalk's environment variables; a sink writing to one needs
# its dialect package (the setup.py extra named in the error), so these stay unattached here.
WAREHOUSES = (SnowflakeSource(), BigQuerySource(), RedshiftSource(), DatabricksSource(), CloudSQLSource(),
              MSSQLSource(), ClickhouseSource(), TrinoSource())
DATABASE = PostgreSQLSource()


@dataclasses.dataclass
class Address:
    street: str
    city: str
    postcode: Optional[str] = None


@features(owner="catalog@shop.example", tags=["team:catalog"], max_staleness="1d",
          etl_offline_to_online=True)
class Author:
    """Writers whose books the shop sells."""
    id: str
    name: str = feature(description="as printed on the cover", min_length=1, max_length=200, strict=True)
    books: DataFrame[Book] = has_many(lambda: Book.author_id == Author.id)


@features(name="books", singleton=False)
class Book:
    id: str
    author_id: str
    author: Author                          # joined by Author.books' lambda, turned round
    kind: str = "paperback"                 # a plain default, as in Chalk
    price: float = feature(min=0, max=10_000, strict=True, default=0.0, dtype="float64", version=1)
    genres: Set[str] = feature(max_length=10)


@features
class Purchase:
    id: str
    shopper_id: Shopper.id
    book_id: Book.id
    book: Book
    amount: float
    coupon: Optional[str] = feature(description="the coupon code, when one was used")
    channel: str
    bought_at: FeatureTime


@features(description="People who buy books")
class Shopper:
    id: str
    name: str
    address: Optional[Address]
    nicknames: List[str] = feature(default=[])
    purchases: DataFrame[Purchase]


@features
class Tradeline:
    id: str
    user_id: str
    balance: float
    opened_at: FeatureTime


@features
class Borrower:
    id: Tradeline.user_id                   # the parent's key names the children's column
    tradelines: DataFrame[Tradeline]


@features
class Driver:
    id: str
    name: str
    kind: str
    type: str
    owner: str
    description: Optional[str]


@features
class Trip:
    id: str
    driver_id: Driver.id
    driver: Driver
    distance_km: float = feature(min=0, strict=True)
    ts: datetime


class Base(DeclarativeBase):
    pass


class ShopperSpend(Base):
    __tablename__ = "shopper_spend"
    shopper_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    full_price: Mapped[int] = mapped_column(Integer)
    with_coupon: Mapped[int] = mapped_column(Integer)
    online_total: Mapped[float] = mapped_column(Float)


class TripLog(Base):
    __tablename__ = "trip_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trip_id: Mapped[str] = mapped_column(String(64))
    driver_name: Mapped[str] = mapped_column(String(256))
    driver_kind: Mapped[str] = mapped_column(String(64))
    driver_owner: Mapped[str] = mapped_column(String(256))


class BorrowerExposure(Base):
    __tablename__ = "borrower_exposure"
    borrower_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    balance: Mapped[float] = mapped_column(Float)
    old_lines: Mapped[int] = mapped_column(Integer)


@sink(integration=DATABASE, upsert=True, environment=["prod", "staging"], tags=["team:growth"],
      machine_type="n2-standard-2", owner="growth@shop.example")
def shopper_spend(
    sid: Shopper.id,
    full_price: Shopper.purchases[Purchase.coupon == None, after(years_ago=1)],  # noqa: E711 - Chalk's is-null
    with_coupon: Shopper.purchases[Purchase.coupon != None, after(months_ago=6)],  # noqa: E711
    online: Shopper.purchases[Purchase.channel.is_in(["web", "app"]), Purchase.amount > 0],
) -> ShopperSpend:
    return ShopperSpend(shopper_id=sid, full_price=full_price.count(), with_coupon=with_coupon.count(),
                        online_total=online[Purchase.amount].sum())


@sink(integration=DATABASE)
def trip_log(trip: Trip.id, name: Trip.driver.name, kind: Trip.driver.kind,
             owner: Trip.driver.owner) -> TripLog:
    return TripLog(trip_id=trip, driver_name=name, driver_kind=kind, driver_owner=owner)


@sink(integration=DATABASE, upsert=True, environment="prod")
def borrower_exposure(
    bid: Borrower.id,
    lines: Borrower.tradelines[Tradeline.balance >= 0],
    old: Borrower.tradelines[before(years_ago=2)],
) -> BorrowerExposure:
    return BorrowerExposure(borrower_id=bid, balance=lines[Tradeline.balance].sum(), old_lines=old.count())


@sink(tags="vendor:mock")
def book_shelf(book: Book.id, author: Book.author.name, kind: Book.kind) -> None:
    """A custom sink reading a has-one joined only from the other side."""
