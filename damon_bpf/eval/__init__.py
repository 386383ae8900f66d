"""Evaluation: scoring against ground truth, comparing sources."""
