"""The OCI runtime: dockyard-runtime."""
