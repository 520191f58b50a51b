"""docker compose v2 as a test peer: the plugin scripts/compose-v2-peer.sh unpacks
under the venv (Debian 12 itself has only Compose v1)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def compose_v2_config_dir() -> str | None:
    """A DOCKER_CONFIG directory whose cli-plugins hold docker compose v2, or None."""
    d = Path(sys.prefix) / "libexec" / "compose-v2"
    return str(d) if os.access(d / "cli-plugins" / "docker-compose", os.X_OK) else None


def compose_v2_env(host: str | None = None) -> dict[str, str]:
    """An environment for `docker compose` (v2) talking to `host` (unix://...)."""
    config = compose_v2_config_dir()
    if config is None:
        raise RuntimeError("docker compose v2 is not installed (scripts/compose-v2-peer.sh)")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["DOCKER_CONFIG"] = config
    if host:
        env["DOCKER_HOST"] = host
    return env
