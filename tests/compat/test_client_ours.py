"""dockyard.client and `dockyard version` / `dockyard info` against our own daemon
(`dockyard daemon` on a private socket and data root, one per module)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard import __version__
from dockyard.client import Client
from dockyard.errors import NotFound


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path_ = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)


def _dockyard(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard.cli.main", *args], check=False,
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("dyc")
    sock = root / "d.sock"
    log = open(root / "daemon.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "daemon",
                             "-H", f"unix://{sock}", "--data-root", str(root / "data"),
                             "--exec-root", str(root / "exec"),
                             "--pidfile", str(root / "d.pid")], stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            conn = _Unix(str(sock))
            conn.request("GET", "/_ping")
            if conn.getresponse().status == 200:
                conn.close()
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError((root / "daemon.log").read_text(errors="replace"))
        time.sleep(0.05)
    yield f"unix://{sock}"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def test_client_version_info_images(host: str) -> None:
    with Client(host) as c:
        assert c.ping()["api-version"] == "1.41"
        assert c.api_version == "1.41"
        assert c.get("/version")["Version"] == __version__
        info = c.get("/info")
        assert info["ServerVersion"] == __version__ and info["OSType"] == "linux"
        assert isinstance(c.get("/images/json"), list)
        with pytest.raises(NotFound, match="nope:nope"):
            c.get("/images/nope:nope/json")


def test_cli_version_prints_both_sections(host: str) -> None:
    r = _dockyard("-H", host, "version")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Client: Dockyard"
    assert f" Version:           {__version__}" in lines
    assert " API version:       1.41" in lines
    assert any(line.startswith(" Python version:    python3.") for line in lines)
    assert "Server: Dockyard Engine" in lines and " Engine:" in lines
    assert "  API version:      1.41 (minimum version 1.24)" in lines
    r = _dockyard("-H", host, "version", "--format",
                  "{{.Server.Version}} {{.Server.APIVersion}} {{.Client.APIVersion}}")
    assert r.stdout.split() == [__version__, "1.41", "1.41"]
    doc = json.loads(_dockyard("--host", host, "version", "-f", "{{json .}}").stdout)
    assert doc["Server"]["MinAPIVersion"] == "1.24" and doc["Client"]["Version"] == __version__


def test_cli_info_prints_both_sections(host: str) -> None:
    r = _dockyard(f"--host={host}", "info")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["Client:", f" Version:    {__version__}"]
    assert "Server:" in lines
    assert f" Server Version: {__version__}" in lines
    assert " Storage Driver: overlay2" in lines
    assert any(line.startswith(" Total Memory: ") and line.endswith("iB") for line in lines)
    r = _dockyard("-H", host, "info", "--format", "{{.ServerVersion}} {{.ClientInfo.Version}}")
    assert r.stdout.split() == [__version__, __version__]
    bad = _dockyard("-H", host, "info", "--format", "{{.NoSuchField}}")
    assert bad.returncode == 1 and "NoSuchField" in bad.stderr
    assert "Error response from daemon" not in bad.stderr


def test_dockyard_host_env(host: str) -> None:
    env = {**os.environ, "DOCKYARD_HOST": host}
    r = _dockyard("version", "--format", "{{.Server.Version}}", env=env)
    assert r.stdout.strip() == __version__


def test_cli_without_a_daemon(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/none.sock"
    r = _dockyard("-H", host, "version")
    assert r.returncode == 1
    assert r.stdout.startswith("Client: Dockyard") and "Server:" not in r.stdout
    assert r.stderr.strip() == (f"Cannot connect to the Dockyard daemon at {host}. "
                                "Is the dockyard daemon running?")
    r = _dockyard("-H", host, "info")
    assert r.returncode == 1 and "Cannot connect to the Dockyard daemon" in r.stderr
