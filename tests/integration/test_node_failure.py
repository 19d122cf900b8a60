"""A node that dies while `stack up` waits for it: the error says why, in the log's own words.

The project's CI lost a broker to ``OutOfMemoryError`` at start, and a user who sets the heap too
small meets the same: the command must quote the cause, not only name a log file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clickguard.settings import Settings
from clickguard_stack.errors import StackError
from clickguard_stack.manager import Stack
from tests.integration.api.conftest import free_port


def test_a_broker_whose_jvm_cannot_start_is_reported_with_the_jvms_words(
    tmp_path: Path, settings: Settings
) -> None:
    ports = {"kafka_broker_port_base": free_port(), "kafka_controller_port_base": free_port(),
             "kafka_nodes": 1, "home": tmp_path}
    good = Stack(settings.model_copy(update=ports), echo=lambda _m: None)
    good.node("kafka-1").prepare()  # formatted with a working heap: only the broker's start fails
    # -Xms128m with a 24 MiB ceiling: the JVM refuses to start
    bad = Stack(settings.model_copy(update={**ports, "kafka_heap": "24m"}), echo=lambda _m: None)
    try:
        with pytest.raises(StackError) as err:
            bad.up(["kafka-1"], timeout=60)
    finally:
        bad.down()
    message = str(err.value)
    assert message.startswith("kafka-1 exited; see the log:"), message
    assert "kafka-1's log ends:" in message
    assert "Initial heap size set to a larger value than the maximum heap size" in message
