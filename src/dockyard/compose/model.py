"""The loaded project: services and resources in canonical form (normalize.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Project:
    name: str
    working_dir: str
    config_files: list[str]
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)   # top-level x-*
    disabled: dict[str, dict[str, Any]] = field(default_factory=dict)  # by profiles
    environment: dict[str, str] = field(default_factory=dict)  # for interpolation
    env_files: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # service -> its file

    def service(self, name: str) -> dict[str, Any]:
        from dockyard.compose.errors import ComposeError

        if name in self.services:
            return self.services[name]
        if name in self.disabled:
            raise ComposeError(f"service {name!r} is disabled by its profiles "
                               f"{self.disabled[name].get('profiles')}")
        raise ComposeError(f"no such service: {name}")

    def network_name(self, key: str) -> str:
        return self.networks[key].get("name") or f"{self.name}_{key}"

    def volume_name(self, key: str) -> str:
        return self.volumes[key].get("name") or f"{self.name}_{key}"

    def to_dict(self) -> dict[str, Any]:
        """What `compose config` prints (the canonical model, like docker compose's)."""
        out: dict[str, Any] = {"name": self.name}
        services = {}
        for name in sorted(self.services):
            services[name] = {k: v for k, v in sorted(self.services[name].items())
                              if v is not None and not k.startswith("x-dockyard")}
        out["services"] = services
        for key in ("networks", "volumes", "secrets", "configs"):
            value = getattr(self, key)
            if value:
                out[key] = {k: value[k] for k in sorted(value)}
        out.update(self.extensions)
        return out
