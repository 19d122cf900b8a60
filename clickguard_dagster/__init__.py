"""Dagster code location of Clickstream Guardian: batch assets, checks, sensors, jobs."""
