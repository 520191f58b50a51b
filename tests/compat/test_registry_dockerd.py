"""The real dockerd pushes to and pulls from `dockyard registry serve`.

Uses the session's private dockerd (conftest.py), which has busybox:dyk
imported from a busybox rootfs tar. Loopback registries are insecure by
default in dockerd, so plain HTTP on 127.0.0.1 works without daemon flags.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dockyard.devtools.dockerd_peer import IMAGE, DockerdPeer

pytestmark = pytest.mark.dockerd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, root: Path, *args: str) -> None:
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "dockyard.cli.main", "registry", "serve",
                "--addr", self.host, "--root", str(root), *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(f"http://{self.host}/v2/", timeout=1)
                return
            except requests.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("dockyard registry did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    r = Registry(tmp_path / "root")
    yield r
    r.stop()


def _image_id(peer: DockerdPeer, ref: str) -> str:
    return peer.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def _push_pull(peer: DockerdPeer, ref: str) -> None:
    image_id = _image_id(peer, IMAGE)
    peer.docker("tag", IMAGE, ref)
    try:
        out = peer.docker("push", ref, timeout=120).stdout
        assert "digest: sha256:" in out
        peer.docker("rmi", ref)
        assert peer.docker("image", "inspect", ref, check=False).returncode != 0
        peer.docker("pull", ref, timeout=120)
        assert _image_id(peer, ref) == image_id
    finally:
        peer.docker("rmi", ref, check=False)


def test_docker_push_pull(dockerd: DockerdPeer, registry: Registry) -> None:
    _push_pull(dockerd, f"{registry.host}/dyk/busybox:t1")
    r = requests.get(f"http://{registry.host}/v2/dyk/busybox/tags/list", timeout=10)
    assert r.json() == {"name": "dyk/busybox", "tags": ["t1"]}


def test_docker_pull_layers_after_image_removed(dockerd: DockerdPeer, tmp_path: Path) -> None:
    """Push, remove the image entirely from dockerd, pull it back: same image ID."""
    reg = Registry(tmp_path / "root")
    ref = f"{reg.host}/dyk/fresh:t2"
    try:
        image_id = _image_id(dockerd, IMAGE)
        dockerd.docker("tag", IMAGE, ref)
        dockerd.docker("push", ref, timeout=120)
        saved = tmp_path / "busybox.tar"
        dockerd.docker("save", "-o", str(saved), IMAGE)
        dockerd.docker("rmi", ref)
        if dockerd.docker("rmi", IMAGE, check=False).returncode != 0:
            pytest.skip(f"{IMAGE} is in use by containers of other tests")
        assert dockerd.docker("image", "inspect", image_id, check=False).returncode != 0
        dockerd.docker("pull", ref, timeout=120)
        assert _image_id(dockerd, ref) == image_id
    finally:
        dockerd.docker("rmi", ref, check=False)
        if dockerd.docker("image", "inspect", IMAGE, check=False).returncode != 0:
            dockerd.docker("load", "-i", str(tmp_path / "busybox.tar"), timeout=120)
        reg.stop()


def test_docker_login_and_push_with_token_auth(dockerd: DockerdPeer, tmp_path: Path) -> None:
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd (apache2-utils) missing")
    htpasswd = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(htpasswd), "dyk", "pw-123"], check=True,
                   capture_output=True)
    reg = Registry(tmp_path / "root", "--htpasswd", str(htpasswd), "--token-auth")
    try:
        bad = dockerd.docker("login", "-u", "dyk", "--password-stdin", reg.host,
                             input="wrong\n", check=False)
        assert bad.returncode != 0
        dockerd.docker("login", "-u", "dyk", "--password-stdin", reg.host, input="pw-123\n")
        _push_pull(dockerd, f"{reg.host}/auth/busybox:t1")
        dockerd.docker("logout", reg.host)
        r = dockerd.docker("pull", f"{reg.host}/auth/busybox:t1", check=False, timeout=60)
        assert r.returncode != 0
    finally:
        dockerd.docker("logout", reg.host, check=False)
        reg.stop()
