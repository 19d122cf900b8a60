"""Proof in numbers: every benchmark, chaos scenario and SLO report (JSON + MD + PNG)."""
