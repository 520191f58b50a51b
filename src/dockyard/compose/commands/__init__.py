"""The `dockyard compose` commands, by area: lifecycle (up, start, stop, ...), down, info
(config, ps, ls, ...), interact (logs, exec, run, cp), images (build, pull, push)."""
