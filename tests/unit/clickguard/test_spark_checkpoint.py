"""The checkpoint's query id keys the ledger: read it exactly, and say where it is missing."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from clickguard.spark import checkpoint_query_id


def test_reads_the_first_line_of_the_metadata_file(tmp_path: Path) -> None:
    (tmp_path / "metadata").write_text(json.dumps({"id": "4f6c-query"}) + "\n")
    assert checkpoint_query_id(tmp_path) == "4f6c-query"


def test_missing_metadata_names_the_file_and_the_hint(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match=r"metadata after 0s; see job\.log"):
        checkpoint_query_id(tmp_path, where="; see job.log")


def test_waits_for_a_query_that_is_still_starting(tmp_path: Path) -> None:
    def write_later() -> None:
        time.sleep(0.7)
        (tmp_path / "metadata").write_text('{"id": "late"}\n')

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        assert checkpoint_query_id(tmp_path, timeout=10) == "late"
    finally:
        writer.join()
