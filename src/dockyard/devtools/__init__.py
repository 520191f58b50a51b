"""Helpers for the demo, tests and benchmarks (tiny root file systems, bundles)."""
