"""The daemon's core: containers and their state machine, the monitor, logs, restarts.

Kept import-free: the monitor process (python -m dockyard.engine.monitor)
imports this package and its memory is measured. Use dockyard.engine.engine.Engine.
"""
