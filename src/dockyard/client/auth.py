"""The client side of registry credentials: docker's config.json and X-Registry-Auth.

The docker CLI keeps credentials in <config dir>/config.json under "auths"
({"<registry>": {"auth": base64("user:password")}}); the daemon never reads that
file: the client sends the credentials for one registry with each pull or push
as the X-Registry-Auth header (base64url JSON). This module is that client side,
with the standard library only (the CLI imports no registry or engine code).
Credential helpers (credsStore/credHelpers) are not run.
"""

from __future__ import annotations

import base64
import json

from dockyard.dockerconfig import (  # noqa: F401 - re-exported for the CLI
    DOCKER_HUB,
    DOCKER_HUB_KEY,
    HUB_NAMES,
    ConfigFile,
    credentials_key,
    hostname,
)


def registry_of(name: str) -> str:
    """The registry an image name points at: its first component when that looks like
    a host (a dot, a port or `localhost`), else Docker Hub — docker's rule."""
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.lower() if first != "index.docker.io" else DOCKER_HUB
    return DOCKER_HUB


def encode_header(doc: dict) -> str:
    """An X-Registry-Auth value: base64url of the JSON document."""
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def registry_auth_header(config_dir: str, name: str) -> str | None:
    """The X-Registry-Auth header for pulling or pushing image `name`, from the stored
    credentials of its registry; None when there are none."""
    registry = registry_of(name)
    creds = ConfigFile(config_dir).get(registry)
    if creds is None:
        return None
    server = DOCKER_HUB_KEY if registry == DOCKER_HUB else registry
    return encode_header({"username": creds[0], "password": creds[1],
                          "serveraddress": server})
