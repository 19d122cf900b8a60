"""Named value ranges for command-line options, so every CLI rejects the same bad values the
same way (a usage error before anything runs).

They live in the core because it is the one package every CLI may import: the tools are
layered (producer < stack < proof < cli) and the Dagster app imports no tool.
"""

import click

POSITIVE = click.FloatRange(min=0, min_open=True)
"""A rate, a duration or an interval: more than 0."""
NON_NEGATIVE = click.FloatRange(min=0)
"""A pause or an idle time that may be 0."""
COUNT = click.IntRange(min=1)
"""How many of something to make or run: at least 1."""
COUNT_OR_ZERO = click.IntRange(min=0)
"""A count where 0 means none (e.g. no anomaly blocks, no warm-up)."""
SHARE = click.FloatRange(0, 1)
"""A fraction between 0 and 1."""
