"""Fixtures for running the real dockerd as a peer with our OCI runtime.

One private dockerd per session (see dockyard/devtools/dockerd_peer.py). Its runtimes:

  dockyard  -> $DOCKYARD_RUNTIME_BIN (default .venv/bin/dockyard-runtime)
  dyk-runc  -> /usr/sbin/runc (validates the tests themselves)

TEST_RUNTIME (env) or --test-runtime (option) picks the one the tests pass to
`docker run --runtime`; the default is "dockyard":

  TEST_RUNTIME=dyk-runc .venv/bin/python -m pytest tests/compat/test_dockerd_runtime.py
"""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

import pytest

from dockyard.devtools.dockerd_peer import DockerdPeer, PeerError, peer_missing

REPO = Path(__file__).resolve().parents[2]
RUNC = "/usr/sbin/runc"


def runtime_bin() -> str:
    return os.environ.get("DOCKYARD_RUNTIME_BIN") or str(REPO / ".venv/bin/dockyard-runtime")


def pytest_addoption(parser: pytest.Parser) -> None:
    # only registered when pytest starts in/at tests/compat; TEST_RUNTIME works everywhere
    parser.addoption("--test-runtime", default=None,
                     help="runtime name for `docker run --runtime` (dockyard | dyk-runc)")


@pytest.fixture(scope="session")
def test_runtime(request: pytest.FixtureRequest) -> str:
    try:
        opt = request.config.getoption("--test-runtime")
    except ValueError:
        opt = None
    name = opt or os.environ.get("TEST_RUNTIME") or "dockyard"
    if name == "dockyard" and not os.access(runtime_bin(), os.X_OK):
        pytest.skip(f"dockyard-runtime not found at {runtime_bin()} (DOCKYARD_RUNTIME_BIN)")
    if name == "dyk-runc" and not os.access(RUNC, os.X_OK):
        pytest.skip(f"{RUNC} missing")
    return name


@pytest.fixture(scope="session")
def dockerd() -> DockerdPeer:
    why = peer_missing()
    if why:
        pytest.skip(why)
    runtimes = {"dockyard": runtime_bin(), "dyk-runc": RUNC}
    driver = os.environ.get("DYK_TEST_STORAGE_DRIVER") or None
    peer = DockerdPeer.start(runtimes, storage_driver=driver)
    yield peer
    problems = peer.stop()
    if problems:
        # teardown cleaned these up too; say what had leaked
        warnings.warn("dockerd peer teardown: " + "; ".join(problems), stacklevel=1)


class Docker:
    """The docker CLI bound to the peer and the runtime under test.

    `run(...)` adds `--runtime`; containers it names are removed at test end.
    """

    def __init__(self, peer: DockerdPeer, runtime: str) -> None:
        self.peer = peer
        self.runtime = runtime
        self.names: list[str] = []

    def name(self, hint: str = "c") -> str:
        n = f"dyk-{hint}-{uuid.uuid4().hex[:8]}"
        self.names.append(n)
        return n

    def __call__(self, *args: str, **kw):
        return self.peer.docker(*args, **kw)

    def run(self, *args: str, **kw):
        return self.peer.docker("run", "--runtime", self.runtime, *args, **kw)

    def run_d(self, *args: str, name: str | None = None, **kw) -> str:
        """`docker run -d`; returns the container name."""
        name = name or self.name()
        self.peer.docker("run", "-d", "--runtime", self.runtime, "--name", name, *args, **kw)
        return name

    def pty(self, *args: str, timeout: float = 30.0) -> tuple[int, str]:
        return self.peer.docker_pty(*args, timeout=timeout)

    def inspect(self, name: str) -> dict:
        return self.peer.inspect(name)

    def cleanup(self) -> None:
        if self.names:
            try:
                self.peer.docker("rm", "-f", *self.names, check=False, timeout=30)
            except PeerError:
                pass


@pytest.fixture
def docker(test_runtime: str, dockerd: DockerdPeer):
    d = Docker(dockerd, test_runtime)
    yield d
    d.cleanup()
