"""Proof in numbers: benchmarks, chaos scenarios and SLO reports, each writing JSON + MD + PNG."""
