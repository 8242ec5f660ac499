"""Definitions with a stream resolver: raw bank events → feature updates of examples/bank.py."""
from examples.bank import Transfer, User, aggregate_user_transactions  # noqa: F401 - the sink to run
from sinks import stream


@stream(source="bank-events")
def bank_events(message: dict):
    if message["type"] == "user":
        return {User.uuid: message["id"], User.full_name: message["name"], User.ts: message["at"]}
    if message["type"] == "transfer":
        return Transfer(id=message["id"], user_id=message["user"], status=message["state"],
                        amount=message["cents"] / 100, created_at=message["at"])
    raise ValueError(f"unknown event type {message['type']!r}")
