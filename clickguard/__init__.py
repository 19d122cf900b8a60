"""Clickstream Guardian core: what the apps share (settings, event contract, database, Kafka and
Spark helpers, stream state) and the one owner of each stream concept (``ledger``, ``slo``).

Nothing here imports an app or a tool (``tests/unit/test_layers.py``).
"""

__version__ = "1.0.0"
