"""The one reading of a time bound a user types: on the command line (``cli_types.ISO_TIME``)
and in a Dagster run config (``dlq_replay``'s since/until) alike."""

from datetime import UTC, datetime

TIME_EXAMPLE = "e.g. 2026-12-03T13:00:00 (UTC) or 2026-12-03T14:00:00+01:00"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time, UTC unless it names an offset; ValueError saying what to type.

    A naive time is made UTC here, not left to PostgreSQL, which would read it in the session's
    time zone."""
    try:
        ts = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not an ISO 8601 time; {TIME_EXAMPLE}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
