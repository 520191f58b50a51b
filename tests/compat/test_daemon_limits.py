"""What `docker run` flags do inside the container, through our daemon and the official
docker CLI: Docker's security defaults (capabilities, seccomp, masked and read-only
paths), --privileged and the flags that loosen or tighten them, resource limits seen
from the container's own cgroup files, OOMKilled, a pids limit, and restart policies
after the process crashes.

Values are Docker's documented defaults (e.g. the capability mask 0xa80425fb is the 14
default capabilities). One daemon for the module; everything is removed at the end.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from test_daemon_containers import busybox, daemon, docker, workdir  # noqa: F401
from test_daemon_images import DOCKER, DockerCLI

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

DEFAULT_CAPS = 0xA80425FB  # chown dac_override fowner fsetid kill setgid setuid setpcap
#                            net_bind_service net_raw sys_chroot mknod audit_write setfcap
CG = "/sys/fs/cgroup"


def _run(docker: DockerCLI, *args: str, check: bool = True):
    return docker("run", "--rm", *args, check=check)


def _status_field(text: str, field: str) -> str:
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in {text!r}")


def _state(docker: DockerCLI, name: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)


def _wait_for(pred, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# -- security defaults -------------------------------------------------------------------------

def test_default_security(docker: DockerCLI, busybox: str) -> None:
    status = _run(docker, "busybox:dyk", "cat", "/proc/self/status").stdout
    assert int(_status_field(status, "CapEff"), 16) == DEFAULT_CAPS
    assert int(_status_field(status, "CapBnd"), 16) == DEFAULT_CAPS
    assert int(_status_field(status, "CapInh"), 16) == 0
    assert _status_field(status, "Seccomp") == "2"
    assert _status_field(status, "NoNewPrivs") == "0"
    # masked: empty (whichever of Docker's masked /proc files this kernel has);
    # read-only: writes refused
    masked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p)]
    out = _run(docker, "busybox:dyk", "sh", "-c", "; ".join(f"wc -c < {p}" for p in masked)
               ).stdout.split()
    assert out == ["0"] * len(masked)
    r = _run(docker, "busybox:dyk", "sh", "-c", "echo 1 > /proc/sys/kernel/domainname",
             check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert _run(docker, "busybox:dyk", "ls", "/sys/firmware").stdout.strip() == ""
    # seccomp refuses what Docker's profile refuses (unshare of a user namespace as root
    # without CAP_SYS_ADMIN: EPERM)
    r = _run(docker, "busybox:dyk", "unshare", "-U", "true", check=False)
    assert r.returncode != 0


def test_privileged_and_capability_flags(docker: DockerCLI, busybox: str) -> None:
    status = _run(docker, "--privileged", "busybox:dyk", "cat", "/proc/self/status").stdout
    with open("/proc/self/status") as f:  # all the host lets us grant
        host_bounding = int(_status_field(f.read(), "CapBnd"), 16)
    assert int(_status_field(status, "CapEff"), 16) == host_bounding
    assert _status_field(status, "Seccomp") == "0"
    status = _run(docker, "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--security-opt",
                  "no-new-privileges", "busybox:dyk", "cat", "/proc/self/status").stdout
    assert int(_status_field(status, "CapEff"), 16) == 1 << 12  # cap_net_admin
    assert _status_field(status, "NoNewPrivs") == "1"
    status = _run(docker, "--security-opt", "seccomp=unconfined", "busybox:dyk", "cat",
                  "/proc/self/status").stdout
    assert _status_field(status, "Seccomp") == "0"
    r = _run(docker, "--cap-add", "NO_SUCH_CAP", "busybox:dyk", "true", check=False)
    assert r.returncode == 125 and "NO_SUCH_CAP" in r.stderr


def test_read_only_tmpfs_user_and_process_settings(docker: DockerCLI, busybox: str) -> None:
    r = _run(docker, "--read-only", "busybox:dyk", "touch", "/x", check=False)
    assert r.returncode == 1 and "Read-only file system" in r.stderr
    out = _run(docker, "--read-only", "--tmpfs", "/run:size=1m", "busybox:dyk", "sh", "-c",
               "touch /run/ok && df -k /run | tail -1").stdout.split()
    assert out[1] == "1024"
    out = _run(docker, "-u", "1000:1000", "-w", "/tmp", "--hostname", "box1",
               "--oom-score-adj", "100", "--ulimit", "nofile=100:200", "busybox:dyk", "sh",
               "-c", "id -u; id -g; pwd; hostname; cat /proc/self/oom_score_adj; "
               "ulimit -n; ulimit -Hn").stdout.split()
    assert out == ["1000", "1000", "/tmp", "box1", "100", "100", "200"]
    out = _run(docker, "-w", "/srv/work/here", "busybox:dyk", "sh", "-c",
               "pwd; stat -c '%a %u' .").stdout.split()
    assert out == ["/srv/work/here", "755", "0"]  # docker creates a missing WorkingDir
    out = _run(docker, "--shm-size", "32m", "busybox:dyk", "sh", "-c",
               "df -k /dev/shm | tail -1").stdout.split()
    assert out[1] == str(32 * 1024)
    out = _run(docker, "--sysctl", "kernel.shm_rmid_forced=1", "busybox:dyk", "cat",
               "/proc/sys/kernel/shm_rmid_forced").stdout.strip()
    assert out == "1"
    out = _run(docker, "--device", "/dev/null:/dev/mynull", "busybox:dyk", "sh", "-c",
               "echo x > /dev/mynull && ls -l /dev/mynull").stdout
    assert out.startswith("c")


# -- resources ---------------------------------------------------------------------------------

def test_resource_limits_in_the_cgroup(docker: DockerCLI, busybox: str) -> None:
    files = [f"{CG}/memory/memory.limit_in_bytes", f"{CG}/memory/memory.memsw.limit_in_bytes",
             f"{CG}/cpu/cpu.cfs_quota_us", f"{CG}/cpu/cpu.shares", f"{CG}/cpuset/cpuset.cpus"]
    if not all(os.path.exists(f) for f in files):  # the host's own hierarchy
        pytest.skip("needs the cgroup v1 controllers memory (with swap), cpu, cpuset")
    out = _run(docker, "-m", "64m", "--memory-swap", "96m", "--cpus", "0.5",
               "--cpu-shares", "512", "--cpuset-cpus", "0", "busybox:dyk", "cat", *files
               ).stdout.split()
    assert out == [str(64 << 20), str(96 << 20), "50000", "512", "0"]
    r = _run(docker, "-m", "1k", "busybox:dyk", "true", check=False)
    assert r.returncode == 125 and "Minimum memory limit allowed is 6MB" in r.stderr


def test_pids_limit_stops_forks(docker: DockerCLI, busybox: str) -> None:
    r = _run(docker, "--pids-limit", "4", "busybox:dyk", "sh", "-c",
             "for i in 1 2 3 4 5 6 7 8; do sleep 3 & done; wait", check=False)
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr


def test_block_io_device_limits_in_the_cgroup(docker: DockerCLI, busybox: str,
                                              tmp_path) -> None:
    """--device-*-bps/iops and --blkio-weight-device on a loop device made for the test,
    read back from the container's cgroup on the host (v1 blkio.*, v2 io.max)."""
    from pathlib import Path

    from test_compose_resources import container_cgroup, loop_device

    with loop_device(tmp_path) as dev:
        st = os.stat(dev)
        devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        try:
            docker("run", "-d", "--name", "blk1", "--device-read-bps", f"{dev}:12mb",
                   "--device-write-bps", f"{dev}:1mb", "--device-read-iops", f"{dev}:100",
                   "--device-write-iops", f"{dev}:30", "--blkio-weight-device", f"{dev}:400",
                   "busybox:dyk", "sleep", "60")
            info = json.loads(docker("inspect", "blk1").stdout)[0]
            assert info["HostConfig"]["BlkioDeviceReadBps"] == [{"Path": dev, "Rate": 12 << 20}]
            cg = container_cgroup(info["State"]["Pid"], "blkio")
            if "/blkio/" in cg:
                for name, rate in (("read_bps_device", 12 << 20), ("write_bps_device", 1 << 20),
                                   ("read_iops_device", 100), ("write_iops_device", 30)):
                    assert Path(f"{cg}/blkio.throttle.{name}").read_text().split() == \
                        [devno, str(rate)]
                weight = "blkio.weight" if os.path.exists(f"{cg}/blkio.weight") \
                    else "blkio.bfq.weight"
                assert f"{devno} 400" in Path(f"{cg}/{weight}_device").read_text()
            else:
                assert f"{devno} rbps={12 << 20} wbps={1 << 20} riops=100 wiops=30" in \
                    Path(f"{cg}/io.max").read_text()
            # a device gone by the next start fails it, as dockerd's stat does
            r = docker("run", "--rm", "--device-read-bps", "/dev/dyk-none:1mb", "busybox:dyk",
                       "true", check=False)
            assert r.returncode != 0  # the CLI's own code for the message (127)
            assert "stat /dev/dyk-none: no such file or directory" in r.stderr
        finally:
            docker("rm", "-f", "blk1", check=False)


