"""Smoke tests of the benchmark machinery (bench/): it runs and reports; speeds are not asserted."""
