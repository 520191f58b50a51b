"""Compose service features that reach the engine: `blkio_config` (limits written to
the container's block I/O cgroup, on a loop device made for the test), `gpus` and
reserved devices (the start fails as on a dockerd without GPU drivers), and secrets
and configs from `environment`/`content` (copied in after create) or `external`
(refused as docker compose v2 refuses them outside swarm mode).

The daemon and helpers are test_compose.py's (one daemon for this module).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_compose import (  # noqa: F401 - fixtures used by name
    LOOP,
    Compose,
    _project,
    compose,
    daemon,
    workdir,
)

CG = "/sys/fs/cgroup"


@contextlib.contextmanager
def loop_device(directory: Path) -> Iterator[str]:
    """A loop device over a sparse file; BFQ as its scheduler where the kernel has it
    (per-device weights need it)."""
    backing = directory / "loop.img"
    with open(backing, "wb") as f:
        f.truncate(32 << 20)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        sched = f"/sys/block/{os.path.basename(dev)}/queue/scheduler"
        with contextlib.suppress(OSError):
            if "bfq" in Path(sched).read_text():
                Path(sched).write_text("bfq")
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        backing.unlink()


@pytest.fixture(scope="module")
def loopdev(workdir: Path) -> Iterator[str]:
    if subprocess.run(["losetup", "--version"], check=False,
                      capture_output=True).returncode != 0:
        pytest.skip("needs losetup")
    with loop_device(workdir) as dev:
        yield dev


def container_cgroup(pid: int, controller: str) -> str:
    """The host path of a process's cgroup for `controller` (v1), else its v2 group."""
    unified = ""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return f"{CG}/{controller}{path}"
        if controllers == "":
            unified = f"{CG}{path}"
    return unified


def _inspect(compose: Compose, name: str) -> dict:
    status, body = compose.api("GET", f"/containers/{name}/json")
    assert status == 200, body
    return body  # type: ignore[return-value]


def test_blkio_config_reaches_the_cgroup(compose: Compose, workdir: Path,
                                         loopdev: str) -> None:
    st = os.stat(loopdev)
    dev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    d = _project(workdir, "blkio", f"""
services:
  b:
    image: busybox:dyk
    command: ["sh", "-c", "{LOOP}"]
    blkio_config:
      weight: 300
      weight_device: [{{path: {loopdev}, weight: 400}}]
      device_read_bps: [{{path: {loopdev}, rate: 12mb}}]
      device_write_bps: [{{path: {loopdev}, rate: 1048576}}]
      device_read_iops: [{{path: {loopdev}, rate: 100}}]
      device_write_iops: [{{path: {loopdev}, rate: "30"}}]
""")
    try:
        compose(d, "up", "-d")
        info = _inspect(compose, "blkio-b-1")
        hc = info["HostConfig"]
        assert hc["BlkioWeight"] == 300
        assert hc["BlkioWeightDevice"] == [{"Path": loopdev, "Weight": 400}]
        assert hc["BlkioDeviceReadBps"] == [{"Path": loopdev, "Rate": 12 << 20}]
        assert hc["BlkioDeviceWriteIOps"] == [{"Path": loopdev, "Rate": 30}]
        cg = container_cgroup(info["State"]["Pid"], "blkio")
        if "/blkio/" in cg:  # cgroup v1: CFQ's files, else BFQ's
            weight = "blkio.weight" if os.path.exists(f"{cg}/blkio.weight") \
                else "blkio.bfq.weight"
            assert Path(f"{cg}/{weight}").read_text().split()[-1] == "300"
            assert f"{dev} 400" in Path(f"{cg}/{weight}_device").read_text()
            for name, rate in (("read_bps_device", 12 << 20), ("write_bps_device", 1 << 20),
                               ("read_iops_device", 100), ("write_iops_device", 30)):
                assert Path(f"{cg}/blkio.throttle.{name}").read_text().split() == \
                    [dev, str(rate)]
        else:
            line = [x for x in Path(f"{cg}/io.max").read_text().splitlines()
                    if x.startswith(dev + " ")]
            assert line and line[0].split()[1:] == [
                f"rbps={12 << 20}", f"wbps={1 << 20}", "riops=100", "wiops=30"]
    finally:
        compose(d, "down")


