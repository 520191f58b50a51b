"""Fixtures for the OCI runtime integration tests (tests/integration/test_runtime_*.py).

The tests speak runc's command line only, so the same suite runs against the
real runc and against `dockyard-runtime`:

    DOCKYARD_TEST_RUNTIME=/usr/sbin/runc pytest tests/integration -k runtime
    pytest tests/integration -k runtime          # the dockyard-runtime next to sys.executable

Every container gets a fresh bundle (a copy of one busybox rootfs plus a
config.json derived from `runc spec`'s default), a per-test --root state dir
and linux.cgroupsPath=/dockyard-test/<id>. The finalizer force-deletes every
container, kills what is left in the test's cgroups, removes those cgroups,
lazily unmounts anything under the test's temp dir and removes it.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

RUNC = "/usr/sbin/runc"
CGROUP_PARENT = "dockyard-test"
CGROUP_FS = "/sys/fs/cgroup"
DEFAULT_TIMEOUT = 30.0


# --------------------------------------------------------------------------- binary


def runtime_binary() -> str:
    env = os.environ.get("DOCKYARD_TEST_RUNTIME")
    if env:
        return env
    # Not resolved: in a venv sys.executable is a symlink inside .venv/bin.
    return str(Path(sys.executable).parent / "dockyard-runtime")


@functools.cache
def runtime_is_runc(binary: str | None = None) -> bool:
    binary = binary or runtime_binary()
    if os.path.basename(binary) == "runc":
        return True
    try:
        out = subprocess.run(
            [binary, "--version"], check=False, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.startswith("runc version")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root, namespaces and mounts")
    config.addinivalue_line(
        "markers", "dockyard_only: asserts dockyard-specific behaviour; skipped under runc"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    not_root = os.geteuid() != 0
    is_runc = None
    for item in items:
        if not item.path.name.startswith("test_runtime_"):
            continue
        item.add_marker(pytest.mark.root)
        if not_root:
            item.add_marker(pytest.mark.skip(reason="runtime integration tests need root"))
            continue
        if item.get_closest_marker("dockyard_only"):
            if is_runc is None:
                is_runc = runtime_is_runc()
            if is_runc:
                item.add_marker(pytest.mark.skip(reason="dockyard-specific; the runtime is runc"))


# --------------------------------------------------------------------------- cgroups


def cgroup_roots() -> list[str]:
    """Mount points of every cgroup hierarchy (v1 controllers, v2 unified, or pure v2)."""
    if os.path.exists(os.path.join(CGROUP_FS, "cgroup.controllers")):
        return [CGROUP_FS]
    return sorted(
        p
        for p in glob.glob(os.path.join(CGROUP_FS, "*"))
        if os.path.isdir(p) and os.path.exists(os.path.join(p, "cgroup.procs"))
    )


def cgroup_dirs(cid: str) -> list[str]:
    """The test's cgroup dir for container `cid` in every hierarchy where it exists."""
    return [
        d for d in (os.path.join(r, CGROUP_PARENT, cid) for r in cgroup_roots()) if os.path.isdir(d)
    ]


def cgroup_v1_dir(controller: str, cid: str) -> str:
    return os.path.join(CGROUP_FS, controller, CGROUP_PARENT, cid)


def is_cgroup_v2() -> bool:
    return os.path.exists(os.path.join(CGROUP_FS, "cgroup.controllers"))


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, data: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(data)
    except OSError:
        pass


def _cgroup_pids(d: str) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(d):
        pids += [int(p) for p in _read(os.path.join(dirpath, "cgroup.procs")).split()]
    return pids


