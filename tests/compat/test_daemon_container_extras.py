"""update, diff, export, commit, port, ps -s, system df/prune and /info's counts of
`dockyard daemon`, driven by the official docker CLI, our `dockyard` CLI and the docker
SDK: limits checked from inside the container's cgroup, restart policy updates, the
changes of a container, its exported tar, a committed image that runs, and Docker's
errors for bad input.

One daemon for the module (private data root, exec root and socket); at the end it is
stopped and nothing may be left (no monitor, process, mount or cgroup).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# the same module-scoped daemon set-up as the container tests (a daemon of its own here)
from test_daemon_containers import busybox, daemon, docker, workdir  # noqa: F401
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

CG = "/sys/fs/cgroup"


@pytest.fixture(scope="module")
def dockyard(daemon: Daemon):
    """Our CLI against the module's daemon."""
    def run(*args: str, check: bool = True, input: bytes | None = None,
            ) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H",
                            f"unix://{daemon.sock}", *args], capture_output=True,
                           input=input, timeout=60, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} -> {r.returncode}\n"
                                 f"{r.stdout!r}\n{r.stderr!r}")
        return r
    return run


@pytest.fixture(scope="module")
def sdk(daemon: Daemon) -> Iterator:
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=f"unix://{daemon.sock}", version="auto")
    yield client
    client.close()


