"""One step per asset runs its checks side by side (clickguard_dagster.checks.batch).

The checks here are stand-ins that touch no service, so what is tested is the step itself:
the checks really overlap, each result keeps its name and gains its run time, a selection runs
only what it names, a failed blocking check still stops the step (so downstream assets do not
run), and a check that raises fails the step only after the others' results are recorded.
"""

import threading
import time
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from clickguard.settings import Settings
from clickguard_dagster.checks.batch import Check, Inputs
from clickguard_dagster.checks.batch import asset_checks as real_asset_checks
from clickguard_dagster.resources import build_resources


@dg.asset
def table() -> int:
    return 1


def asset_checks(asset: dg.AssetsDefinition, checks: list[Check]) -> dg.AssetChecksDefinition:
    """The step with day marks that need no database: none."""
    return real_asset_checks(asset, checks, read_marks=lambda _pg, _key: {})


def resources() -> dict:
    res = build_resources(Settings(pg_port=1))  # never connected: the stand-ins use nothing
    return {k: res[k] for k in ("postgres", "batch", "spark", "expectations")}


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_checks_run_at_the_same_time_and_report_their_own_seconds() -> None:
    barrier = threading.Barrier(2, timeout=10)  # passes only if both checks are running at once

    def meet(name: str) -> dg.AssetCheckResult:
        time.sleep(0.2)
        barrier.wait()
        return dg.AssetCheckResult(passed=True, metadata={"who": name})

    checks = asset_checks(table, [Check("a", "first", lambda _: meet("a")),
                                  Check("b", "second", lambda _: meet("b"))])
    result = dg.materialize([table, checks], resources=resources())
    assert result.success
    got = evaluations(result)
    assert set(got) == {"a", "b"}
    assert got["a"].metadata["who"].value == "a" and got["b"].metadata["who"].value == "b"
    assert all(e.metadata["seconds"].value >= 0.2 for e in got.values())


def test_a_selection_runs_only_the_checks_it_names() -> None:
    ran: list[str] = []

    def run(name: str) -> dg.AssetCheckResult:
        ran.append(name)
        return dg.AssetCheckResult(passed=True)

    checks = asset_checks(table, [Check("a", "", lambda _: run("a")),
                                  Check("b", "", lambda _: run("b"))])
    result = dg.materialize(
        [table, checks], resources=resources(),
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(table.key, "b")),
    )
    assert result.success
    assert ran == ["b"] and set(evaluations(result)) == {"b"}


def test_a_failed_blocking_check_fails_the_step_and_keeps_every_result() -> None:
    checks = asset_checks(table, [
        Check("gate", "", lambda _: dg.AssetCheckResult(passed=False), blocking=True),
        Check("other", "", lambda _: dg.AssetCheckResult(passed=True)),
    ])
    result = dg.materialize([table, checks], resources=resources(), raise_on_error=False)
    assert not result.success
    got = evaluations(result)
    assert not got["gate"].passed and got["other"].passed


def test_a_check_that_raises_fails_the_step_after_the_others_are_recorded() -> None:
    def boom(_: object) -> dg.AssetCheckResult:
        raise RuntimeError("spark went away")

    checks = asset_checks(table, [Check("broken", "", boom),
                                  Check("fine", "", lambda _: dg.AssetCheckResult(passed=True))])
    result = dg.materialize([table, checks], resources=resources(), raise_on_error=False)
    assert not result.success
    assert set(evaluations(result)) == {"fine"}
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "spark went away" in str(failure.step_failure_data.error)


def test_no_spark_session_is_made_when_no_selected_check_needs_one() -> None:
    class NoSpark(dg.ConfigurableResource):
        @property
        def spark_session(self) -> None:
            pytest.fail("a Spark session was asked for")

    checks = asset_checks(table, [Check("a", "", lambda i: dg.AssetCheckResult(
        passed=i.spark is None))])
    result = dg.materialize([table, checks], resources={**resources(), "spark": NoSpark()})
    assert evaluations(result)["a"].passed


def test_the_step_reads_the_marks_once_and_every_check_gets_them() -> None:
    reads: list[str] = []
    marks = {date(2026, 1, 2): datetime(2026, 1, 2, 23, 59, tzinfo=UTC)}

    def read_marks(_pg: object, key: str) -> dict:
        reads.append(key)
        return marks

    seen: list[object] = []

    def run(i: Inputs) -> dg.AssetCheckResult:
        seen.append(i.marks)
        return dg.AssetCheckResult(passed=True)

    checks = real_asset_checks(table, [Check("a", "", run), Check("b", "", run)], read_marks)
    assert dg.materialize([table, checks], resources=resources()).success
    assert reads == ["table"] and seen == [marks, marks]
