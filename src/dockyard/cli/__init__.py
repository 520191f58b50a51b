"""The `dockyard` command: one module per noun; parsing and output only."""
