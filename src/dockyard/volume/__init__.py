"""Volumes: the local driver (store, references, driver-option mounts) and copy-up."""
