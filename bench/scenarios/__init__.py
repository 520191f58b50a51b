"""Benchmark scenarios: one module per scenario, each exposing `SCENARIO`.

Modules whose name starts with an underscore are not discovered.
"""
