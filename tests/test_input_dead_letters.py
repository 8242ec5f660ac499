"""A sink's input that cannot be built for one entity (a has-many filter raising for a value) is
a dead letter naming the sink and the input; the other entities' calls go on."""
import json

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from sinks import sink
from transforms.assemble.related import RelatedRows
from transforms.call import DEAD_LETTERS, RESULTS, CallSink, RetryPolicy

NOW = 1_700_000_000_000_000   # µs


def transfers(user, amount):
    return RelatedRows([{"id": f"{user}-t", "user_id": user, "status": "ok", "amount": amount,
                         "created_at": NOW}], NOW)


def test_a_has_many_filter_failing_for_a_value_is_a_dead_letter_and_the_rest_go_on(bank):
    User, _, Transfer = bank

    @sink
    def large_transfers(uid: User.uuid, txns: User.transfers[Transfer.amount > 10]):
        return uid, txns.count()

    elements = [("u1", {"uid": "u1", "txns": transfers("u1", 12.5)}),
                ("u2", {"uid": "u2", "txns": transfers("u2", "abc")}),   # a value the filter cannot compare
                ("u3", {"uid": "u3", "txns": transfers("u3", 5.0)})]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = pipeline | beam.Create(elements) | CallSink(large_transfers, retry=RetryPolicy(attempts=1))
    assert_that(out[RESULTS], equal_to([("u1", ("u1", 1)), ("u3", ("u3", 0))]), label="delivered")
    letters = out[DEAD_LETTERS] | beam.Map(lambda d: (
        d["stage"], d["sink"], d["error"].split(":")[0], json.loads(d["key"]),
        json.loads(d["input"])["txns"][0]["amount"]))
    assert_that(letters, equal_to([("inputs", "large_transfers", "could not build input 'txns'", "u2", "abc")]),
                label="dead")
    pipeline.run().wait_until_finish()
