"""``clickguard fuzz-stream``: adversarial records through the real streaming job, each accounted.

Records are schema-valid events with hostile values (any Unicode incl. NUL and control
characters, very long strings, extreme/NaN/±inf numbers, timestamps far outside any sane range),
byte-level mutations of valid wire records, exact duplicates, and "db poison": valid events that
a test-only trigger in the run's PRIVATE database rejects (so the sink's bisect, not validation,
must isolate them). Every record is then located by Kafka (partition, offset): in ``events``,
``dlq_events``, ``late_events``, or counted as a duplicate (its event_id stored from another
offset) — exactly once — and the ledger totals must match.

The run uses private topics, a private checkpoint and a private database, so it never touches
the demo's data. The Hypothesis test (tests/integration/streaming_job/test_fuzz.py) uses the same
harness with Hypothesis-generated records.
"""

from __future__ import annotations

import io
import math
import os
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import fastavro
import psycopg
from confluent_kafka import Producer
from psycopg import sql

from clickguard import db
from clickguard.cli_types import COUNT, POSITIVE, SHARE
from clickguard.contract import encode, parsed_schema, split
from clickguard.kafka import ensure_topics, producer_config
from clickguard.settings import REPO_ROOT, Settings
from clickguard.spark import checkpoint_query_id
from clickguard_producer.core import register_schemas

POISON_MARKER = "clickguard-fuzz-db-poison"
ISOLATED = "unstorable (isolated by the sink)"  # fate of a record the sink's bisect dead-lettered
# A test-only trigger: the database rejects (SQLSTATE 22023, a data error) what validation lets
# through, so the sink's last line of defence is exercised against a real PostgreSQL error.
POISON_TRIGGER = f"""
CREATE OR REPLACE FUNCTION fuzz_reject_marker() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.page LIKE '{POISON_MARKER}%' THEN
        RAISE EXCEPTION 'fuzz: page marker rejected' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS fuzz_reject_marker ON events;
CREATE TRIGGER fuzz_reject_marker BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION fuzz_reject_marker();
"""
EVENT_TYPES = ("page_view", "click", "add_to_cart", "remove_from_cart", "checkout", "purchase",
               "error")
MAX_VALUE = 900_000  # below Kafka's default 1 MB message limit
KINDS = ("valid", "strings", "numbers", "timestamps", "mutation", "duplicate", "db_poison")
Headers = list[tuple[str, str | bytes | None]]  # a record's Kafka headers, as produce() takes


@dataclass(slots=True)
class FuzzRecord:
    """One record to send; ``kind`` says how it was made (its fate is whatever the job decides,
    checked only for being accounted exactly once)."""

    kind: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None


@dataclass(slots=True)
class Sent:
    record: FuzzRecord
    partition: int
    offset: int
    sent_at: float  # wall clock (epoch seconds) when acknowledged


# ---------------------------------------------------------------------------------------------
# Generation (seeded; the Hypothesis test has its own strategies)
# ---------------------------------------------------------------------------------------------
def base_event(rng: random.Random, tag: str, n: int, now_ms: int) -> dict[str, Any]:
    purchase = rng.random() < 0.1
    return {
        "event_id": f"fz-{tag}-{n}", "event_ts": now_ms - rng.randrange(60_000),
        "ingest_ts": now_ms, "source": "fuzz", "session_id": rng.randrange(1, 10**6),
        "user_id": rng.choice([None, rng.randrange(10**6)]),
        "event_type": "purchase" if purchase else rng.choice(EVENT_TYPES[:5]),
        "item_id": rng.randrange(10**5), "category": rng.choice([None, "toys", "books"]),
        "price": round(rng.uniform(1, 500), 2) if purchase else None,
        "quantity": rng.randrange(1, 5) if purchase else None,
        "page": "/p", "referrer": None,
    }


