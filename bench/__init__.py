"""Benchmarks: ``python -m bench`` (``make bench``) writes BENCHMARKS.md and results.json."""