def test_oom_killed(docker: DockerCLI, busybox: str) -> None:
    name = "oom1"
    try:
        r = docker("run", "--name", name, "-m", "8m", "--memory-swap", "8m", "busybox:dyk",
                   "sh", "-c", "tail /dev/zero", check=False, timeout=60)
        assert r.returncode == 137
        state = _state(docker, name)
        assert state["OOMKilled"] is True and state["ExitCode"] == 137
    finally:
        docker("rm", "-f", name, check=False)


# -- restart policies --------------------------------------------------------------------------

def test_restart_on_failure_after_crashes(docker: DockerCLI, busybox: str) -> None:
    try:
        docker("run", "-d", "--name", "crashy", "--restart", "on-failure:2", "busybox:dyk",
               "sh", "-c", "exit 3")
        _wait_for(lambda: not _state(docker, "crashy")["Running"]
                  and docker("inspect", "-f", "{{.RestartCount}}", "crashy").stdout.strip()
                  == "2")
        time.sleep(0.5)  # no third restart
        assert docker("inspect", "-f", "{{.RestartCount}}", "crashy").stdout.strip() == "2"
        assert _state(docker, "crashy")["ExitCode"] == 3

        docker("run", "-d", "--name", "always", "--restart", "always", "busybox:dyk", "sh",
               "-c", "sleep 0.2; exit 1")
        _wait_for(lambda: int(docker("inspect", "-f", "{{.RestartCount}}", "always"
                                     ).stdout) >= 2)
        docker("stop", "-t", "1", "always")
        count = docker("inspect", "-f", "{{.RestartCount}}", "always").stdout
        time.sleep(0.8)
        assert not _state(docker, "always")["Running"]
        assert docker("inspect", "-f", "{{.RestartCount}}", "always").stdout == count

        docker("run", "-d", "--name", "clean", "--restart", "on-failure", "busybox:dyk",
               "true")
        _wait_for(lambda: _state(docker, "clean")["Status"] == "exited")
        time.sleep(0.3)
        assert docker("inspect", "-f", "{{.RestartCount}}", "clean").stdout.strip() == "0"
    finally:
        docker("rm", "-f", "crashy", "always", "clean", check=False)


