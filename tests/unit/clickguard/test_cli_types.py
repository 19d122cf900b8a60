"""Named option ranges every CLI shares."""

import click
import pytest

from clickguard.cli_types import RATES, RATES_OR_IDLE


def test_a_rate_list_click_converted_already_is_checked_too() -> None:
    """click may pass a converted value (a list) to convert() again: no bypass of the check."""
    assert RATES_OR_IDLE.convert([0, 1000], None, None) == [0, 1000]
    assert RATES.convert("2500, 5000", None, None) == [2500, 5000]
    with pytest.raises(click.BadParameter, match="every rate must be >= 1"):
        RATES.convert([0, 5], None, None)
