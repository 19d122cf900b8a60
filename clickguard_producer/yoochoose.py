"""Replay of YOOCHOOSE (RecSys Challenge 2015) click and buy files, shifted to now.

Line formats (no header):
- click: ``session_id,timestamp,item_id,category``  (category "0" = unknown -> null)
- buy:   ``session_id,timestamp,item_id,price,quantity``
Timestamps look like ``2014-04-07T10:51:09.277Z``. A file may hold either kind (or both: the kind
is told by the number of fields). Events are replayed in timestamp order; the first one is sent
now and the gaps are divided by ``speed`` (60 = 60x faster than real time), so ``event_ts`` follows
the replay clock and is never in the future. ``speed`` <= 0 sends as fast as possible.

YOOCHOOSE buys contain price 0 / quantity 0 rows (unknown values); the contract rejects quantity 0
as out of range, so each event is labelled with the outcome `clickguard.contract.validate` predicts
(``_kind``), keeping the accounting exact on real data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickguard.contract import avro_int_range, validate
from clickguard_producer.faults import VALID, malformed


@dataclass(frozen=True, slots=True)
class YooEvent:
    """One parsed YOOCHOOSE line."""

    session_id: int
    ts_ms: int
    item_id: int
    category: str | None = None  # clicks
    price: float | None = None  # buys
    quantity: int | None = None  # buys

    @property
    def is_buy(self) -> bool:
        return self.price is not None


class ParseError(ValueError):
    """A line that is neither a click nor a buy line (or a file with none)."""


def parse_ts(text: str) -> int:
    """``2014-04-07T10:51:09.277Z`` -> epoch milliseconds."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _bounded(text: str, field: str) -> int:
    """``text`` as the contract's integer ``field``: one beyond its Avro type has no encoding,
    so it is refused here rather than sent as corrupt bytes."""
    value = int(text)
    low, high = avro_int_range(field)
    if not low <= value <= high:
        raise ValueError(f"{text} does not fit {field} (an Avro integer from {low} to {high})")
    return value


def parse_line(line: str) -> YooEvent:
    parts = line.strip().split(",")
    try:
        if len(parts) == 4:
            sid, ts, item, cat = parts
            return YooEvent(_bounded(sid, "session_id"), parse_ts(ts), _bounded(item, "item_id"),
                            category=None if cat == "0" else cat)
        if len(parts) == 5:
            sid, ts, item, price, qty = parts
            return YooEvent(_bounded(sid, "session_id"), parse_ts(ts), _bounded(item, "item_id"),
                            price=float(price), quantity=_bounded(qty, "quantity"))
    except (ValueError, OverflowError) as exc:
        raise ParseError(f"bad YOOCHOOSE line {line.strip()!r}: {exc}") from exc
    raise ParseError(f"bad YOOCHOOSE line {line.strip()!r}: {len(parts)} fields, want 4 or 5")


def read_files(paths: Iterable[Path]) -> list[YooEvent]:
    """All lines of ``paths`` parsed and sorted by timestamp (stable: file order on ties).

    The whole set is held in memory: fine for samples and day slices, not for the full 33 M lines.
    """
    events: list[YooEvent] = []
    for path in paths:
        with Path(path).open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ParseError(f"{path}:{lineno}: not UTF-8 text ({exc.reason} at byte "
                                     f"{exc.start} of the line): a YOOCHOOSE .dat file?") from exc
                if not line.strip():
                    continue
                try:
                    events.append(parse_line(line))
                except ParseError as exc:
                    raise ParseError(f"{path}:{lineno}: {exc}") from exc
    if not events:
        raise ParseError(f"no YOOCHOOSE lines in {', '.join(map(str, paths))}: nothing to replay")
    events.sort(key=lambda e: e.ts_ms)
    return events


def replay(
    events: list[YooEvent],
    speed: float = 60.0,
    source: str = "yoochoose",
    run_id: str | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """Contract-shaped event dicts, paced by ``speed``; each carries its expected ``_kind``."""
    if not events:
        return
    run_id = run_id or uuid.uuid4().hex[:12]
    t0_data = events[0].ts_ms
    t0_wall = clock()
    for i, e in enumerate(events):
        offset_s = (e.ts_ms - t0_data) / 1000 / speed if speed > 0 else 0.0
        if speed > 0:
            wait = t0_wall + offset_s - clock()
            if wait > 0:
                sleep(wait)
        ts = int((t0_wall + offset_s) * 1000) if speed > 0 else int(clock() * 1000)
        event: dict[str, Any] = {
            "event_id": f"yc-{run_id}-{i}",
            "event_ts": ts,
            "ingest_ts": ts,
            "source": source,
            "session_id": e.session_id,
            "user_id": None,
            "event_type": "purchase" if e.is_buy else "click",
            "item_id": e.item_id,
            "category": e.category,
            "price": e.price,
            "quantity": e.quantity,
            "page": None,
            "referrer": None,
        }
        problem = validate(event, now=datetime.fromtimestamp(ts / 1000 + 1, UTC))
        event["_kind"] = VALID if problem is None else malformed(problem[0])
        yield event