@pytest.fixture
def box(docker: DockerCLI, busybox: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A running container of its own per test."""
    name = "x" + request.node.name.removeprefix("test_")[:40]
    docker("run", "-d", "--name", name, "busybox:dyk", "sleep", "1000")
    yield name
    docker("rm", "-f", name, check=False)


def _inside(docker: DockerCLI, name: str, *files: str) -> list[str]:
    return docker("exec", name, "cat", *files).stdout.split()


def _host_config(docker: DockerCLI, name: str) -> dict:
    return json.loads(docker("inspect", "-f", "{{json .HostConfig}}", name).stdout)


# -- update ------------------------------------------------------------------------------

def test_update_limits_of_a_running_container(docker: DockerCLI, box: str) -> None:
    r = docker("update", "-m", "64m", "--memory-swap", "128m", "--pids-limit", "30",
               "--cpus", "0.5", "--cpu-shares", "512", box)
    assert r.stdout.strip() == box
    assert _inside(docker, box, f"{CG}/memory/memory.limit_in_bytes",
                   f"{CG}/memory/memory.memsw.limit_in_bytes", f"{CG}/pids/pids.max",
                   f"{CG}/cpu/cpu.cfs_quota_us", f"{CG}/cpu/cpu.cfs_period_us",
                   f"{CG}/cpu/cpu.shares") == [str(64 << 20), str(128 << 20), "30", "50000",
                                                "100000", "512"]
    hc = _host_config(docker, box)
    assert (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"], hc["NanoCpus"],
            hc["CpuShares"]) == (64 << 20, 128 << 20, 30, 500_000_000, 512)
    # raising memory above the swap limit needs the swap limit too (docker's rule)
    r = docker("update", "-m", "256m", box, check=False)
    assert r.returncode == 1 and "update the memoryswap at the same time" in r.stderr
    docker("update", "-m", "256m", "--memory-swap", "-1", "--pids-limit", "-1",
           "--cpuset-cpus", "0", box)
    assert _inside(docker, box, f"{CG}/memory/memory.limit_in_bytes",
                   f"{CG}/pids/pids.max", f"{CG}/cpuset/cpuset.cpus") == [str(256 << 20),
                                                                         "max", "0"]


def test_update_with_our_cli_and_restart_policy(dockyard, docker: DockerCLI,
                                                box: str) -> None:
    r = dockyard("update", "--pids-limit", "12", "--restart", "on-failure:3", box)
    assert r.stdout.decode().strip() == box
    assert _inside(docker, box, f"{CG}/pids/pids.max") == ["12"]
    hc = _host_config(docker, box)
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert hc["PidsLimit"] == 12
    dockyard("container", "update", "--restart", "always", box)
    assert _host_config(docker, box)["RestartPolicy"]["Name"] == "always"
    r = dockyard("update", box, check=False)
    assert r.returncode == 1 and b"You must provide one or more flags" in r.stderr


def test_update_stopped_container_applies_at_start(docker: DockerCLI,
                                                   busybox: str) -> None:
    docker("create", "--name", "upd-created", "busybox:dyk", "sleep", "1000")
    try:
        docker("update", "--pids-limit", "25", "-m", "32m", "upd-created")
        docker("start", "upd-created")
        assert _inside(docker, "upd-created", f"{CG}/pids/pids.max",
                       f"{CG}/memory/memory.limit_in_bytes") == ["25", str(32 << 20)]
    finally:
        docker("rm", "-f", "upd-created", check=False)


def test_update_bad_inputs(docker: DockerCLI, dockyard, daemon: Daemon,
                           sdk, box: str) -> None:
    r = docker("update", "-m", "1m", box, check=False)
    assert r.returncode == 1 and "Minimum memory limit allowed is 6MB" in r.stderr
    r = dockyard("update", "-m", "20m", "--memory-swap", "10m", box, check=False)
    assert r.returncode == 1
    assert b"Minimum memoryswap limit should be larger than memory limit" in r.stderr
    r = docker("update", "--restart", "bogus", box, check=False)
    assert r.returncode == 1 and "invalid restart policy" in r.stderr
    r = docker("update", "--pids-limit", "5", "no-such-box", check=False)
    assert r.returncode == 1 and "No such container: no-such-box" in r.stderr
    docker_sdk = pytest.importorskip("docker")
    with pytest.raises(docker_sdk.errors.APIError) as e:
        sdk.containers.get(box).update(mem_limit=1024)
    assert e.value.status_code == 400
    status, _, body = http_request(daemon.sock, "POST", f"/containers/{box}/update",
                                   b"{not json", {"Content-Type": "application/json"})
    assert status == 400, body
    status, _, body = http_request(daemon.sock, "POST", f"/containers/{box}/update",
                                   b'{"Memory": "lots"}', {"Content-Type": "application/json"})
    assert status == 400 and b"Memory" in body
    # nothing was applied by the failed updates
    assert _host_config(docker, box)["Memory"] == 0


def test_update_restart_policy_with_autoremove_refused(docker: DockerCLI,
                                                       busybox: str) -> None:
    docker("run", "-d", "--rm", "--name", "upd-rm", "busybox:dyk", "sleep", "1000")
    try:
        r = docker("update", "--restart", "always", "upd-rm", check=False)
        assert r.returncode == 1
        assert "Restart policy cannot be updated because AutoRemove is enabled" in r.stderr
    finally:
        docker("rm", "-f", "upd-rm", check=False)


def test_update_with_sdk(sdk, docker: DockerCLI, box: str) -> None:
    assert sdk.containers.get(box).update(cpu_shares=256, mem_limit="48m",
                                          memswap_limit="96m") == {"Warnings": []}
    assert _inside(docker, box, f"{CG}/cpu/cpu.shares",
                   f"{CG}/memory/memory.limit_in_bytes") == ["256", str(48 << 20)]


# -- diff ------------------------------------------------------------------------------

def _touch_things(docker: DockerCLI, name: str) -> None:
    docker("exec", name, "sh", "-c", "touch /tmp/new; rm /bin/ls; mkdir -p /a/b; "
           "echo hi > /a/b/c")


def test_diff(docker: DockerCLI, dockyard, sdk, box: str) -> None:
    assert docker("diff", box).stdout == ""  # the runtime's mount points are no change
    _touch_things(docker, box)
    expected = ["A /a", "A /a/b", "A /a/b/c", "C /bin", "D /bin/ls", "C /tmp", "A /tmp/new"]
    assert sorted(docker("diff", box).stdout.splitlines()) == sorted(expected)
    assert sorted(dockyard("diff", box).stdout.decode().splitlines()) == sorted(expected)
    changes = {(c["Path"], c["Kind"]) for c in sdk.containers.get(box).diff()}
    assert {("/bin/ls", 2), ("/a/b/c", 1), ("/tmp", 0)} <= changes
    r = docker("diff", "no-such-box", check=False)
    assert r.returncode == 1 and "No such container: no-such-box" in r.stderr


# -- export ----------------------------------------------------------------------------

def _names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.rstrip("/") for m in tar}


def test_export(docker: DockerCLI, dockyard, sdk, box: str, workdir: Path) -> None:
    _touch_things(docker, box)
    out = workdir / "export.tar"
    docker("export", "-o", str(out), box)
    names = _names(out.read_bytes())
    assert {"a/b/c", "tmp/new", "bin/sh", "etc/passwd"} <= names
    assert "bin/ls" not in names
    with tarfile.open(out) as tar:
        assert tar.extractfile("a/b/c").read() == b"hi\n"
    out.unlink()
    r = dockyard("export", box)  # stdout is a pipe here, not a terminal
    assert "a/b/c" in _names(r.stdout)
    ours = workdir / "ours.tar"
    dockyard("container", "export", "-o", str(ours), box)
    assert "tmp/new" in _names(ours.read_bytes())
    ours.unlink()
    docker("stop", "-t", "1", box)  # a stopped container exports too
    assert "a/b/c" in _names(b"".join(sdk.containers.get(box).export()))
    r = docker("export", "no-such-box", check=False)
    assert r.returncode == 1 and "No such container" in r.stderr


# -- commit ----------------------------------------------------------------------------

def test_commit_and_run(docker: DockerCLI, box: str) -> None:
    _touch_things(docker, box)
    image_id = docker("commit", "-c", 'CMD ["echo","hi"]', "-c", "ENV COMMITTED=yes",
                      "-m", "a message", "-a", "someone", box, "committed:v1").stdout.strip()
    assert image_id.startswith("sha256:")
    try:
        assert docker("run", "--rm", "committed:v1").stdout == "hi\n"
        r = docker("run", "--rm", "committed:v1", "sh", "-c",
                   "cat /a/b/c; echo $COMMITTED; test -e /bin/ls || echo gone")
        assert r.stdout == "hi\nyes\ngone\n"
        doc = json.loads(docker("image", "inspect", "committed:v1").stdout)[0]
        assert doc["Id"] == image_id and doc["Author"] == "someone"
        assert doc["Comment"] == "a message" and doc["Config"]["Cmd"] == ["echo", "hi"]
        assert len(doc["RootFS"]["Layers"]) == 2
        history = docker("history", "--format", "{{.Comment}}", "committed:v1").stdout
        assert history.splitlines()[0] == "a message"
        # the container was paused for the commit and runs again
        assert docker("inspect", "-f", "{{.State.Status}}", box).stdout.strip() == "running"
    finally:
        docker("rmi", "committed:v1", check=False)


def test_commit_with_our_cli_and_sdk(dockyard, sdk, docker: DockerCLI,
                                     box: str) -> None:
    docker("exec", box, "sh", "-c", "echo one > /one")
    r = dockyard("commit", "--pause=false", "-c", "CMD cat /one", box, "ours:one")
    try:
        assert r.stdout.decode().strip().startswith("sha256:")
        assert docker("run", "--rm", "ours:one").stdout == "one\n"
        image = sdk.containers.get(box).commit("sdk-commit", "t1",
                                               changes=['CMD ["cat", "/one"]'])
        assert sdk.containers.run("sdk-commit:t1", remove=True) == b"one\n"
        assert "sdk-commit:t1" in image.tags
    finally:
        docker("rmi", "ours:one", "sdk-commit:t1", check=False)


def test_commit_errors(docker: DockerCLI, dockyard, daemon: Daemon, sdk,
                       box: str) -> None:
    r = docker("commit", "no-such-box", "x:y", check=False)
    assert r.returncode == 1 and "No such container: no-such-box" in r.stderr
    r = dockyard("commit", "no-such-box", check=False)
    assert r.returncode == 1 and b"No such container: no-such-box" in r.stderr
    status, _, _ = http_request(daemon.sock, "POST", "/commit?container=no-such-box")
    assert status == 404
    status, _, _ = http_request(daemon.sock, "POST", "/commit")
    assert status == 400
    r = docker("commit", "-c", "FROM busybox", box, check=False)
    assert r.returncode == 1 and "not a valid change command" in r.stderr
    docker_sdk = pytest.importorskip("docker")
    with pytest.raises(docker_sdk.errors.NotFound):
        sdk.api.commit("no-such-box")


# -- port, ps -s, df, info, prune ---------------------------------------------------------

def test_port_without_published_ports(docker: DockerCLI, dockyard, box: str) -> None:
    assert docker("port", box).stdout == ""
    assert dockyard("port", box).stdout == b""
    r = docker("port", box, "80/tcp", check=False)
    ours = dockyard("port", box, "80/tcp", check=False)
    assert r.returncode == ours.returncode == 1
    assert ours.stderr.decode() == r.stderr == f"Error: No public port '80/tcp' published " \
                                               f"for {box}\n"


def test_ps_size_and_system_df(docker: DockerCLI, dockyard, daemon: Daemon, sdk,
                               box: str) -> None:
    docker("exec", box, "sh", "-c", "head -c 5000 /dev/zero > /blob")
    out = docker("ps", "-s", "--filter", f"name={box}").stdout.splitlines()
    assert out[0].split()[-1] == "SIZE" and "(virtual" in out[1]
    assert out[1].split()[-3] == "5kB"
    ours = dockyard("ps", "-s", "--filter", f"name={box}").stdout.decode().splitlines()
    assert ours[1].endswith(out[1][out[1].index("5kB"):])
    _, _, body = http_request(daemon.sock, "GET", "/containers/json?size=1")
    row = next(c for c in json.loads(body) if c["Names"] == [f"/{box}"])
    assert row["SizeRw"] == 5000 and row["SizeRootFs"] > 5000
    df = docker("system", "df").stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in df[1:]] == ["Images", "Containers", "Local", "Build"]
    assert dockyard("system", "df").stdout.decode().splitlines()[0] == df[0]
    fmt = "table {{.Type}}\t{{.TotalCount}}"
    assert dockyard("system", "df", "--format", fmt).stdout.decode() \
        == docker("system", "df", "--format", fmt).stdout
    verbose = docker("system", "df", "-v").stdout
    assert "Images space usage:" in verbose and box in verbose
    assert "Containers space usage:" in dockyard("system", "df", "-v").stdout.decode()
    usage = sdk.df()
    assert usage["LayersSize"] > 0 and usage["Volumes"] == [] and usage["BuildCache"] == []
    image = next(i for i in usage["Images"] if "busybox:dyk" in i["RepoTags"])
    assert image["Containers"] >= 1
    assert any(c["SizeRw"] == 5000 for c in usage["Containers"])


def test_info_counts(docker: DockerCLI, sdk, box: str) -> None:
    docker("create", "--name", "info-created", "busybox:dyk", "true")
    docker("run", "-d", "--name", "info-paused", "busybox:dyk", "sleep", "1000")
    docker("pause", "info-paused")
    try:
        info = sdk.info()
        states = [c.status for c in sdk.containers.list(all=True)]
        assert info["Containers"] == len(states)
        assert info["ContainersPaused"] == states.count("paused") >= 1
        assert info["ContainersRunning"] == states.count("running") >= 1
        assert info["ContainersStopped"] == len(states) - states.count("paused") \
            - states.count("running")
        assert f"Running: {info['ContainersRunning']}" in docker("info").stdout
    finally:
        docker("rm", "-f", "info-created", "info-paused", check=False)


def test_system_prune(docker: DockerCLI, dockyard, box: str) -> None:
    docker("run", "--name", "prune-stopped", "busybox:dyk", "true")
    dangling = docker("commit", box).stdout.strip()  # no name: a dangling image
    r = docker("system", "prune", "-f")
    assert "prune-stopped" not in docker("ps", "-a", "--format", "{{.Names}}").stdout
    assert "Deleted Containers:" in r.stdout and "Total reclaimed space:" in r.stdout
    assert f"deleted: {dangling}" in r.stdout
    assert docker("inspect", "-f", "{{.State.Running}}", box).stdout.strip() == "true"
    assert "busybox:dyk" in docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    docker("run", "--name", "prune-ours", "busybox:dyk", "true")
    r = dockyard("system", "prune", "-f")
    assert b"Deleted Containers:" in r.stdout and b"Total reclaimed space:" in r.stdout
    assert "prune-ours" not in docker("ps", "-a", "--format", "{{.Names}}").stdout
    r = dockyard("system", "prune", input=b"n\n")
    assert b"WARNING! This will remove:" in r.stdout


def test_image_removal_keeps_container_snapshots(docker: DockerCLI, box: str) -> None:
    """Image gc removes unused layers only: never a container's rootfs snapshot, nor the
    layers under it (even when its image was force-removed)."""
    docker("commit", box, "throwaway:1")
    docker("rmi", "throwaway:1")
    assert docker("diff", box, check=False).returncode == 0
    docker("commit", box, "base2:1")
    docker("run", "--name", "on-base2", "base2:1", "true")
    try:
        docker("rmi", "-f", "base2:1")
        docker("image", "prune", "-af")
        assert docker("diff", "on-base2", check=False).returncode == 0
        assert docker("start", "-a", "on-base2", check=False).returncode == 0
    finally:
        docker("rm", "-f", "on-base2", check=False)
