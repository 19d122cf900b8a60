"""`clickguard produce`: generated (or replayed YOOCHOOSE) traffic with anomalies and faults."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import click

from clickguard.cli_types import COUNT, COUNT_OR_ZERO, NON_NEGATIVE, POSITIVE, SHARE
from clickguard.settings import get_settings
from clickguard_producer import yoochoose
from clickguard_producer.core import ProducerError, register_schemas
from clickguard_producer.core import produce as produce_records
from clickguard_producer.faults import FaultConfig, FaultInjector
from clickguard_producer.parallel import (
    SHARDS,
    ParallelResult,
    RunSpec,
    auto_workers,
    produce_parallel,
)


@click.command()
@click.option("--rate", type=POSITIVE,
              default=None, help="Events/s (token bucket); default: max.")
@click.option("--duration", type=POSITIVE,
              default=None, help="Stop after this many seconds.")
@click.option("--count", type=COUNT,
              default=None, help="Stop after this many records.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--run-id", default=None, help="Event-id prefix (default: random per run).")
@click.option("--topic", default=None, help="Default: settings.topic_raw.")
@click.option(
    "--anomaly-every", type=COUNT_OR_ZERO, default=20_000, show_default=True,
    help="Inject one anomaly block every N normal events (0 = none).",
)
@click.option("--faults", type=SHARE, default=0.0, show_default=True,
              help="Rate of EVERY fault kind (duplicate, late, each malformed reason).")
@click.option("--duplicates", type=SHARE,
              default=None, help="Rate of exact duplicates.")
@click.option("--late", type=SHARE, default=None, help="Rate of late events.")
@click.option("--malformed", type=SHARE, default=None,
              help="Rate of malformed records, split evenly over the DLQ reasons.")
@click.option("--replay", "replay_paths", multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="YOOCHOOSE click/buy file(s) to replay instead of generating.")
@click.option("--speed", type=NON_NEGATIVE, default=60.0, show_default=True,
              help="Replay speed-up factor (0 = as fast as possible).")
@click.option("--ledger", type=click.Path(path_type=Path), default=None,
              help="TSV of every ACKNOWLEDGED record: event_id, kind, partition, offset.")
@click.option("--ground-truth", type=click.Path(path_type=Path), default=None,
              help="JSON lines of the injected anomalies.")
@click.option("--summary", "summary_path", type=click.Path(path_type=Path), default=None,
              help="Also write the final JSON summary here.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--workers", type=click.IntRange(1, SHARDS), default=None,
              help="Processes generating + sending (default: every core when unpaced or "
                   "--rate >= 20,000, else 1); the records do not depend on it.")
def produce(
    rate: float | None,
    duration: float | None,
    count: int | None,
    seed: int,
    run_id: str | None,
    topic: str | None,
    anomaly_every: int,
    faults: float,
    duplicates: float | None,
    late: float | None,
    malformed: float | None,
    replay_paths: tuple[Path, ...],
    speed: float,
    ledger: Path | None,
    ground_truth: Path | None,
    summary_path: Path | None,
    quiet: bool,
    workers: int | None,
) -> None:
    """Produce clickstream events to Kafka (acks=all, idempotent) and print a JSON summary.

    Runs until --count/--duration (or the replay's end, or Ctrl-C). Generated traffic is cut
    into fixed shards sent by --workers processes, so it can use every core.
    """
    settings = get_settings()
    fault_cfg = _fault_config(faults, duplicates, late, malformed)
    replayed: list[yoochoose.YooEvent] = []
    if replay_paths:  # read (and refuse) the files before anything is registered or sent
        try:
            replayed = yoochoose.read_files(replay_paths)
        except yoochoose.ParseError as exc:
            raise click.ClickException(str(exc)) from exc
    try:
        schema_id, rogue_id = register_schemas(settings, topic)
        progress = None if quiet else (lambda line: click.echo(line, err=True))
        result: ParallelResult | None = None
        if replay_paths:
            events = yoochoose.replay(replayed, speed=speed, run_id=run_id)
            injector = FaultInjector(
                schema_id, fault_cfg, seed=seed, rogue_schema_id=rogue_id,
                watermark_minutes=settings.stream_watermark_minutes,
            )
            summary = produce_records(
                settings, injector.records(events), topic=topic, rate=rate, duration=duration,
                count=count, ledger=ledger, progress=progress,
            )
        else:
            spec = RunSpec(
                seed=seed, run_id=run_id or uuid.uuid4().hex[:12], schema_id=schema_id,
                rogue_id=rogue_id, anomaly_every=anomaly_every, faults=fault_cfg,
                watermark_minutes=settings.stream_watermark_minutes, count=count,
            )
            result = produce_parallel(
                settings, spec, workers=workers or auto_workers(rate), topic=topic, rate=rate,
                duration=duration, ledger=ledger, progress=progress,
            )
            summary = result.summary
    except ProducerError as exc:
        raise click.ClickException(str(exc)) from exc
    out = summary.to_dict()
    if result is not None:
        out["run_id"] = spec.run_id
        out["workers"] = result.workers
        out["anomalies_injected"] = len(result.ground_truth)
        if ground_truth:
            ground_truth.parent.mkdir(parents=True, exist_ok=True)
            ground_truth.write_text("".join(g.to_json() + "\n" for g in result.ground_truth))
            out["ground_truth"] = str(ground_truth)
    text = json.dumps(out, indent=2)
    if summary_path:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(text + "\n")
    click.echo(text)
    if summary.failed:
        raise SystemExit(1)


def _fault_config(
    every: float, duplicates: float | None, late: float | None, malformed: float | None
) -> FaultConfig:
    base = FaultConfig.uniform(every)
    kw: dict[str, float] = {}
    if duplicates is not None:
        kw["duplicate_rate"] = duplicates
    if late is not None:
        kw["late_rate"] = late
    if malformed is not None:
        share = malformed / 6
        kw.update(
            not_wire_format_rate=share, unknown_schema_id_rate=share,
            missing_required_rate=share, out_of_range_rate=share, avro_decode_error_rate=share,
            unstorable_rate=share,
        )
    return replace(base, **kw)
