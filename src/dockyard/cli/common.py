"""What the CLI's verb modules share: the Engine API client of a command, and an
argparse parser with docker's `dockyard <verb>` usage line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.client.api import Client


def client_for(ctx: Any) -> Client:
    """The client for the daemon the command talks to (-H / DOCKYARD_HOST)."""
    from dockyard.client.api import Client

    return Client(getattr(ctx, "host", None))


def verb_parser(prog: str, usage: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"dockyard {prog}", usage=f"dockyard {usage}",
                                   allow_abbrev=False)
