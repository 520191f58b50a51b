"""The OCI runtime: dockyard-runtime."""

DEFAULT_ROOT = "/run/dockyard-runtime"  # the state root, like runc's /run/runc
