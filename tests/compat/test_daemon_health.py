"""Health checks of `dockyard daemon` with the official docker CLI and the docker SDK:
starting -> healthy -> unhealthy, health_status events, State.Health in inspect,
`docker ps` status and its health filter, the start period, the probe timeout, an
image's HEALTHCHECK merged with the run flags, --no-healthcheck, and probes
resumed by a restarted daemon (live-restore).

One daemon for the module (private data root, exec root and socket); at the end it
is stopped and nothing may be left (no monitor, process, mount or cgroup).
Intervals are 100ms (docker's minimum is 1ms) so the module stays fast.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

# the same module-scoped daemon set-up as the container tests (a daemon of its own here)
from test_daemon_containers import (  # noqa: F401
    _check_nothing_left,
    _read_pid,
    busybox,
    daemon,
    docker,
    workdir,
)
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

FAST = ("--health-interval", "100ms", "--health-timeout", "2s")


def _health(docker: DockerCLI, name: str) -> dict:
    out = docker("inspect", "--format", "{{json .State.Health}}", name).stdout
    return json.loads(out) or {}


def _wait_health(docker: DockerCLI, name: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        h = _health(docker, name)
        if h.get("Status") == status:
            return h
        assert time.monotonic() < deadline, f"{name} never {status}: {h}"
        time.sleep(0.05)


def _ps_status(docker: DockerCLI, name: str) -> str:
    return docker("ps", "-a", "--filter", f"name=^{name}$", "--format",
                  "{{.Status}}").stdout.strip()


def test_healthy_then_unhealthy(docker: DockerCLI, busybox: str) -> None:
    since = time.time()
    docker("run", "-d", "--name", "hc1", "--health-cmd", "cat /tmp/ok", *FAST,
           "--health-retries", "2", "busybox:dyk", "sleep", "100")
    try:
        assert _health(docker, "hc1")["Status"] in ("starting", "unhealthy")
        docker("exec", "hc1", "sh", "-c", "echo fine > /tmp/ok")
        h = _wait_health(docker, "hc1", "healthy")
        assert h["FailingStreak"] == 0
        last = h["Log"][-1]
        assert last["ExitCode"] == 0 and last["Output"] == "fine\n"
        assert last["Start"] <= last["End"]
        assert _ps_status(docker, "hc1").endswith("(healthy)")
        names = docker("ps", "--filter", "health=healthy", "--format", "{{.Names}}").stdout
        assert "hc1" in names.split()
        docker("exec", "hc1", "rm", "/tmp/ok")
        h = _wait_health(docker, "hc1", "unhealthy")
        assert h["FailingStreak"] >= 2 and 1 <= len(h["Log"]) <= 5
        assert h["Log"][-1]["ExitCode"] == 1 and "No such file" in h["Log"][-1]["Output"]
        assert _ps_status(docker, "hc1").endswith("(unhealthy)")
        r = docker("events", "--since", f"{since:.9f}", "--until", f"{time.time():.9f}",
                   "--filter", "container=hc1", "--filter", "event=health_status",
                   "--format", "{{.Action}}")
        actions = r.stdout.split("\n")
        assert "health_status: healthy" in actions and "health_status: unhealthy" in actions
        assert actions.index("health_status: healthy") < \
            len(actions) - 1 - actions[::-1].index("health_status: unhealthy")
        # a stopped container keeps its log and is left unhealthy, and probes stop
        docker("kill", "hc1")
        h = _wait_health(docker, "hc1", "unhealthy")
        count = len(h["Log"])
        time.sleep(0.3)
        assert _health(docker, "hc1")["Log"][-1] == h["Log"][-1] and count <= 5
    finally:
        docker("rm", "-f", "hc1", check=False)


def test_start_period_and_starting_status(daemon: Daemon, docker: DockerCLI,
                                          busybox: str) -> None:
    # StartInterval needs API 1.44 in the docker CLI: the container is made over HTTP
    body = {"Image": "busybox:dyk", "Cmd": ["sleep", "100"],
            "Healthcheck": {"Test": ["CMD", "false"], "Interval": 100_000_000,
                            "StartPeriod": 30_000_000_000, "StartInterval": 100_000_000,
                            "Retries": 1}}
    status, _, out = http_request(daemon.sock, "POST", "/containers/create?name=hc2",
                                  json.dumps(body).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 201, out
    docker("start", "hc2")
    try:
        deadline = time.monotonic() + 10
        while len(_health(docker, "hc2").get("Log") or []) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        h = _health(docker, "hc2")
        assert h["Status"] == "starting" and h["FailingStreak"] == 0  # failures not counted
        assert _ps_status(docker, "hc2").endswith("(health: starting)")
        names = docker("ps", "--filter", "health=starting", "--format", "{{.Names}}").stdout
        assert names.split() == ["hc2"]
        r = docker("ps", "--filter", "health=sick", check=False)
        assert r.returncode != 0 and "Unrecognised filter value for health: sick" in r.stderr
    finally:
        docker("rm", "-f", "hc2", check=False)


def test_probe_timeout(docker: DockerCLI, busybox: str) -> None:
    docker("run", "-d", "--name", "hc3", "--health-cmd", "echo slow; sleep 10",
           "--health-interval", "100ms", "--health-timeout", "300ms", "--health-retries", "1",
           "busybox:dyk", "sleep", "100")
    try:
        h = _wait_health(docker, "hc3", "unhealthy")
        last = h["Log"][0]
        assert last["ExitCode"] == -1
        assert last["Output"] == "Health check exceeded timeout (300ms): slow\n"
        time.sleep(0.5)
        top = docker("top", "hc3").stdout.splitlines()
        probes = [line for line in top if line.endswith(" sleep 10")]
        assert len(probes) <= 1, top  # timed-out probes are killed, not piled up
    finally:
        docker("rm", "-f", "hc3", check=False)


def test_paused_container_probe_fails_without_exec(docker: DockerCLI, busybox: str) -> None:
    docker("run", "-d", "--name", "hc8", "--health-cmd", "true", *FAST,
           "--health-retries", "1", "busybox:dyk", "sleep", "100")
    try:
        _wait_health(docker, "hc8", "healthy")
        docker("pause", "hc8")
        h = _wait_health(docker, "hc8", "unhealthy")
        assert h["Log"][-1]["ExitCode"] == -1 and "is paused" in h["Log"][-1]["Output"]
        docker("unpause", "hc8")
        _wait_health(docker, "hc8", "healthy")
    finally:
        docker("rm", "-f", "hc8", check=False)


def _image_with_healthcheck(workdir: Path) -> Path:
    """A docker-archive of busybox whose config has a HEALTHCHECK."""
    layer = (workdir / "busybox.tar").read_bytes()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Healthcheck": {
            "Test": ["CMD-SHELL", "test -f /tmp/ok"], "Interval": 30_000_000_000,
            "Retries": 1}},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
        "history": [{"created": "2024-01-01T00:00:00Z"}]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["hcimg:1"],
                            "Layers": ["layer/layer.tar"]}]).encode()
    out = workdir / "hcimg.tar"
    with tarfile.open(out, "w") as tar:
        for name, data in ((config_name, config), ("layer/layer.tar", layer),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_image_healthcheck_merged_and_disabled(docker: DockerCLI, busybox: str,
                                               workdir: Path) -> None:
    docker("load", "-i", str(_image_with_healthcheck(workdir)))
    try:
        docker("run", "-d", "--name", "hc4", "--health-interval", "100ms", "hcimg:1",
               "sh", "-c", "touch /tmp/ok; sleep 100")
        hc = json.loads(docker("inspect", "--format", "{{json .Config.Healthcheck}}",
                               "hc4").stdout)
        assert hc["Test"] == ["CMD-SHELL", "test -f /tmp/ok"]  # from the image
        assert hc["Interval"] == 100_000_000 and hc["Retries"] == 1  # field by field
        _wait_health(docker, "hc4", "healthy")
        docker("run", "-d", "--name", "hc5", "--no-healthcheck", "hcimg:1", "sleep", "100")
        state = json.loads(docker("inspect", "--format", "{{json .State}}", "hc5").stdout)
        assert "Health" not in state
        assert not _ps_status(docker, "hc5").endswith(")")
        names = docker("ps", "--filter", "health=none", "--format", "{{.Names}}").stdout
        assert "hc5" in names.split() and "hc4" not in names.split()
        r = docker("run", "--rm", "--health-interval", "100us", "hcimg:1", "true", check=False)
        assert r.returncode == 125 and "Interval in Healthcheck cannot be less than 1ms" \
            in r.stderr
    finally:
        docker("rm", "-f", "hc4", "hc5", check=False)
        docker("rmi", "hcimg:1", check=False)


def test_sdk_healthcheck_and_events(daemon: Daemon, busybox: str) -> None:
    import docker as sdk

    client = sdk.DockerClient(base_url=f"unix://{daemon.sock}")
    since = time.time()
    c = client.containers.run("busybox:dyk", ["sleep", "100"], name="hc6", detach=True,
                              healthcheck={"test": ["CMD", "true"], "interval": 100_000_000,
                                           "retries": 1})
    try:
        deadline = time.monotonic() + 10
        while (c.attrs["State"].get("Health") or {}).get("Status") != "healthy":
            assert time.monotonic() < deadline
            time.sleep(0.05)
            c.reload()
        assert c.health == "healthy"
        events = client.events(since=since, until=time.time(), decode=True,
                               filters={"container": "hc6", "event": "health_status"})
        assert [e["Action"] for e in events] == ["health_status: healthy"]
    finally:
        c.remove(force=True)
        client.close()


def test_probes_resume_after_daemon_restart(tmp_path: Path, busybox: str,
                                            workdir: Path) -> None:
    """With live-restore the container outlives the daemon; the next daemon probes it."""
    root = tmp_path
    d = Daemon(root, "--live-restore")
    config = root / "cfg"
    config.mkdir()
    try:
        cli = DockerCLI(d, config)
        cli("import", "-c", 'CMD ["sh"]', str(workdir / "busybox.tar"), "busybox:dyk")
        cli("run", "-d", "--name", "hc7", "--health-cmd", "test -f /tmp/ok",
            "--health-interval", "100ms", "--health-retries", "50", "busybox:dyk",
            "sleep", "100")
        _wait_health(cli, "hc7", "starting")
        assert d.stop() == 0
        d = Daemon(root, "--live-restore")
        cli = DockerCLI(d, config)
        assert _health(cli, "hc7")["Status"] == "starting"
        cli("exec", "hc7", "touch", "/tmp/ok")
        _wait_health(cli, "hc7", "healthy")
    finally:
        monitor_pid = _read_pid(root / "exec" / "monitor.pid")
        ids = os.listdir(os.path.join(d.data_root, "containers"))
        DockerCLI(d, config)("rm", "-f", "hc7", check=False)
        if d.proc.poll() is None:
            d.stop()
        d2 = Daemon(root)  # no live-restore: its stop takes the monitor down
        assert d2.stop() == 0
        _check_nothing_left(root, monitor_pid, ids)
