"""Benchmarks: figures are written to bench/results/, never asserted by the test suite."""
