"""Benchmarks: latency, power and quality of every backend, one results file per device."""
