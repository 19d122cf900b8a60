"""Re-use the proof fixtures (nodes up for the test, left as found)."""

from tests.integration.proof.conftest import api_node, streaming

__all__ = ["api_node", "streaming"]