def test_blkio_device_that_does_not_exist_fails_the_start(compose: Compose,
                                                          workdir: Path) -> None:
    d = _project(workdir, "blkiobad", """
services:
  b:
    image: busybox:dyk
    command: ["true"]
    blkio_config:
      device_read_bps: [{path: /dev/dyk-no-such-disk, rate: 1mb}]
""")
    try:
        r = compose(d, "up", "-d", check=False)
        assert r.returncode != 0
        assert "stat /dev/dyk-no-such-disk: no such file or directory" in r.stderr
        state = _inspect(compose, "blkiobad-b-1")["State"]
        assert state["Status"] == "created" and state["ExitCode"] == 128
    finally:
        compose(d, "down")


@pytest.mark.parametrize("service, message, requests", [
    ("gpus: all", 'could not select device driver "" with capabilities: [[gpu]]',
     [{"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]],
       "Options": None}]),
    ("gpus: [{driver: nvidia, device_ids: ['0'], capabilities: [compute]}]",
     'could not select device driver "nvidia" with capabilities: [[compute gpu]]',
     [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0"], "Capabilities": [["compute", "gpu"]],
       "Options": None}]),
    ("deploy: {resources: {reservations: {devices: [{capabilities: [gpu], count: 1}]}}}",
     'could not select device driver "" with capabilities: [[gpu]]',
     [{"Driver": "", "Count": 1, "DeviceIDs": None, "Capabilities": [["gpu"]],
       "Options": None}]),
])
def test_gpu_requests_fail_the_start_like_dockerd_without_drivers(
        compose: Compose, workdir: Path, service: str, message: str,
        requests: list) -> None:
    d = _project(workdir, "gpu", f"""
services:
  g:
    image: busybox:dyk
    command: ["sh", "-c", "{LOOP}"]
    {service}
""")
    try:
        r = compose(d, "up", "-d", check=False)
        assert r.returncode != 0 and message in r.stderr, r.stderr
        info = _inspect(compose, "gpu-g-1")
        assert info["HostConfig"]["DeviceRequests"] == requests
        assert info["State"]["Running"] is False and info["State"]["Status"] == "created"
        assert info["State"]["Error"] == message and info["State"]["ExitCode"] == 128
        # the API answers as dockerd does: a 500 with its message
        status, body = compose.api("POST", f"/containers/{info['Id']}/start")
        assert (status, body) == (500, {"message": message})
        assert not [c for c in compose.containers("gpu") if c["State"] == "running"]
    finally:
        compose(d, "down")


def test_secrets_and_configs_from_environment_and_content(compose: Compose,
                                                          workdir: Path) -> None:
    d = _project(workdir, "filesin", """
services:
  s:
    image: busybox:dyk
    command: ["sh", "-c", "cat /run/secrets/token /run/secrets/other /app.conf /etc/c.txt;
              ls -ln /run/secrets/token /etc/c.txt"]
    secrets: [token, {source: token, target: other}]
    configs: [app.conf, {source: inline, target: /etc/c.txt, mode: 0440}]
secrets:
  token:
    environment: DYK_TOKEN
configs:
  app.conf:
    environment: DYK_CONF
  inline:
    content: "hello $${DYK_TOKEN} ${DYK_CONF}"
""")
    try:
        r = compose(d, "up", env={"DYK_TOKEN": "t0k3n", "DYK_CONF": "conf!"})
        out = r.stdout
        assert "t0k3nt0k3nconf!hello ${DYK_TOKEN} conf!" in out, out
        assert "-r--r--r--" in out and "-r--r-----" in out, out
    finally:
        compose(d, "down")


@pytest.mark.parametrize("text, message", [
    ("secrets: [a]\nsecrets:\n  a:\n    external: true\n", "unsupported external secret a"),
    ("configs: [a]\nconfigs:\n  a:\n    external: true\n    name: shared\n",
     "unsupported external config shared"),
    ("secrets: [a]\nsecrets:\n  a:\n    environment: DYK_UNSET_VAR\n",
     'environment variable "DYK_UNSET_VAR" required by secret "refused_a" is not set'),
    ("read_only: true\n    configs: [a]\nconfigs:\n  a:\n    content: x\n",
     ('cannot create config "refused_a" in read-only service s: `file` is the sole '
      "supported option")),
])
def test_refused_secrets_and_configs(compose: Compose, workdir: Path, text: str,
                                     message: str) -> None:
    d = _project(workdir, "refused", "services:\n  s:\n    image: busybox:dyk\n"
                 "    command: ['true']\n    " + text)
    try:
        r = compose(d, "up", "-d", check=False)
        assert r.returncode != 0 and message in r.stderr, r.stderr
        assert not [c for c in compose.containers("refused") if c["State"] == "running"]
    finally:
        compose(d, "down")
