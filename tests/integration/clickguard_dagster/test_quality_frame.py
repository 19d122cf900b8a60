"""The checks' DataFrames (``checks.quality.frame``, COPY + Arrow) hold what a row fetch holds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from clickguard_dagster.checks.quality import frame

pytestmark = pytest.mark.integration

ODD_ROWS = """
SELECT * FROM (VALUES
  (1::bigint, 'a,b "quoted"'::text, true, 1.50::numeric(14,2), DATE '2026-01-02',
   TIMESTAMPTZ '2026-01-02 03:04:05.123456+02', 2.5::float8),
  (2, '', false, NULL, NULL, NULL, NULL),
  (3, NULL, NULL, -0.01, DATE '1999-12-31', TIMESTAMPTZ '1999-12-31 23:59:59+00', -1e300),
  (4, 'NULL', true, 0, DATE '2026-01-01', TIMESTAMPTZ '2026-01-01 00:00:00+00', 0),
  (5, E'line\\nbreak', false, 12345678.99, DATE '2026-01-01',
   TIMESTAMPTZ '2026-01-01 00:00:00+00', 0)
) AS t(id, txt, flag, amount, day, ts, x) WHERE id >= %(min_id)s
"""


def test_frame_keeps_nulls_empty_strings_and_types(pg: psycopg.Connection) -> None:
    df = frame(pg, ODD_ROWS, {"min_id": 1})
    fetched = pg.execute(ODD_ROWS, {"min_id": 1}).fetchall()
    assert list(df.columns) == ["id", "txt", "flag", "amount", "day", "ts", "x"]
    assert len(df) == len(fetched) == 5
    for got, row in zip(df.itertuples(index=False), fetched, strict=True):
        rid, txt, flag, amount, day, ts, x = row
        assert got.id == rid
        # NULL stays missing; '' and the text 'NULL' stay strings
        assert (got.txt is None or got.txt != got.txt) if txt is None else got.txt == txt
        assert (got.flag != got.flag or got.flag is None) if flag is None else got.flag == flag
        assert got.amount != got.amount if amount is None else got.amount == float(amount)
        assert got.day is None if day is None else got.day == day
        assert got.ts != got.ts if ts is None else got.ts.to_pydatetime() == ts
        assert got.x != got.x if x is None else got.x == x
    assert df.loc[1, "txt"] == "" and df.loc[3, "txt"] == "NULL"
    assert df.loc[0, "ts"].to_pydatetime() == datetime(2026, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)
    assert isinstance(fetched[0][3], Decimal) and df["amount"].dtype == "float64"
    assert df.loc[0, "day"] == date(2026, 1, 2)


def test_frame_of_no_rows_has_the_columns(pg: psycopg.Connection) -> None:
    df = frame(pg, ODD_ROWS, {"min_id": 99})
    assert df.empty
    assert list(df.columns) == ["id", "txt", "flag", "amount", "day", "ts", "x"]