def hostile_text(rng: random.Random) -> str:
    """Any Unicode scalar (no lone surrogates: Avro strings are UTF-8), biased to the nasty."""
    pick = rng.random()
    if pick < 0.2:
        n = rng.choice([1, 100, 5_000, 40_000, 120_000])  # around the string-size limits
        return rng.choice(["a", "é", "\U0001f600", "\x00"]) * n
    chars = []
    for _ in range(rng.randrange(0, 40)):
        r = rng.random()
        if r < 0.3:
            chars.append(chr(rng.randrange(0, 32)))  # control characters, NUL included
        elif r < 0.4:
            chars.append(rng.choice(["\x7f", "\u200b", "\ufeff", "\ufffe", "\uffff", "\\", '"',
                                     ",", "\n", "\r", "\\.", "'"]))
        else:
            c = rng.randrange(0, 0x110000)
            chars.append(chr(c) if not 0xD800 <= c < 0xE000 else "x")
    return "".join(chars)


EXTREME_INTS = [0, -1, 1, 2**31 - 1, -(2**31), 2**31, 2**63 - 1, -(2**63)]
EXTREME_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, 999_999.99,
                  999_999.995, 1_000_000.0, 1e10, 0.005, -0.01]
MS_EXTREMES = [2**63 - 1, -(2**63), 0, -1, 253_402_300_799_999, 253_402_300_800_000,
               -62_135_596_800_000, -62_135_596_800_001, 946_684_799_999, 946_684_800_000]


def adversarial_records(
    n: int, schema_id: int, seed: int = 1, tag: str | None = None, poison_rate: float = 0.002,
) -> Iterator[FuzzRecord]:
    """``n`` records of every kind (weights fixed by ``seed``); event ids unique per ``tag``."""
    rng = random.Random(seed)
    tag = tag or uuid.uuid4().hex[:8]
    recent: list[FuzzRecord] = []
    weights = [0.35, 0.2, 0.12, 0.1, 0.15, 0.08 - poison_rate, poison_rate]
    for i in range(n):
        kind = rng.choices(KINDS, weights)[0]
        if kind == "duplicate" and not recent:
            kind = "valid"
        if kind == "duplicate":
            rec = rng.choice(recent)
            rec = FuzzRecord("duplicate", rec.key, rec.value, rec.headers)
        else:
            ev = base_event(rng, tag, i, int(time.time() * 1000))
            if kind == "strings":
                for name in rng.sample(["event_id", "source", "category", "page", "referrer"],
                                       rng.randrange(1, 4)):
                    ev[name] = hostile_text(rng)
                    if name == "event_id":
                        ev[name] = f"fz-{tag}-{i}-" + ev[name]  # unique, hostile tail
            elif kind == "numbers":
                for name in rng.sample(["session_id", "user_id", "item_id", "quantity"], 2):
                    lim = 2**31 if name == "quantity" else 2**63
                    ev[name] = max(-lim, min(lim - 1, rng.choice(EXTREME_INTS)))
                ev["price"] = rng.choice(EXTREME_FLOATS)
            elif kind == "timestamps":
                near = ev["ingest_ts"] + rng.choice([-1, 1]) * 10 ** rng.randrange(13)
                ev[rng.choice(["event_ts", "ingest_ts"])] = rng.choice([*MS_EXTREMES, near])
            elif kind == "db_poison":
                ev["page"] = f"{POISON_MARKER}-{i}"
            value = encode(ev, schema_id)[:MAX_VALUE]  # oversize: sent truncated (corrupt)
            if kind == "mutation":
                value = mutate(rng, value)
            key = str(ev["session_id"]).encode() if rng.random() < 0.9 else None
            rec = FuzzRecord(kind, key, value, random_headers(rng))
        if kind != "duplicate":
            if len(recent) < 500:
                recent.append(rec)
            else:
                recent[rng.randrange(500)] = rec
        yield rec


