"""Side-by-side benchmarks of Dockyard against the reference implementations.

Run with `python -m bench` from the repository root (or `make bench`). Each scenario lives in
its own module under `bench/scenarios/`; see bench/README.md for how to add one.
"""
