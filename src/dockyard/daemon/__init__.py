"""`dockyard daemon`: configuration (flags + daemon.json), listeners, lifecycle."""
