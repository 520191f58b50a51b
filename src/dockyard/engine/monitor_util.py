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


def stdio_pipes(null: int, with_stdin: bool, close_after: list[int]
                ) -> tuple[tuple[int, int, int], int, int, int | None]:
    """Pipes for a process without a terminal: (its stdin/stdout/stderr, our stdout and
    stderr read ends, our stdin write end or None). The child's ends are appended to
    `close_after` (closed once the child has them)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    close_after += [out_w, err_w]
    stdin_fd, stdin_w = null, None
    if with_stdin:
        stdin_fd, stdin_w = os.pipe2(os.O_CLOEXEC)
        close_after.append(stdin_fd)
    return (stdin_fd, out_w, err_w), out_r, err_r, stdin_w
