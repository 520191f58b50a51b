"""Small helpers of the monitor process (standard library only)."""

from __future__ import annotations

import json
import os


def write_json_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rmtree(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def _readable(fd: int) -> bool:
    import select
    return bool(select.select([fd], [], [], 0)[0])


def _oom_killed(cgroup_path: str) -> bool:
    try:
        from dockyard.linux import cgroups
        return cgroups.open_cgroup(cgroup_path).oom_kill_count() > 0
    except Exception:  # noqa: BLE001 - the cgroup may be gone already
        return False


def _runtime_error(log_file: str) -> str:
    """The last error the runtime logged (runc's log.json convention)."""
    try:
        with open(log_file) as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") == "error":
            return rec.get("msg", "")
    return ""


class _suppress:
    def __init__(self, *exc: type[BaseException]):
        self.exc = exc

    def __enter__(self) -> None:
        return None

    def __exit__(self, et, ev, tb) -> bool:
        return et is not None and issubclass(et, self.exc)
