"""A container's state on disk: <root>/<id>/state.json, written atomically.

The status is derived, never stored once running: runc's rules. The init
process is identified by pid *and* start time, so a recycled pid is not
mistaken for the container.
"""

import os
import time

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.runtime import (
    DEFAULT_ROOT,  # noqa: F401 - re-exported
    jsonio,
)

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
FIFO = "exec.fifo"
OCI_VERSION = "1.0.2"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> None:
    if not container_id or not _ID_CHARS.issuperset(container_id) or container_id in (".", ".."):
        raise InvalidArgument(f"invalid container id format: {container_id!r}")


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def write_json_atomic(path: str, data) -> None:
    # rename makes the write atomic against a kill -9; no fsync, as with runc: the state
    # lives on /run, which does not outlive a power loss anyway.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        jsonio.dump(data, f)
    os.rename(tmp, path)


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class ContainerState:
    """What the runtime remembers about one container between invocations."""

    def __init__(self, root: str, container_id: str, data: dict):
        self.root = root
        self.id = container_id
        self.data = data

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def pid(self) -> int:
        return self.data.get("pid") or 0

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    @classmethod
    def new(cls, root: str, container_id: str, bundle: str, spec: dict) -> "ContainerState":
        """Claim the id: the directory is made atomically, so two creates cannot both win."""
        check_id(container_id)
        os.makedirs(root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(os.path.join(root, container_id), 0o711)
        except FileExistsError:
            raise Conflict(f"container with id exists: {container_id}") from None
        state = cls(root, container_id, {
            "id": container_id, "pid": 0, "start_time": 0, "bundle": bundle,
            "rootfs": "", "created": now_rfc3339(), "status": "creating",
            "annotations": spec.get("annotations") or {}, "owner": "",
        })
        write_json_atomic(os.path.join(state.dir, CONFIG_FILE), spec)
        state.save()
        return state

    @classmethod
    def load(cls, root: str, container_id: str) -> "ContainerState":
        check_id(container_id)
        try:
            with open(os.path.join(root, container_id, STATE_FILE)) as f:
                data = jsonio.load(f)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"container does not exist: {container_id}") from None
        except ValueError:
            raise NotFound(f"container state is corrupt: {container_id}") from None
        return cls(root, container_id, data)

    @classmethod
    def all(cls, root: str) -> list["ContainerState"]:
        try:
            names = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        states = []
        for name in names:
            try:
                states.append(cls.load(root, name))
            except (NotFound, InvalidArgument):
                continue
        return states

    def save(self) -> None:
        write_json_atomic(os.path.join(self.dir, STATE_FILE), self.data)

    def config(self) -> dict:
        with open(os.path.join(self.dir, CONFIG_FILE)) as f:
            return jsonio.load(f)

    def save_config(self, spec: dict) -> None:
        write_json_atomic(os.path.join(self.dir, CONFIG_FILE), spec)

    def alive(self) -> bool:
        pid = self.pid
        return pid > 0 and process_start_time(pid) == self.data.get("start_time")

    def status(self, frozen=None) -> str:
        """creating | created | running | paused | stopped, derived as runc does."""
        if self.data.get("status") == "creating":
            return "creating" if self.pid == 0 or self.alive() else "stopped"
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        if frozen is not None and frozen():
            return "paused"
        return "running"

    def oci_state(self, status: str) -> dict:
        """The state object of the runtime spec (`state` output, hooks' stdin)."""
        return {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.data["bundle"],
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data["created"],
            "owner": self.data.get("owner", ""),
            "annotations": self.data.get("annotations") or {},
        }

    def remove(self) -> None:
        # only files live here: no need for shutil (an import the hot path avoids)
        try:
            for entry in os.scandir(self.dir):
                os.unlink(entry.path)
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass
