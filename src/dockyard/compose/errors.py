"""Compose's errors: what went wrong, in which file, at which path."""

from __future__ import annotations

from dockyard.errors import InvalidArgument


class ComposeError(InvalidArgument):
    """A project that cannot be loaded or run; the message names the file and the path
    (`compose.yaml: services.web.ports[0]: ...`) when they are known."""


def where(file: str, path: str) -> str:
    """`file: path` for messages; either part may be empty."""
    return ": ".join(p for p in (file, path) if p)


def dotted(path: tuple | list) -> str:
    """('services', 'web', 'ports', 0) -> 'services.web.ports[0]'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