# -- the same through the docker SDK ---------------------------------------------------------

def test_docker_sdk_limits_restart_stats_logs(daemon, busybox: str) -> None:
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=f"unix://{daemon.sock}", version="auto")
    made = []
    try:
        oom = client.containers.run("busybox:dyk", ["sh", "-c", "tail /dev/zero"],
                                    mem_limit="8m", memswap_limit="8m", detach=True)
        made.append(oom)
        assert oom.wait(timeout=60)["StatusCode"] == 137
        oom.reload()
        assert oom.attrs["State"]["OOMKilled"] is True

        forks = "for i in 1 2 3 4 5 6; do sleep 2 & done; wait"
        with pytest.raises(docker_sdk.errors.ContainerError) as failed:
            client.containers.run("busybox:dyk", ["sh", "-c", forks], pids_limit=3,
                                  remove=True)
        assert b"can't fork" in failed.value.stderr

        crashy = client.containers.run("busybox:dyk", ["sh", "-c", "exit 2"], detach=True,
                                       restart_policy={"Name": "on-failure",
                                                       "MaximumRetryCount": 1})
        made.append(crashy)

        def restarted_once() -> bool:
            crashy.reload()
            return crashy.attrs["RestartCount"] == 1 and crashy.status == "exited"
        _wait_for(restarted_once)
        assert crashy.attrs["State"]["ExitCode"] == 2

        ticks = "while true; do echo tick; sleep 0.1; done"
        looper = client.containers.run("busybox:dyk", ["sh", "-c", ticks], detach=True)
        made.append(looper)
        stream = looper.logs(stream=True, follow=True)
        assert next(iter(stream)).startswith(b"tick")
        stream.close()
        stats = looper.stats(stream=False)
        assert stats["pids_stats"]["current"] >= 1
        assert stats["memory_stats"]["usage"] > 0
        assert "cpu_usage" in stats["cpu_stats"]
        assert set(stats["networks"]) == {"eth0"}  # the default bridge; lo left out
        assert stats["networks"]["eth0"]["rx_bytes"] >= 0
        looper.stop(timeout=1)
        assert looper.wait()["StatusCode"] in (137, 143)
    finally:
        for c in made:
            c.remove(force=True)
        client.close()


def test_daemon_default_ulimits(tmp_path, rootfs_tar_for_limits) -> None:
    """daemon.json default-ulimits: containers get them unless they set that ulimit."""
    from test_daemon_images import Daemon

    d = Daemon(tmp_path, "--exec-root", str(tmp_path / "exec"), settings={
        "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1000, "Hard": 2000}}})
    try:
        config = tmp_path / "cli"
        config.mkdir()
        cli = DockerCLI(d, config)
        cli("import", "-c", 'CMD ["sh"]', str(rootfs_tar_for_limits), "busybox:dyk")
        out = cli("run", "--rm", "busybox:dyk", "sh", "-c", "ulimit -n; ulimit -Hn").stdout
        assert out.split() == ["1000", "2000"]
        out = cli("run", "--rm", "--ulimit", "nofile=100:200", "busybox:dyk", "sh", "-c",
                  "ulimit -n; ulimit -Hn").stdout
        assert out.split() == ["100", "200"]
    finally:
        assert d.stop() == 0, d.logs()
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(RuntimeError, match="default-ulimits.nofile"):
        Daemon(bad, "--exec-root", str(bad / "exec"), settings={
            "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 5, "Hard": 1}}})


@pytest.fixture
def rootfs_tar_for_limits(tmp_path_factory: pytest.TempPathFactory):
    import tarfile

    from dockyard.devtools.busybox import make_rootfs

    work = tmp_path_factory.mktemp("limits-rootfs")
    root = make_rootfs(str(work / "rootfs"))
    out = work / "busybox.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    return out