def random_headers(rng: random.Random) -> Headers | None:
    """A user's headers on a third of the records (tracing ids, binary, null values)."""
    if rng.random() > 0.33:
        return None
    out: Headers = [("traceparent", f"00-{rng.getrandbits(128):032x}-"
                                            f"{rng.getrandbits(64):016x}-01".encode())]
    for _ in range(rng.randrange(3)):
        out.append((rng.choice(["x-a", "x-b", "ünï"]), rng.choice([None, rng.randbytes(8)])))
    return out


def mutate(rng: random.Random, value: bytes) -> bytes:
    """A byte-level mutation of a wire record: flip, insert, delete, truncate or extend."""
    b = bytearray(value)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[pos:pos] = rng.randbytes(rng.randrange(1, 4))
        elif op == 2 and b:
            del b[pos : pos + rng.randrange(1, 4)]
        elif op == 3:
            del b[rng.randrange(len(b) + 1):]
        else:
            b += rng.randbytes(rng.randrange(1, 8))
    return bytes(b)


# ---------------------------------------------------------------------------------------------
# The private environment: topics, checkpoint, database, streaming node
# ---------------------------------------------------------------------------------------------
@contextmanager
def private_env(overrides: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)  # the streaming node's processes inherit this environment
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def private_database(settings: Settings, trigger: bool = True) -> Iterator[str]:
    """A fresh application database (migrated; with the poison trigger), dropped afterwards.

    ``settings.pg_db`` must already name it (set CLICKGUARD_PG_DB before building settings).
    """
    db.bootstrap(settings)
    db.migrate(settings)
    if trigger:
        with db.connect(settings, "writer", autocommit=True) as conn:
            conn.execute(POISON_TRIGGER)
    try:
        yield settings.pg_db
    finally:
        with db.connect(settings, "superuser", "postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(settings.pg_db)
                )
            )


@dataclass
class FuzzStream:
    """A running streaming job on private topics/checkpoint/database."""

    settings: Settings
    stack: Any
    schema_id: int
    sent: list[Sent] = field(default_factory=list)
    _pg: db.KeptConnection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._pg is None:
            self._pg = db.KeptConnection(self.settings, "writer")
        return self._pg.get()

    def query_id(self, timeout: float = 300.0) -> str:
        return checkpoint_query_id(self.settings.checkpoint_dir, timeout)

    def produce(self, records: Iterable[FuzzRecord], progress: Callable[[str], None] | None = None
                ) -> list[Sent]:
        """Send ``records`` (acks=all), returning each one's (partition, offset) in send order."""
        p = Producer(producer_config(self.settings, **{"linger.ms": 20}))
        out: list[Sent | None] = []
        errors: list[str] = []

        def cb(i: int) -> Callable[[Any, Any], None]:
            def done(err: Any, msg: Any) -> None:
                if err is not None:
                    errors.append(str(err))
                else:
                    out[i] = Sent(recs[i], msg.partition(), msg.offset(), time.time())
            return done

        recs: list[FuzzRecord] = []
        for rec in records:
            recs.append(rec)
            out.append(None)
            while True:
                try:
                    p.produce(self.settings.topic_raw, value=rec.value, key=rec.key,
                              headers=rec.headers, on_delivery=cb(len(recs) - 1))
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
            if progress and len(recs) % 10_000 == 0:
                progress(f"  produced {len(recs)}")
        remaining = p.flush(120)
        if remaining or errors or any(s is None for s in out):
            raise RuntimeError(f"produce failed: {remaining} unflushed, errors {errors[:3]}")
        sent = [s for s in out if s is not None]
        self.sent += sent
        return sent

    def accounted(self) -> int:
        row = self.conn.execute(
            "SELECT coalesce(sum(input_rows), 0) FROM batch_ledger WHERE query_id = %s",
            (self.query_id(),),
        ).fetchone()
        return int(row[0]) if row else 0

    def wait_accounted(self, total: int, timeout: float,
                       progress: Callable[[str], None] | None = None) -> None:
        deadline, last = time.monotonic() + timeout, -1
        while True:
            n = self.accounted()
            if n >= total:
                return
            if progress and n != last:
                progress(f"  ledger: {n}/{total} records accounted")
                last = n
            if time.monotonic() > deadline:
                raise TimeoutError(f"ledger has {n}/{total} records after {timeout}s; the "
                                   f"stream stopped committing (see `clickguard stack logs "
                                   f"streaming`)")
            time.sleep(1.0)


