"""docker's restart manager: which exits restart a container, and after how long.

Back-off as dockerd's: 100 ms, doubling per restart, capped at one minute, and
reset to 100 ms when the container ran for at least 10 s.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0


@dataclass
class Decision:
    restart: bool
    delay: float = 0.0


def should_restart(policy: str, max_retries: int, exit_code: int, restart_count: int,
                   manually_stopped: bool) -> bool:
    if manually_stopped:
        return False
    if policy in ("always", "unless-stopped"):
        return True
    if policy == "on-failure":
        return exit_code != 0 and (max_retries == 0 or restart_count < max_retries)
    return False


def next_delay(previous: float, ran_for: float) -> float:
    if ran_for >= RESET_AFTER or previous <= 0:
        return BACKOFF_START
    return min(previous * 2, BACKOFF_MAX)


def decide(policy: str, max_retries: int, exit_code: int, restart_count: int,
           manually_stopped: bool, previous_delay: float, ran_for: float) -> Decision:
    if not should_restart(policy, max_retries, exit_code, restart_count, manually_stopped):
        return Decision(False)
    return Decision(True, next_delay(previous_delay, ran_for))
