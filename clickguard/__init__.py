"""Clickstream Guardian core: settings, event contract, DB schema, Kafka helpers, local stack, CLI."""

__version__ = "1.0.0"
