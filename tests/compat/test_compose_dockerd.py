"""`dockyard compose` against the real dockerd (the session's private peer, its default
runtime): our Compose speaks only the Engine API, so a project runs on docker too,
with docker compose's names and labels, and converges the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dockerd

PROJECT = """
services:
  db:
    image: busybox:dyk
    command: ["sh", "-c", "trap 'exit 0' TERM; touch /tmp/ok; sleep 3600 & wait"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 1s
    volumes: [data:/data]
  web:
    image: busybox:dyk
    command: ["sh", "-c", "trap 'exit 0' TERM; echo hello from web; sleep 3600 & wait"]
    environment: [GREETING=hi]
    ports: ["127.0.0.1::80"]
    depends_on:
      db:
        condition: service_healthy
volumes:
  data: {}
"""


def test_compose_against_dockerd(dockerd, tmp_path: Path) -> None:
    if dockerd.docker("image", "inspect", "busybox:dyk", check=False).returncode != 0:
        pytest.skip("the dockerd peer has no busybox:dyk")
    (tmp_path / "compose.yaml").write_text(PROJECT)
    env = {**dockerd.env(), "DOCKYARD_HOST": dockerd.host,
           "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "compose", "-p", "dykc",
                            *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120, check=False)
        assert not check or r.returncode == 0, r.stderr
        return r

    try:
        compose("up", "-d")
        ps = {json.loads(x)["Service"]: json.loads(x)
              for x in compose("ps", "--format", "json").stdout.splitlines()}
        assert set(ps) == {"db", "web"} and ps["db"]["Health"] == "healthy"
        info = dockerd.inspect("dykc-web-1")
        labels = info["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == "dykc"
        assert labels["com.docker.compose.service"] == "web"
        assert "dykc_default" in info["NetworkSettings"]["Networks"]
        assert compose("exec", "-T", "web", "sh", "-c", "echo $GREETING").stdout == "hi\n"
        assert "hello from web" in compose("logs", "web").stdout
        assert compose("port", "web", "80").stdout.startswith("127.0.0.1:")
        db_id = dockerd.inspect("dykc-db-1")["Id"]
        (tmp_path / "compose.yaml").write_text(PROJECT.replace("GREETING=hi", "GREETING=yo"))
        r = compose("up", "-d")
        assert "dykc-web-1  Recreate" in r.stderr and "dykc-db-1  Recreate" not in r.stderr
        assert dockerd.inspect("dykc-db-1")["Id"] == db_id
    finally:
        compose("down", "-v", "-t", "1", check=False)
    assert dockerd.docker("ps", "-aq", "--filter", "label=com.docker.compose.project=dykc"
                          ).stdout.split() == []
    assert dockerd.docker("volume", "ls", "-q").stdout.split().count("dykc_data") == 0
    assert "dykc_default" not in dockerd.docker("network", "ls").stdout
