"""The one Engine API client (AF_UNIX / TCP+TLS, hijack, stdcopy).

The CLI and Compose talk to a daemon only through this package; it imports
no engine code. See api.py for `Client`, hijack.py for attach/exec streams,
stdcopy.py for the multiplexed stdout/stderr frames, transport.py for hosts
and TLS. Names are imported on first use, so `dockyard version` loads only
what it needs.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "API_VERSION": "api", "Client": "api", "ResponseStream": "api",
    "check_message": "api", "iter_json": "api",
    "HijackedStream": "hijack",
    "STDIN": "stdcopy", "STDOUT": "stdcopy", "STDERR": "stdcopy",
    "collect": "stdcopy", "demux": "stdcopy", "frame": "stdcopy",
    "DEFAULT_HOST": "transport", "CannotConnect": "transport", "TLSConfig": "transport",
    "parse_host": "transport",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dockyard.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dockyard.client.{module}"), name)
    globals()[name] = value
    return value