@contextmanager
def fuzz_stream(checkpoint: Path, extra_env: dict[str, str] | None = None,
                trigger: bool = True,
                say: Callable[[str], None] = lambda _m: None) -> Iterator[FuzzStream]:
    """Streaming node on fresh private topics, checkpoint and database; all removed after.

    The platform's own stream is stopped meanwhile (never two jobs on one stack) and started
    again after, on its own topics, checkpoint and database, if it was running: a user who ran
    `clickguard fuzz-stream` beside the demo found the live stream down afterwards, and nothing
    said so. Its events of the meantime wait in Kafka and are committed once it is back.
    ``say`` tells the user so when it was running."""
    from clickguard_stack.manager import Stack

    platform = Stack(Settings(), echo=lambda _m: None)  # built before the private environment
    was_running = platform.node("streaming").pid() is not None
    if was_running:
        say("fuzz-stream: the platform's stream stops for this run and starts again after it")
    tag = uuid.uuid4().hex[:8]
    overrides = {
        "CLICKGUARD_TOPIC_RAW": f"fuzz.{tag}.raw",
        "CLICKGUARD_TOPIC_DLQ": f"fuzz.{tag}.dlq",
        "CLICKGUARD_TOPIC_LATE": f"fuzz.{tag}.late",
        "CLICKGUARD_PG_DB": f"fuzz_{tag}",
        "CLICKGUARD_STREAM_CHECKPOINT_DIR": str(checkpoint),
        "CLICKGUARD_STREAM_RESTART_BACKOFF_S": "1",
        "CLICKGUARD_STREAM_MAX_OFFSETS_PER_TRIGGER": "5000",
        **(extra_env or {}),
    }
    try:
        with private_env(overrides):
            settings = Settings()
            stack = Stack(settings, echo=lambda _m: None)
            with private_database(settings, trigger=trigger):
                ensure_topics(settings)
                schema_id, _ = register_schemas(settings, settings.topic_raw)
                run = FuzzStream(settings, stack, schema_id)
                stack.control("stop", "streaming")  # never two jobs on one stack
                try:
                    stack.control("start", "streaming")
                    yield run
                finally:
                    stack.control("stop", "streaming")
                    if run._pg is not None:
                        run._pg.drop()
    finally:
        if was_running:  # out of the private environment: the node inherits the platform's
            platform.control("start", "streaming")


# ---------------------------------------------------------------------------------------------
# Accounting
# ---------------------------------------------------------------------------------------------
@dataclass
class Accounting:
    fates: Counter[str]  # stored / dlq:<reason> / late / duplicate
    ledger: dict[str, int]
    problems: list[str]
    poison_to_batch_s: dict[str, list[float]]  # reason -> produce→batch-committed seconds
    dlq_reasons: dict[tuple[int, int], str]


COMPARED = ("event_id", "source", "session_id", "user_id", "event_type", "item_id", "category",
            "quantity", "page", "referrer")


def _decode(value: bytes | None, schema_id: int | None = None) -> dict[str, Any] | None:
    """The event the contract decodes from ``value`` (None when it does not decode, or when
    framed with another schema id than ``schema_id``)."""
    try:
        sid, body = split(value)
        if schema_id is not None and sid != schema_id:
            return None
        buf = io.BytesIO(body)
        ev = fastavro.schemaless_reader(buf, parsed_schema(), parsed_schema())
        return ev if isinstance(ev, dict) and buf.tell() == len(body) else None
    except Exception:  # noqa: BLE001 - an undecodable record has no event
        return None


