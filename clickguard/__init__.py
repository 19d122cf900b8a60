"""Clickstream Guardian core: settings, contract, DB schema, Kafka helpers, local stack, CLI."""

__version__ = "1.0.0"
