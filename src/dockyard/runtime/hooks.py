"""Running OCI hooks: the hook gets the container state as JSON on stdin.

Only os-level calls are used so a hook can be run from inside the container
after pivot_root (startContainer), where no Python import may happen.
"""

import os
import time

from dockyard.errors import DockyardError
from dockyard.linux.signals import SIGKILL, restore_defaults


class HookError(DockyardError):
    pass


def run_hook(hook: dict, state_json: bytes, kind: str) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = hook.get("env") or []
    timeout = hook.get("timeout")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(rfd, 0)
            os.closerange(3, 1 << 16)
            restore_defaults()
            os.execve(path, args, dict(e.split("=", 1) for e in env))
        finally:
            os._exit(127)
    os.close(rfd)
    try:
        os.write(wfd, state_json)
    except BrokenPipeError:
        pass  # the hook need not read its stdin
    os.close(wfd)
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, SIGKILL)
            os.waitpid(pid, 0)
            raise HookError(f"{kind} hook {path} timed out after {timeout}s")
        time.sleep(0.005)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise HookError(f"{kind} hook {path} failed with exit status {code}")


def run_hooks(spec: dict, kind: str, state_json: bytes) -> None:
    """Run every hook of `kind`; the first failure raises HookError."""
    for hook in (spec.get("hooks") or {}).get(kind) or ():
        run_hook(hook, state_json, kind)