def _event_id(value: bytes | None) -> str | None:
    ev = _decode(value)
    return None if ev is None else ev["event_id"]


def account(run: FuzzStream, sent: list[Sent] | None = None) -> Accounting:
    """Locate every sent record exactly once and compare with the ledger totals."""
    sent = run.sent if sent is None else sent
    conn, topic, qid = run.conn, run.settings.topic_raw, run.query_id()
    parts = [s.partition for s in sent]
    offs = [s.offset for s in sent]
    where = "(p, o) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]) AS t(p, o))"
    stored = {(r[0], r[1]): r[2:] for r in conn.execute(
        f"SELECT kafka_partition, kafka_offset, {', '.join(COMPARED)} FROM events "
        f"WHERE {where.replace('(p, o) IN', '(kafka_partition, kafka_offset) IN')}",
        (parts, offs)).fetchall()}
    dlq = {(p, o): r for p, o, r in conn.execute(
        "SELECT source_partition, source_offset, CASE WHEN reason = 'unstorable' AND detail "
        f"LIKE 'PostgreSQL %%' THEN '{ISOLATED}' ELSE reason END "
        "FROM dlq_events WHERE source_topic = %s "
        f"AND {where.replace('(p, o) IN', '(source_partition, source_offset) IN')}",
        (topic, parts, offs)).fetchall()}
    late = {(p, o) for p, o in conn.execute(
        "SELECT source_partition, source_offset FROM late_events WHERE source_topic = %s "
        f"AND {where.replace('(p, o) IN', '(source_partition, source_offset) IN')}",
        (topic, parts, offs)).fetchall()}
    # a duplicate is fine when a copy of it is stored, or dead-lettered (an in-batch copy of a
    # record the sink isolated: the DLQ holds it, and a replay restores it)
    all_ids = {r[0] for r in conn.execute(
        "SELECT event_id FROM events UNION SELECT event_id FROM dlq_events "
        "WHERE reason = 'unstorable' AND event_id IS NOT NULL").fetchall()}
    fates: Counter[str] = Counter()
    problems: list[str] = []
    dup_coords = []
    for s in sent:
        c = (s.partition, s.offset)
        where_found = [n for n, hit in (("stored", c in stored), ("dlq", c in dlq),
                                        ("late", c in late)) if hit]
        if len(where_found) > 1:
            problems.append(f"{c} ({s.record.kind}) is in {where_found}")
        if "stored" in where_found:
            fates["stored"] += 1
            ev = _decode(s.record.value, run.schema_id)
            if ev is not None and tuple(ev[k] for k in COMPARED) != stored[c]:
                problems.append(f"{c} ({s.record.kind}) stored altered: {stored[c]!r:.300}")
        elif "dlq" in where_found:
            fates[f"dlq:{dlq[c]}"] += 1
        elif "late" in where_found:
            fates["late"] += 1
        else:
            dup_coords.append(c)
            eid = _event_id(s.record.value)
            if eid is None or eid not in all_ids:
                problems.append(f"{c} ({s.record.kind}) is nowhere and no copy of it is stored "
                                "or dead-lettered")
            fates["duplicate"] += 1
    row = conn.execute(
        "SELECT count(*), coalesce(sum(input_rows), 0), coalesce(sum(stored), 0), "
        "coalesce(sum(dlq), 0), coalesce(sum(late), 0), coalesce(sum(duplicates), 0), "
        "count(*) FILTER (WHERE input_rows <> stored + dlq + late + duplicates) "
        "FROM batch_ledger WHERE query_id = %s", (qid,)).fetchone()
    assert row is not None
    ledger = dict(zip(["batches", "input_rows", "stored", "dlq", "late", "duplicates",
                       "unbalanced_batches"], (int(x) for x in row), strict=True))
    if sent is run.sent:  # the ledger covers every record of the run
        got = {"input_rows": len(sent), "stored": fates["stored"],
               "dlq": sum(v for k, v in fates.items() if k.startswith("dlq:")),
               "late": fates["late"], "duplicates": fates["duplicate"]}
        for k, v in got.items():
            if ledger[k] != v:
                problems.append(f"ledger {k} = {ledger[k]}, records located: {v}")
    if ledger["unbalanced_batches"]:
        problems.append(f"{ledger['unbalanced_batches']} batch(es) with an unbalanced ledger")
    return Accounting(fates, ledger, problems, poison_delays(run, sent, dlq), dlq)


