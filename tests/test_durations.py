from datetime import timedelta

import pytest

from sinks.durations import INFINITY, parse_duration


@pytest.mark.parametrize("text, expected", [
    ("100ms", timedelta(milliseconds=100)),
    ("1s", timedelta(seconds=1)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("30m1h", timedelta(hours=1, minutes=30)),
    ("1w 2m", timedelta(weeks=1, minutes=2)),
    ("2d 3h 4m 5s 6ms", timedelta(days=2, hours=3, minutes=4, seconds=5, milliseconds=6)),
    ("0s", timedelta(0)),
    ("infinity", INFINITY),
    ("all", INFINITY),
])
def test_chalk_duration_strings(text, expected):
    assert parse_duration(text) == expected


def test_timedelta_and_int_seconds():
    assert parse_duration(timedelta(minutes=3)) == timedelta(minutes=3)
    assert parse_duration(90) == timedelta(seconds=90)


@pytest.mark.parametrize("bad", ["1.5h", "10", "1y", "-1s", "", "1s1s", "ms", "1 h", "1hh", "s1",
                                 -5, timedelta(seconds=-1), True, 1.5, None])
def test_everything_else_is_an_error(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_error_says_why():
    with pytest.raises(ValueError, match="unit 's' appears twice"):
        parse_duration("1s 2s")
