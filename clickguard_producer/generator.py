"""Seeded, realistic clickstream with injected, labelled anomalies and their ground truth.

Normal traffic: many concurrent sessions, each a funnel (page_view -> click -> add_to_cart ->
checkout -> purchase, with remove_from_cart and rare error events), items drawn with a Zipf
popularity skew from a catalogue of categories with per-item prices. A normal session never has
more than ``max_session_events`` (< 50) events, so it can never trip the two session rules.

Anomalies are blocks of events with explicit ``event_ts`` placed inside one aligned window in the
recent past (never in the future, never older than a few minutes, so never late):

- HIGH_FREQUENCY: one session, 60 clicks on >= 30 distinct items inside ONE 10-s tumbling window
  (unique/clicks = 0.5, so not BOT_LIKE).
- BOT_LIKE: one session, 60 clicks on 2 items spread over 38 s inside ONE 60-s window that slides
  every 30 s (ratio 0.033); at most 16 clicks fall in any 10-s window, so not HIGH_FREQUENCY, and
  each neighbouring sliding window holds <= 45 clicks, so exactly one window is flagged.
- TRAFFIC_SPIKE: ``spike_events`` page views/clicks on one category inside one minute, over many
  short sessions (<= 10 events each); successive spikes rotate over the 5 quietest categories.
- ERROR_BURST: ``error_burst_events`` error events inside one minute, over many sessions.

Sized injections (``inject(kind, size=...)`` / ``level=...``) place a block just above or just
below a rule's threshold (the thresholds are in the config, defaults = the settings' defaults), so
the rules can be measured at their edge: HIGH_FREQUENCY/BOT_LIKE take a click count (BOT_LIKE also
a number of distinct items), ERROR_BURST the minute's TOTAL of error events (the generator counts
its own background errors and adds the rest), TRAFFIC_SPIKE a ``level`` = multiple of the smallest
count that fires against the category's own recent per-minute mean (the generator counts that too).
Sized spikes go to mid-sized categories (`Catalog.spike_categories`); session anomalies never
click items of a spike category, so blocks never add up to a neighbouring rule's threshold.

Ground truth (`GroundTruth`): type, entity (session id / category / "all"), window start/end,
size, threshold, whether the block is above it, and its last event id (for detection delays);
written as JSON lines so precision and recall can be computed against the anomalies table.
Every event of an anomaly block carries the extra key ``_anomaly`` (ignored by the encoders);
fault injection leaves such events untouched so the ground truth stays exact.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickguard_producer import wire

ANOMALY_TYPES = ("HIGH_FREQUENCY", "BOT_LIKE", "TRAFFIC_SPIKE", "ERROR_BURST")
CATEGORIES = (
    "electronics", "books", "fashion", "home", "sports", "toys", "beauty", "grocery", "garden",
    "automotive", "music", "games", "health", "office", "pets", "baby", "jewelry", "shoes",
    "tools", "travel",
)
SOURCES = ("web", "ios", "android")
REFERRERS = ("google", "facebook", "instagram", "email", "partner", None, None)

Event = dict[str, Any]


@dataclass(frozen=True)
class Item:
    item_id: int
    category: str
    price: float


@dataclass
class GeneratorConfig:
    """Knobs of the generator; the defaults give a plausible shop at any rate."""

    seed: int = 42
    run_id: str | None = None  # prefix of event ids; None = random, so reruns never collide
    source: str = "generator"
    n_items: int = 5000
    zipf_s: float = 1.1  # item popularity skew
    concurrent_sessions: int = 200
    max_session_events: int = 40  # < 50 so that normal sessions never look like anomalies
    error_rate: float = 0.0001  # per normal event; keep well below the ERROR_BURST threshold
    time_offset_s: float = 0.0  # shifts every event_ts (tests simulate other times)
    anomaly_every: int = 0  # inject one anomaly block every N normal events (0 = never)
    anomaly_types: tuple[str, ...] = ANOMALY_TYPES  # cycled in this order
    session_clicks: int = 60  # clicks of a HIGH_FREQUENCY / BOT_LIKE session (> 50)
    spike_events: int = 3000  # events of a TRAFFIC_SPIKE in its minute
    error_burst_events: int = 300  # error events of an ERROR_BURST in its minute
    # the rules' thresholds, for sized injections (defaults = clickguard.settings defaults)
    high_frequency_clicks: int = 50
    bot_like_clicks: int = 50
    bot_like_unique_ratio: float = 0.1
    error_burst_per_minute: int = 100
    spike_z_threshold: float = 4.0
    spike_min_relative_std: float = 0.1
    spike_dispersion: float = 4.0
    spike_min_events: int = 100
    # one of ``shards`` independent, interleavable streams of the same run (parallel producing):
    # own RNG seed, event ids seq*shards + shard, session ids likewise; shards=1 = the classic
    # stream, so the same seed gives the same events as before
    shard: int = 0
    shards: int = 1


@dataclass(frozen=True)
class GroundTruth:
    """One injected anomaly: what a perfect detector reports."""

    type: str
    entity: str  # session id, category, or "all"
    window_start: str  # ISO 8601 UTC, inclusive
    window_end: str  # ISO 8601 UTC, exclusive
    events: int
    session_id: int | None = None
    category: str | None = None
    size: float | None = None  # in the rule's unit: clicks in the window, events in the minute
    threshold: float | None = None  # the smallest size that must fire
    above: bool = True  # False: a block just below the threshold, which must NOT fire
    last_event_id: str | None = None  # its ingest time starts the detection delay

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class Catalog:
    """Items with categories and prices; popularity follows a Zipf law over item rank."""

    def __init__(self, rng: random.Random, n_items: int, zipf_s: float) -> None:
        cat_weights = [1 / (r + 1) ** 0.8 for r in range(len(CATEGORIES))]
        base_price = {c: rng.uniform(5, 200) for c in CATEGORIES}
        self.items: list[Item] = []
        for i in range(n_items):
            cat = rng.choices(CATEGORIES, weights=cat_weights)[0]
            price = round(base_price[cat] * rng.lognormvariate(0, 0.5), 2)
            self.items.append(Item(100_000 + i * 7 + rng.randrange(7), cat, price))
        weights = [1 / (r + 1) ** zipf_s for r in range(n_items)]
        self._cum = list(itertools.accumulate(weights))
        self.by_category: dict[str, list[Item]] = {c: [] for c in CATEGORIES}
        for it in self.items:
            self.by_category[it.category].append(it)
        # least popular non-empty categories: a spike there stands out most against its
        # baseline; successive spikes rotate over them so no baseline learns "spiky is normal"
        self.quiet_categories = sorted(
            (c for c in CATEGORIES if self.by_category[c]),
            key=lambda c: (len(self.by_category[c]), c),
        )[:5]
        self.quiet_category = self.quiet_categories[0]
        total = self._cum[-1]
        share = dict.fromkeys(CATEGORIES, 0.0)
        for it, w in zip(self.items, weights, strict=True):
            share[it.category] += w / total
        self.share = share
        # sized spikes: categories with 2-12 % of the traffic, so a count well above the Poisson
        # noise and a spike that cannot lift the overall ('all') count to a spike of its own
        self.spike_categories = sorted(
            (c for c in CATEGORIES if 0.02 <= share[c] <= 0.12), key=lambda c: -share[c]
        )[:6] or self.quiet_categories
        excluded = {*self.spike_categories, *self.quiet_categories}
        self.plain_items = [it for it in self.items if it.category not in excluded] or self.items

    def sample(self, rng: random.Random) -> Item:
        return self.items[bisect.bisect_left(self._cum, rng.random() * self._cum[-1])]

    def sample_in(self, rng: random.Random, category: str) -> Item:
        pool = self.by_category[category]
        # skew inside the category as well: low indexes are the popular ones
        return pool[min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)]


@dataclass
class _Session:
    session_id: int
    user_id: int | None
    referrer: str | None
    steps: list[tuple[str, Item | None, int | None]] = field(default_factory=list)
    pos: int = 0
    head: bytes = b""  # pre-encoded source, session_id, user_id (wire.session_part)
    foot: bytes = b""  # pre-encoded referrer (wire.referrer_part)


class Generator:
    """Infinite, seeded stream of contract-shaped event dicts (timestamps in epoch ms).

    Same seed and run_id => same events (apart from timestamps, which follow the clock).
    """

    def __init__(
        self, config: GeneratorConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = cfg = config or GeneratorConfig()
        if not 0 <= cfg.shard < cfg.shards:
            raise ValueError(f"shard {cfg.shard} is not in 0..{cfg.shards - 1}")
        self.rng = random.Random(cfg.seed)
        self.clock = clock
        self.run_id = cfg.run_id or uuid.uuid4().hex[:12]
        digest = hashlib.sha256(self.run_id.encode()).digest()
        # session ids: a per-run base (2^24 sessions each) so runs do not share sessions; kept
        # below 2^53 so JSON consumers (JavaScript dashboards) read them exactly
        self._session_base = (int.from_bytes(digest[:4], "big") % (1 << 28)) << 24
        self._sessions = itertools.count(1 + cfg.shard, cfg.shards)
        self._seq = itertools.count(cfg.shard, cfg.shards)
        self.catalog = Catalog(self.rng, cfg.n_items, cfg.zipf_s)
        if cfg.shards > 1:  # same catalogue in every shard, own sessions: a str seed never
            self.rng = random.Random(f"{cfg.seed}/{cfg.shard}")  # collides with an int one
        self.ground_truth: list[GroundTruth] = []
        self._item_parts: dict[tuple[str, int, int | None], tuple[Any, ...]] = {}
        self._id_prefix = f"{self.run_id}-"
        self._pool = [self._new_session() for _ in range(cfg.concurrent_sessions)]
        self._pool_size = len(self._pool)
        self._anomaly_cycle = itertools.cycle(cfg.anomaly_types) if cfg.anomaly_types else None
        self._normal_since_anomaly = 0
        self._spikes = 0
        self._sized_spikes = 0
        # normal events per minute (epoch ms) and category, "" = error events: sized injections
        self.minute_counts: dict[int, Counter[str]] = {}
        self._minute = -1
        self._tally: Counter[str] = Counter()

    # -- time and ids ------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int((self.clock() + self.config.time_offset_s) * 1000)

    def next_event_id(self) -> str:
        return f"{self._id_prefix}{next(self._seq)}"

    def _next_session_id(self) -> int:
        return self._session_base + next(self._sessions)

    # -- normal sessions ---------------------------------------------------------------------
    def _new_session(self) -> _Session:
        rng, cat = self.rng, self.catalog
        s = _Session(
            self._next_session_id(),
            rng.randrange(1, 2_000_000) if rng.random() < 0.6 else None,
            rng.choice(REFERRERS),
        )
        steps: list[tuple[str, Item | None, int | None]] = [("page_view", None, None)]
        interest = cat.sample(rng).category
        viewed: list[Item] = []
        for _ in range(min(int(rng.expovariate(1 / 6)) + 1, 15)):
            item = cat.sample_in(rng, interest) if rng.random() < 0.6 else cat.sample(rng)
            viewed.append(item)
            steps.append(("page_view", item, None))
            if rng.random() < 0.7:
                steps.append(("click", item, None))
        cart: list[Item] = []
        if rng.random() < 0.35:
            for item in rng.sample(viewed, k=min(len(viewed), rng.randint(1, 3))):
                steps.append(("add_to_cart", item, None))
                cart.append(item)
            if len(cart) > 1 and rng.random() < 0.2:
                dropped = cart.pop()
                steps.append(("remove_from_cart", dropped, None))
            if rng.random() < 0.55:
                steps.append(("checkout", None, None))
                if rng.random() < 0.75:
                    steps.extend(("purchase", item, rng.randint(1, 3)) for item in cart)
        s.steps = steps[: self.config.max_session_events]
        s.head = wire.session_part(self.config.source, s.session_id, s.user_id)
        s.foot = wire.referrer_part(s.referrer)
        return s

    def _item_fields(self, kind: str, item: Item | None, qty: int | None) -> tuple[Any, ...]:
        """item_id, category, price, quantity, page and their encoding (wire.item_part)."""
        e = self._event(0, kind, item, qty, None, None, 0)
        fields = (e["item_id"], e["category"], e["price"], e["quantity"], e["page"])
        out = (*fields, wire.item_part(kind, *fields))
        self._item_parts[(kind, item.item_id if item else 0, qty)] = out
        return out

    def _normal_event(self) -> Event:
        rng = self.rng
        idx = int(rng.random() * self._pool_size)
        s = self._pool[idx]
        kind, item, qty = s.steps[s.pos]
        s.pos += 1
        if s.pos >= len(s.steps):
            self._pool[idx] = self._new_session()
        if rng.random() < self.config.error_rate:
            kind, item, qty = "error", None, None
        ts = self.now_ms()
        minute = ts - ts % 60_000
        if minute != self._minute:
            self._new_minute(minute)
        if item is not None:
            self._tally[item.category] += 1
        elif kind == "error":
            self._tally[""] += 1
        # the dict of _event, inlined with cached item fields: this runs once per event
        f = self._item_parts.get((kind, item.item_id if item else 0, qty))
        if f is None:
            f = self._item_fields(kind, item, qty)
        return {
            "event_id": f"{self._id_prefix}{next(self._seq)}",
            "event_ts": ts,
            "ingest_ts": ts,
            "source": self.config.source,
            "session_id": s.session_id,
            "user_id": s.user_id,
            "event_type": kind,
            "item_id": f[0],
            "category": f[1],
            "price": f[2],
            "quantity": f[3],
            "page": f[4],
            "referrer": s.referrer,
            wire.TAIL: s.head + f[5] + s.foot,
        }

    def _new_minute(self, minute: int) -> None:
        self._minute = minute
        self._tally = self.minute_counts.setdefault(minute, Counter())
        for old in [m for m in self.minute_counts if m < minute - 15 * 60_000]:
            del self.minute_counts[old]

    def _event(
        self,
        session_id: int,
        kind: str,
        item: Item | None,
        qty: int | None,
        user_id: int | None,
        referrer: str | None,
        ts: int,
    ) -> Event:
        return {
            "event_id": self.next_event_id(),
            "event_ts": ts,
            "ingest_ts": ts,  # overwritten with the send time by the producer
            "source": self.config.source,
            "session_id": session_id,
            "user_id": user_id,
            "event_type": kind,
            "item_id": item.item_id if item else None,
            "category": item.category if item else None,
            "price": item.price if kind == "purchase" and item else None,
            "quantity": qty if kind == "purchase" else None,
            "page": _page(kind, item),
            "referrer": referrer,
        }

    # -- anomalies ---------------------------------------------------------------------------
    def inject(
        self, anomaly_type: str, size: int | None = None, level: float | None = None,
        distinct: int | None = None,
    ) -> list[Event]:
        """The events of one anomaly block (sorted by event_ts); records its ground truth.

        Default sizes are well above the thresholds. ``size`` (HIGH_FREQUENCY/BOT_LIKE clicks,
        ERROR_BURST total errors in the minute) or ``level`` (TRAFFIC_SPIKE: multiple of the
        smallest count that fires) place the block near the threshold; ``distinct`` = BOT_LIKE's
        distinct items (default 2).
        """
        now = self.now_ms()
        if anomaly_type == "HIGH_FREQUENCY":
            events, truth = self._high_frequency(now, size)
        elif anomaly_type == "BOT_LIKE":
            events, truth = self._bot_like(now, size, distinct)
        elif anomaly_type == "TRAFFIC_SPIKE":
            events, truth = self._traffic_spike(now, level)
        elif anomaly_type == "ERROR_BURST":
            events, truth = self._error_burst(now, size)
        else:
            raise ValueError(f"unknown anomaly type {anomaly_type!r}; one of {ANOMALY_TYPES}")
        for e in events:
            e["_anomaly"] = anomaly_type
        events.sort(key=lambda e: e["event_ts"])
        if events:
            truth = replace(truth, last_event_id=events[-1]["event_id"])
        self._record_truth(truth)
        return events

    def _record_truth(self, truth: GroundTruth) -> None:
        """Blocks of one type landing in the same entity and window are ONE anomaly."""
        for i, g in enumerate(self.ground_truth):
            if (g.type, g.entity, g.window_start) == (truth.type, truth.entity, truth.window_start):
                self.ground_truth[i] = replace(g, events=g.events + truth.events)
                return
        self.ground_truth.append(truth)

    def _high_frequency(self, now: int, size: int | None) -> tuple[list[Event], GroundTruth]:
        cfg = self.config
        n = size or cfg.session_clicks
        ws = (now // 10_000) * 10_000 - 10_000  # the last complete 10-s tumbling window
        sid = self._next_session_id()
        plain = self.catalog.plain_items
        items = [self.rng.choice(plain) for _ in range(n)]
        items = [*self.rng.sample(plain, k=n // 2), *items][:n]  # >= n/2 distinct
        step = 9_000 // n
        events = [
            self._event(sid, "click", it, None, None, None, ws + 100 + i * step)
            for i, it in enumerate(items)
        ]
        thr = cfg.high_frequency_clicks
        return events, GroundTruth(
            "HIGH_FREQUENCY", str(sid), iso_ms(ws), iso_ms(ws + 10_000), n, session_id=sid,
            size=n, threshold=thr + 1, above=n > thr,
        )

    def _bot_like(
        self, now: int, size: int | None, distinct: int | None
    ) -> tuple[list[Event], GroundTruth]:
        cfg = self.config
        n = size or cfg.session_clicks
        k = distinct or 2
        ws = (now // 30_000) * 30_000 - 60_000  # a sliding window that ended by now
        sid = self._next_session_id()
        few = self.rng.sample(self.catalog.plain_items, k=k)
        step = 38_000 // n
        events = [
            self._event(sid, "click", few[i % k], None, None, None, ws + 2_000 + i * step)
            for i in range(n)
        ]
        above = n > cfg.bot_like_clicks and k / n < cfg.bot_like_unique_ratio
        return events, GroundTruth(
            "BOT_LIKE", str(sid), iso_ms(ws), iso_ms(ws + 60_000), n, session_id=sid,
            size=n, threshold=cfg.bot_like_clicks + 1, above=above,
        )

    def _minute_block(
        self, now: int, n: int, kind_of: Callable[[int], str], category: str | None
    ) -> list[Event]:
        ms = (now // 60_000) * 60_000 - 60_000  # the last complete minute
        events: list[Event] = []
        sid = 0
        for i in range(n):
            if i % 10 == 0:  # short sessions: never a session anomaly
                sid = self._next_session_id()
            item = self.catalog.sample_in(self.rng, category) if category else None
            ts = ms + 50 + (i * 59_000) // max(n, 1)
            events.append(self._event(sid, kind_of(i), item, None, None, None, ts))
        return events

    def spike_threshold(self, category: str, minute: int) -> float:
        """The smallest count of ``category`` in ``minute`` that the TRAFFIC_SPIKE rule flags.

        Baseline = mean of the generator's own counts over the (up to 5) full minutes before,
        deviation = the rule's floors (dispersion × mean, relative share): what a steady EWMA
        converges to.
        """
        cfg = self.config
        full = [
            m for m in sorted(self.minute_counts)
            if m < minute and m - 60_000 in self.minute_counts
        ][-5:]
        counts = [self.minute_counts[m][category] for m in full] or [
            self.minute_counts.get(minute, Counter())[category]
        ]
        mean = sum(counts) / len(counts)
        std = max(
            math.sqrt(cfg.spike_dispersion * max(mean, 1.0)), cfg.spike_min_relative_std * mean
        )
        return max(float(cfg.spike_min_events), mean + cfg.spike_z_threshold * std)

    def _traffic_spike(self, now: int, level: float | None) -> tuple[list[Event], GroundTruth]:
        ms = (now // 60_000) * 60_000 - 60_000
        if level is None:
            n = self.config.spike_events
            quiet = self.catalog.quiet_categories
            cat = quiet[self._spikes % len(quiet)]
            self._spikes += 1
            events = self._minute_block(now, n, lambda i: "click" if i % 2 else "page_view", cat)
            return events, GroundTruth(
                "TRAFFIC_SPIKE", cat, iso_ms(ms), iso_ms(ms + 60_000), n, category=cat
            )
        cats = self.catalog.spike_categories
        cat = cats[self._sized_spikes % len(cats)]
        self._sized_spikes += 1
        thr = self.spike_threshold(cat, ms)
        total = math.ceil(level * thr)
        n = max(0, total - self.minute_counts.get(ms, Counter())[cat])
        events = self._minute_block(now, n, lambda i: "click" if i % 2 else "page_view", cat)
        return events, GroundTruth(
            "TRAFFIC_SPIKE", cat, iso_ms(ms), iso_ms(ms + 60_000), n, category=cat,
            size=total, threshold=round(thr, 1), above=total > thr,
        )

    def _error_burst(self, now: int, size: int | None) -> tuple[list[Event], GroundTruth]:
        ms = (now // 60_000) * 60_000 - 60_000
        thr = self.config.error_burst_per_minute
        if size is None:
            n = total = self.config.error_burst_events
        else:
            total = size
            n = max(0, total - self.minute_counts.get(ms, Counter())[""])
        events = self._minute_block(now, n, lambda i: "error", None)
        return events, GroundTruth(
            "ERROR_BURST", "all", iso_ms(ms), iso_ms(ms + 60_000), n,
            size=total, threshold=thr, above=total >= thr,
        )

    # -- the stream --------------------------------------------------------------------------
    def events(self, limit: int | None = None) -> Iterator[Event]:
        """Yield ``limit`` events (None = forever); anomaly blocks are never cut in half."""
        every = self.config.anomaly_every
        emitted = 0
        while limit is None or emitted < limit:
            if every and self._anomaly_cycle and self._normal_since_anomaly >= every:
                kind = next(self._anomaly_cycle)
                size = self._block_size(kind)
                if limit is None or emitted + size <= limit:
                    self._normal_since_anomaly = 0
                    yield from self.inject(kind)
                    emitted += size
                    continue
            self._normal_since_anomaly += 1
            emitted += 1
            yield self._normal_event()

    def take(self, n: int) -> list[Event]:
        return list(self.events(n))

    def _block_size(self, kind: str) -> int:
        cfg = self.config
        return {
            "HIGH_FREQUENCY": cfg.session_clicks,
            "BOT_LIKE": cfg.session_clicks,
            "TRAFFIC_SPIKE": cfg.spike_events,
            "ERROR_BURST": cfg.error_burst_events,
        }[kind]

    def write_ground_truth(self, path: Path) -> int:
        """Write the ground truth so far as JSON lines; returns the number of rows."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(g.to_json() + "\n" for g in self.ground_truth))
        return len(self.ground_truth)


EventGenerator = Generator  # the name announced to the streaming job's tests


def read_ground_truth(path: Path) -> list[GroundTruth]:
    return [GroundTruth(**json.loads(line)) for line in path.read_text().splitlines() if line]


def _page(kind: str, item: Item | None) -> str:
    if item is not None and kind in ("page_view", "click"):
        return f"/p/{item.item_id}"
    return {
        "page_view": "/",
        "add_to_cart": "/cart",
        "remove_from_cart": "/cart",
        "checkout": "/checkout",
        "purchase": "/checkout/done",
        "error": "/checkout",
    }.get(kind, "/")
