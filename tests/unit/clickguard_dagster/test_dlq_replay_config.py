"""dlq_replay's run config is checked before anything is selected, as the CLI's options are.

Launched from the Dagster UI, a misspelt reason selected nothing and the run reported success,
and ``since: yesterday`` failed inside the SELECT with a traceback.
"""

import pytest
from pydantic import ValidationError

from clickguard.contract import DlqReason
from clickguard_dagster.jobs import DlqReplayConfig


def test_known_reasons_and_iso_times_are_accepted() -> None:
    config = DlqReplayConfig(reasons=[r.value for r in DlqReason],
                             since="2026-12-06T05:00:00", until="2026-12-06T06:00:00+01:00")
    assert config.reasons == [r.value for r in DlqReason]
    assert DlqReplayConfig().reasons == []  # empty = every reason


@pytest.mark.parametrize(("config", "says"), [
    ({"reasons": ["out_of_range", "Out_Of_Range"]}, "unknown reason(s) ['Out_Of_Range']; known: "
                                                    "not_wire_format, unknown_schema_id"),
    ({"since": "yesterday"}, "'yesterday' is not an ISO 8601 time"),
    ({"until": "2026-13-01"}, "'2026-13-01' is not an ISO 8601 time"),
    ({"limit": 0}, "greater than or equal to 1"),
])
def test_a_bad_value_names_what_to_give(config: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError) as err:
        DlqReplayConfig(**config)  # type: ignore[arg-type]
    assert says in str(err.value)
