"""Named value ranges for command-line options, so every CLI rejects the same bad values the
same way (a usage error before anything runs).

They live in the core because it is the one package every CLI may import: the tools are
layered (producer < stack < proof < cli) and the Dagster app imports no tool.
"""

import math
from datetime import datetime
from typing import Any

import click

from clickguard.times import parse_time


class FiniteRange(click.FloatRange):
    """click's FloatRange without nan and inf: nan passes every range check (comparisons with it
    are false) and ``--rate nan`` or ``--minutes inf`` then failed deep inside a command."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


POSITIVE = FiniteRange(min=0, min_open=True)
"""A rate, a duration or an interval: more than 0."""
NON_NEGATIVE = FiniteRange(min=0)
"""A pause or an idle time that may be 0."""
COUNT = click.IntRange(min=1)
"""How many of something to make or run: at least 1."""
COUNT_OR_ZERO = click.IntRange(min=0)
"""A count where 0 means none (e.g. no anomaly blocks, no warm-up)."""
SHARE = FiniteRange(0, 1)
"""A fraction between 0 and 1."""


class RateList(click.ParamType):
    """Comma-separated events/s (``2500,5000``), each at least ``minimum``: a ladder of rates.
    A 0 where it is not an idle step would mean "as fast as possible" to the producer."""

    name = "rates"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> list[int]:
        # click may hand back a value it converted already (a list): checked the same way
        items = value if isinstance(value, list) else str(value).split(",")
        parts = [str(p).strip() for p in items if str(p).strip()]
        try:
            rates = [int(p) for p in parts]
        except ValueError:
            self.fail(f"{value!r}: give whole events/s separated by commas, e.g. 2500,5000",
                      param, ctx)
        if not rates or min(rates) < self.minimum:
            self.fail(f"{value!r}: every rate must be >= {self.minimum} events/s", param, ctx)
        return rates


RATES = RateList(1)
"""Load steps in events/s, each at least 1."""
RATES_OR_IDLE = RateList(0)
"""Load steps in events/s where 0 is an idle step."""


class IsoTime(click.ParamType):
    """An ISO 8601 time, UTC unless it names an offset (``2026-12-03T13:00:00``)."""

    name = "iso-time"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


ISO_TIME = IsoTime()
"""A point in time on the command line (window bounds)."""