def remove_cgroup(cid: str) -> None:
    """Kill whatever is left in the container's test cgroups, then rmdir them (deepest first)."""
    for _ in range(50):
        dirs = cgroup_dirs(cid)
        if not dirs:
            break
        for d in dirs:
            # A frozen task cannot die; thaw first (v1 freezer, v2 cgroup.freeze).
            for dirpath, _subdirs, _files in os.walk(d):
                if os.path.exists(os.path.join(dirpath, "freezer.state")):
                    _write(os.path.join(dirpath, "freezer.state"), "THAWED")
                if os.path.exists(os.path.join(dirpath, "cgroup.freeze")):
                    _write(os.path.join(dirpath, "cgroup.freeze"), "0")
            for pid in _cgroup_pids(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for dirpath, _subdirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        time.sleep(0.05)
    for root in cgroup_roots():
        try:
            os.rmdir(os.path.join(root, CGROUP_PARENT))  # only succeeds once empty
        except OSError:
            pass


# --------------------------------------------------------------------------- mounts

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


def mounts_under(path: str) -> list[str]:
    path = os.path.realpath(path)
    found = []
    for line in _read("/proc/self/mountinfo").splitlines():
        mp = line.split()[4].encode().decode("unicode_escape")
        if mp == path or mp.startswith(path + "/"):
            found.append(mp)
    return found


def unmount_under(path: str) -> None:
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        _libc.umount2(mp.encode(), MNT_DETACH)


# --------------------------------------------------------------------------- helpers


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def check(self) -> Result:
        assert self.returncode == 0, (
            f"{' '.join(self.args)} exited {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"
        )
        return self


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    return "State:\tZ" not in _read(f"/proc/{pid}/status")


@dataclass
class Bundle:
    path: Path
    id: str
    spec: dict

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def save(self) -> Bundle:
        with open(self.path / "config.json", "w") as f:
            json.dump(self.spec, f, indent=2)
        return self


@dataclass
class Runtime:
    """The runtime under test, with a private --root and a record of what the test made."""

    binary: str
    workdir: Path
    base_spec: dict
    rootfs_src: str
    is_runc: bool
    ids: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.workdir / "state"

    # -- running the binary

    def __call__(
        self,
        *args: str,
        timeout: float = DEFAULT_TIMEOUT,
        stdin: Any = None,
        input: str | None = None,
        global_args: tuple[str, ...] = (),
        cwd: str | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> Result:
        """Run `<runtime> --root <root> [global_args] args...`.

        stdout/stderr go to files, not pipes: a detached container inherits them
        and would otherwise keep a pipe open forever.
        """
        argv = [self.binary, "--root", str(self.root), *global_args, *args]
        with (
            tempfile.TemporaryFile(dir=self.workdir) as out,
            tempfile.TemporaryFile(dir=self.workdir) as err,
            tempfile.TemporaryFile(dir=self.workdir) as stdin_file,
        ):
            if input is not None:
                stdin_file.write(input.encode())
                stdin_file.seek(0)
                stdin = stdin_file
            proc = subprocess.run(
                argv,
                check=False,
                stdin=stdin or subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                cwd=cwd,
                pass_fds=pass_fds,
            )
            out.seek(0)
            err.seek(0)
            return Result(
                argv,
                proc.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )

    def ok(self, *args: str, **kw: Any) -> Result:
        return self(*args, **kw).check()

    def state(self, cid: str) -> dict:
        return json.loads(self.ok("state", cid).stdout)

    def status(self, cid: str) -> str | None:
        r = self("state", cid)
        return json.loads(r.stdout)["status"] if r.returncode == 0 else None

    def wait_status(self, cid: str, status: str, timeout: float = 10.0) -> bool:
        return bool(wait_for(lambda: self.status(cid) == status, timeout))

    # -- bundles

    def new_id(self, prefix: str = "dyt") -> str:
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def bundle(
        self,
        args: list[str],
        *,
        cid: str | None = None,
        terminal: bool = False,
        configure: Callable[[dict], None] | None = None,
        rootfs: bool = True,
    ) -> Bundle:
        """A fresh bundle running `args`; `configure(spec)` tweaks the config before it is written."""
        cid = cid or self.new_id()
        if cid not in self.ids:
            self.ids.append(cid)
        path = self.workdir / "bundles" / cid
        path.mkdir(parents=True)
        if rootfs:
            shutil.copytree(self.rootfs_src, path / "rootfs", symlinks=True)
        spec = copy.deepcopy(self.base_spec)
        spec["process"]["args"] = list(args)
        spec["process"]["terminal"] = terminal
        spec["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
        if configure:
            configure(spec)
        return Bundle(path, cid, spec).save()

    # -- helpers exposed to the tests (test modules import nothing from here:
    #    a bare `import conftest` would clash with other test trees' conftests)

    wait_for = staticmethod(wait_for)
    pid_alive = staticmethod(pid_alive)
    cgroup_dirs = staticmethod(cgroup_dirs)
    cgroup_v2 = staticmethod(is_cgroup_v2)

    def cgroup_file(self, cid: str, v1: tuple[str, str], v2: str) -> str:
        """Path of a cgroup knob: v1=(controller, file) on v1 hosts, v2 file name on v2."""
        if is_cgroup_v2():
            return os.path.join(CGROUP_FS, CGROUP_PARENT, cid, v2)
        return os.path.join(cgroup_v1_dir(v1[0], cid), v1[1])

    # -- lifecycle shortcuts

    def run_fg(self, b: Bundle, *extra: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """`run` in the foreground without a terminal: the container's stdio is ours."""
        return self("run", "--bundle", str(b.path), *extra, b.id, timeout=timeout)

    def start_detached(self, b: Bundle, *extra: str) -> dict:
        """`run -d`, then return the state (status running)."""
        self.ok("run", "-d", "--bundle", str(b.path), *extra, b.id)
        st = self.state(b.id)
        assert st["status"] == "running", st
        return st

    def cleanup(self) -> None:
        ids = list(self.ids)
        if self.root.is_dir():
            listed = self("list", "-q", timeout=15)
            if listed.returncode == 0:
                ids += [i for i in listed.stdout.split() if i not in ids]
        for cid in ids:
            try:
                self("delete", "--force", cid, timeout=15)
            except subprocess.TimeoutExpired:
                pass
        # What `delete --force` left behind is a runtime bug: say so, then clean it up.
        leaked = [d for cid in ids for d in cgroup_dirs(cid)]
        leaked += mounts_under(str(self.workdir))
        if leaked:
            warnings.warn(f"{self.binary} left behind after delete --force: {leaked}", stacklevel=1)
        for cid in ids:
            remove_cgroup(cid)
        unmount_under(str(self.workdir))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def runtime_bin() -> str:
    binary = runtime_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"runtime under test not found or not executable: {binary}")
    return binary


@pytest.fixture(scope="session")
def is_runc(runtime_bin: str) -> bool:
    return runtime_is_runc(runtime_bin)


@pytest.fixture(scope="session")
def base_spec(runtime_bin: str) -> dict:
    """runc's default `spec`, so the tests do not depend on our own defaults."""
    generator = RUNC if os.access(RUNC, os.X_OK) else runtime_bin
    with tempfile.TemporaryDirectory(prefix="dyt-spec-") as d:
        subprocess.run([generator, "spec"], cwd=d, check=True, capture_output=True, timeout=30)
        with open(os.path.join(d, "config.json")) as f:
            return json.load(f)


@pytest.fixture(scope="session")
def busybox_rootfs() -> Any:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("needs /bin/busybox (busybox-static)")
    from dockyard.devtools.busybox import make_rootfs

    d = tempfile.mkdtemp(prefix="dyt-rootfs-")
    make_rootfs(os.path.join(d, "rootfs"))
    yield os.path.join(d, "rootfs")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rt(runtime_bin: str, is_runc: bool, base_spec: dict, busybox_rootfs: str) -> Any:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    workdir = Path(tempfile.mkdtemp(prefix="dyt-"))
    (workdir / "state").mkdir()
    runtime = Runtime(runtime_bin, workdir, base_spec, busybox_rootfs, is_runc)
    try:
        yield runtime
    finally:
        try:
            runtime.cleanup()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
