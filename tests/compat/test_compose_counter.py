"""The seed's counter-app (examples/counter-app) end to end with `dockyard compose`
against a private daemon: the offline base images loaded by `dockyard image bootstrap`
(from its cache), web-fe built from Dockerfile.offline, `up -d --build`, three requests
counting 1, 2, 3, and `down -v` leaving no container, network or volume behind.

Slow the first time on a machine (debootstrap); seconds once bootstrap's cache exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_images import Daemon, http_request

APP = Path(__file__).resolve().parents[2] / "examples" / "counter-app"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(not (APP / "docker-compose.offline.yml").exists(),
                       reason="examples/counter-app has no docker-compose.offline.yml"),
    pytest.mark.skipif(not shutil.which("debootstrap"), reason="debootstrap missing"),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("dycounter"))
    yield d
    assert d.stop() == 0, d.logs()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def test_counter_app(daemon: Daemon, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))},
           "DOCKYARD_HOST": f"unix://{daemon.sock}", "XDG_CACHE_HOME": str(tmp_path / "c")}

    def dockyard(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", *args], cwd=app,
                           env=env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, check=False)
        assert r.returncode == 0, f"dockyard {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
        return r

    app = tmp_path / "counter-app"
    shutil.copytree(APP, app)
    port = _free_port()  # 5001 may be taken by the demo
    text = (app / "docker-compose.yml").read_text()
    assert "published: 5001" in text
    (app / "docker-compose.yml").write_text(text.replace("published: 5001", f"published: {port}"))
    dockyard("image", "bootstrap", "--only", "python-flask", "redis", "-q", timeout=1800)
    files = ["-f", "docker-compose.yml", "-f", "docker-compose.offline.yml"]
    try:
        dockyard("compose", *files, "up", "-d", "--build")
        ps = [json.loads(x) for x in dockyard("compose", *files, "ps", "--format",
                                              "json").stdout.splitlines()]
        assert sorted(r["Service"] for r in ps) == ["redis", "web-fe"]
        assert all(r["State"] == "running" for r in ps)
        counts = []
        for _ in range(3):
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as f:
                        body = f.read().decode()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the app did not answer"
                    time.sleep(0.3)
            counts.append(int(re.search(r"(\d+) times", body).group(1)))
        assert counts == [1, 2, 3]
        assert "python app.py" in dockyard("compose", *files, "top").stdout
        assert "web-fe-1  |" in dockyard("compose", *files, "logs", "--no-color").stdout
    finally:
        dockyard("compose", *files, "down", "-v", "--rmi", "local")
    sock = str(daemon.sock)
    assert json.loads(http_request(sock, "GET", "/containers/json?all=1")[2]) == []
    nets = [n["Name"] for n in json.loads(http_request(sock, "GET", "/networks")[2])]
    assert not [n for n in nets if n.startswith("counter-app")]
    vols = json.loads(http_request(sock, "GET", "/volumes")[2])["Volumes"] or []
    assert not [v for v in vols if v["Name"].startswith("counter-app")]
    assert http_request(sock, "GET", "/images/counter-app-web-fe/json")[0] == 404