def poison_delays(run: FuzzStream, sent: list[Sent], dlq: dict[tuple[int, int], str],
                  ) -> dict[str, list[float]]:
    """Per DLQ reason: seconds from a record's produce (ack) to its batch's commit (the rest of
    the batch is in the database then), from the ledger's per-batch offset ranges."""
    batches = run.conn.execute(
        "SELECT committed_at, offsets, duration_ms FROM batch_ledger WHERE query_id = %s",
        (run.query_id(),)).fetchall()
    ranges = [(int(p), lo, hi, ts.timestamp()) for ts, offs, _ in batches
              for p, (lo, hi) in offs.items()]
    out: dict[str, list[float]] = {}
    for s in sent:
        reason = dlq.get((s.partition, s.offset))
        if reason is None:
            continue
        for p, lo, hi, committed in ranges:
            if p == s.partition and lo <= s.offset <= hi:
                out.setdefault(reason, []).append(max(0.0, committed - s.sent_at))
                break
    return out


def batch_durations(run: FuzzStream, dlq: dict[tuple[int, int], str]) -> dict[str, list[float]]:
    """Batch durations (s) from the ledger: batches where the sink isolated a record vs not."""
    isolated = [c for c, r in dlq.items() if r == ISOLATED]
    out: dict[str, list[float]] = {"with an isolated record": [], "without": []}
    for offs, ms in run.conn.execute(
            "SELECT offsets, duration_ms FROM batch_ledger WHERE query_id = %s "
            "AND input_rows > 1", (run.query_id(),)).fetchall():
        hit = any(int(p) == cp and lo <= co <= hi for p, (lo, hi) in offs.items()
                  for cp, co in isolated)
        out["with an isolated record" if hit else "without"].append(ms / 1000)
    return out


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    if len(xs) == 1:
        return round(xs[0], 3)
    return round(statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1], 3)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
@click.command("fuzz-stream")
@click.option("--records", type=COUNT,
              default=100_000, show_default=True, help="Records to generate.")
@click.option("--chunk", type=COUNT, default=10_000, show_default=True,
              help="Records produced per round; the stream must account for each round.")
@click.option("--seed", default=1, show_default=True)
@click.option("--poison-rate", type=SHARE, default=0.002, show_default=True,
              help="Share of valid events the private database's test trigger rejects.")
@click.option("--timeout", type=POSITIVE,
              default=1800.0, show_default=True,
              help="Seconds the stream may take to account for one round.")
@click.option("--out", type=click.Path(path_type=Path), default=REPO_ROOT / "docs" / "results",
              show_default=True)
