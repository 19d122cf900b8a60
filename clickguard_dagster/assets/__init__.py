"""Assets: the stream's output (external) and the daily batch tables computed with Spark."""
