"""The streaming job: Kafka → Spark micro-batches → exactly-once PostgreSQL (see ``sink``)."""
