"""Compose: the Compose Specification over the Engine API.

loader (files, include, extends, merge, profiles, project name) -> interpolate,
validate, normalize -> model.Project; planner (order, config-hash, convergence);
convert (service -> container create body); backend (the API calls); up, logs,
images; commands/ (the `dockyard compose` verbs, cli/compose.py parses globals).
"""
