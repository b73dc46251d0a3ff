"""Benchmarks: figures are written to bench/out/, never asserted by the test suite."""
