"""The healthy producer phase alternates who sends first and compares medians.

The runs themselves are integration work (tests/integration/producer/test_bench_producer.py
runs the real bench); here only the order and the aggregation, with recorded stand-ins for
the two runners.
"""

from __future__ import annotations

from typing import Any

import pytest

from clickguard_proof import bench


def test_order_alternates_and_the_median_run_of_each_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    ours_eps = iter([100.0, 400.0, 300.0])
    kcat_eps = iter([500.0, 450.0, 600.0])

    def ours(*_a: Any, **_k: Any) -> dict[str, Any]:
        calls.append("ours")
        eps = next(ours_eps)
        return {"throughput_eps": eps, "exact": eps != 400.0, "failed": 0}

    def kcat(*_a: Any, **_k: Any) -> dict[str, Any]:
        calls.append("kcat")
        return {"throughput_eps": next(kcat_eps), "exact": True}

    monkeypatch.setattr(bench, "_run_ours", ours)
    monkeypatch.setattr(bench, "_run_kcat", kcat)
    out = bench._alternating_rounds(None, "t", [], None, 3, lambda _m: None)  # type: ignore[arg-type]

    assert calls == ["ours", "kcat", "kcat", "ours", "ours", "kcat"]
    assert out["ours"]["throughput_eps"] == 300.0  # median of 100, 400, 300
    assert out["kcat"]["throughput_eps"] == 500.0  # median of 500, 450, 600
    assert out["ours"]["rounds_eps"] == [100.0, 400.0, 300.0]
    assert out["ours"]["exact"] is False  # one inexact run makes the phase inexact
    assert out["kcat"]["exact"] is True


@pytest.mark.parametrize("value", ["leader", "controller", "kafka-1", "kafka-12"])
def test_broker_choices_are_accepted(value: str) -> None:
    assert bench._broker_choice(value) == value


@pytest.mark.parametrize("value", ["kafka-0", "kafka-x", "broker-1", "Controller", ""])
def test_a_bad_broker_choice_says_what_to_give(value: str) -> None:
    import click

    with pytest.raises(click.BadParameter, match="give kafka-N, 'leader' or 'controller'"):
        bench._broker_choice(value)
