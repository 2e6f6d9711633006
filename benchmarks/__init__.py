"""Benchmarks: reports of real work, each against a baseline measured in the same run."""