@click.option("--name", default="fuzz-stream", show_default=True)
def fuzz_stream_cmd(records: int, chunk: int, seed: int, poison_rate: float, timeout: float,
                    out: Path, name: str) -> None:
    """Fuzz the real stream (private topics and database) and account for every record.

    Needs the stack's infrastructure (`clickguard stack up`); stops the `streaming` node while it
    runs its own job and starts it again after, if it was running (its events of the meantime
    wait in Kafka). Exit code 1 when any record is unaccounted or the stream stops committing.
    """
    import tempfile

    from clickguard_proof.results import machine, md_table, write_results

    echo = click.echo
    t0 = time.monotonic()
    gen_counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="clickguard-fuzz-") as tmp, \
            fuzz_stream(Path(tmp) / "checkpoint", say=echo) as run:
        echo(f"fuzz-stream: {records} records into {run.settings.topic_raw}, database "
             f"{run.settings.pg_db}")
        # warm-up: the first batch waits for Spark to start; keep that out of the timings
        warm = list(adversarial_records(1, run.schema_id, seed=seed, poison_rate=0.0))
        warm[0].kind = "warm-up"
        run.produce(warm)
        run.wait_accounted(1, timeout, progress=echo)
        t_warm = time.time()
        gen = adversarial_records(records, run.schema_id, seed=seed, poison_rate=poison_rate)
        done = 0
        while done < records:
            batch = [next(gen) for _ in range(min(chunk, records - done))]
            gen_counts.update(r.kind for r in batch)
            run.produce(batch)
            done += len(batch)
            echo(f"  produced {done}/{records}; waiting for the stream ...")
            run.wait_accounted(len(run.sent), timeout, progress=echo)
            echo(f"  {done}/{records} accounted in {time.monotonic() - t0:.0f}s")
        acc = account(run)
        durations = batch_durations(run, acc.dlq_reasons)
        acc.poison_to_batch_s = poison_delays(
            run, [s for s in run.sent if s.sent_at >= t_warm],
            acc.dlq_reasons,
        )
    elapsed = time.monotonic() - t0
    delays = {r: {"n": len(v), "p50_s": _pct(v, 50), "p95_s": _pct(v, 95),
                  "max_s": round(max(v), 3)} for r, v in sorted(acc.poison_to_batch_s.items())}
    data: dict[str, Any] = {
        "command": f"clickguard fuzz-stream --records {records} --chunk {chunk} --seed {seed} "
                   f"--poison-rate {poison_rate}",
        "machine": machine(), "elapsed_s": round(elapsed, 1),
        "generated": {"warm-up": 1, **dict(sorted(gen_counts.items()))},
        "fates": dict(sorted(acc.fates.items())),
        "ledger": acc.ledger, "problems": acc.problems[:100],
        "poison_produce_to_batch_committed": delays,
        "batch_duration": {k: {"n": len(v), "p50_s": _pct(v, 50), "max_s": max(v, default=None)}
                           for k, v in durations.items()},
        "stream_never_stopped": True, "ok": not acc.problems,
    }
    md = "\n\n".join([
        "# Fuzzing the real stream", f"Command: `{data['command']}`  ",
        f"Measured {data['machine']['measured_at']} on {data['machine']['cpus']} CPUs "
        f"(load {data['machine']['load_avg_1_5_15']}); {elapsed:.0f} s in all.",
        "## Records generated, by kind",
        md_table(["kind", "records"], [[k, v] for k, v in data["generated"].items()]),
        "## Where every record ended (located by Kafka partition/offset)",
        md_table(["fate", "records"], [[k, v] for k, v in data["fates"].items()]),
        "## Ledger (sum over batches)",
        md_table(list(acc.ledger), [list(acc.ledger.values())]),
        "## From a poison record's produce to its batch committed (the rest stored)",
        md_table(["DLQ reason", "records", "p50 s", "p95 s", "max s"],
                 [[r, d["n"], d["p50_s"], d["p95_s"], d["max_s"]] for r, d in delays.items()]),
        "Each round's records are produced at once, so this includes the wait behind the "
        "earlier records of the round; the bisect's own cost shows in the batch durations:",
        md_table(["batches", "n", "p50 s", "max s"],
                 [[k, d["n"], d["p50_s"], d["max_s"]]
                  for k, d in data["batch_duration"].items()]),
        "## Problems", "\n".join(f"- {p}" for p in acc.problems[:100]) or "none",
    ])
    for p in write_results(out, name, data, md, {}):
        echo(f"wrote {p}")
    if acc.problems:
        raise SystemExit(f"fuzz-stream: {len(acc.problems)} problem(s), e.g. {acc.problems[0]}")
    echo(f"fuzz-stream: all {records} records (+1 warm-up) accounted exactly once; "
         f"ledger {acc.ledger}")

