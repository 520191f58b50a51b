"""Small helpers of the engine: signals, JSON files, start error codes."""

from __future__ import annotations

import json


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def start_error_code(message: str) -> int:
    """docker's exit code for a start that failed: 127 not found, 126 cannot invoke."""
    low = message.lower()
    if "not found" in low or "no such file" in low:
        return 127
    if "permission denied" in low or "not a directory" in low or "exec format" in low:
        return 126
    return 128
