"""Measures shared across topics (robustness first; privacy, safety and fairness join with their topics)."""
