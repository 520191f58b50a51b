"""Offline base images: `dockyard image bootstrap` builds debian:bookworm-slim, a
python:3.11-slim-like image, redis and busybox from Debian packages (debootstrap
from the mirror apt already uses), caches their layers, and loads them into the
daemon through the Engine API (optionally pushing them to a local registry that
daemons use as their docker.io mirror). Standard library only, plus the client.

    images.py   the image specs, the cache, image configs
    rootfs.py   debootstrap, clean-up, reproducible layer tars and diffs
    mirror.py   the machine's apt sources
    load.py     docker-archive streaming, POST /images/load, pushes
"""
