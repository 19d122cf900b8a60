"""One reading of a user's time bound, on the command line and in a Dagster run config."""

from datetime import UTC, datetime, timedelta, timezone

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickguard.cli_types import ISO_TIME
from clickguard.times import parse_time
from clickguard_dagster.jobs import DlqReplayConfig


def test_a_time_without_offset_is_utc_and_an_offset_is_kept() -> None:
    assert parse_time("2026-12-06T05:00:00") == datetime(2026, 12, 6, 5, tzinfo=UTC)
    plus_one = parse_time("2026-12-06T06:00:00+01:00")
    assert plus_one.utcoffset() == timedelta(hours=1)
    assert plus_one == datetime(2026, 12, 6, 5, tzinfo=UTC)


@given(st.datetimes(timezones=st.one_of(st.none(), st.just(UTC),
                                        st.builds(lambda m: timezone(timedelta(minutes=m)),
                                                  st.integers(-14 * 60, 14 * 60)))))
def test_the_option_and_the_run_config_read_a_time_the_same_way(ts: datetime) -> None:
    text = ts.isoformat()
    expected = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    assert ISO_TIME.convert(text, None, None) == expected
    assert parse_time(DlqReplayConfig(since=text).since or "") == expected


@given(st.text(max_size=30))
def test_what_is_not_a_time_gets_the_same_message_in_both(text: str) -> None:
    try:
        parse_time(text)
    except ValueError as exc:
        message = str(exc)
    else:
        return  # (Hypothesis found a valid ISO time)
    assert "is not an ISO 8601 time; e.g." in message
    with pytest.raises(click.BadParameter) as cli_err:
        ISO_TIME.convert(text, None, None)
    assert message in str(cli_err.value)
    with pytest.raises(ValueError) as config_err:
        DlqReplayConfig(until=text)
    assert message in str(config_err.value)
