"""The container engine with real containers: a busybox image, the monitor process,
dockyard-runtime, cgroups and overlay mounts (needs root).

One engine (and one monitor) per module: every test cleans up its containers;
the module's finalizer removes whatever is left, stops the monitor and checks
that no mount, cgroup or process of ours survives.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.devtools.busybox import make_rootfs
from dockyard.engine.engine import Engine, NotModified
from dockyard.errors import Conflict, NotFound
from dockyard.image.service import ImageService

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

CGROUP_FS = "/sys/fs/cgroup"


def cgroup_dirs(cid: str) -> list[str]:
    roots = [CGROUP_FS] if os.path.exists(f"{CGROUP_FS}/cgroup.controllers") else [
        os.path.join(CGROUP_FS, d) for d in os.listdir(CGROUP_FS)]
    return [p for p in (os.path.join(r, "dockyard", cid) for r in roots) if os.path.isdir(p)]


def mounts_under(path: str) -> list[str]:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except OSError:
        return False


class Env:
    def __init__(self, base: Path):
        self.base = base
        self.data = str(base / "data")
        self.exec = str(base / "exec")
        self.svc = ImageService(self.data)
        rootfs = make_rootfs(str(base / "rootfs"))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            tf.add(rootfs, arcname=".")
        buf.seek(0)
        self.image = self.svc.import_(buf, reference="busybox:latest",
                                      changes={"Cmd": ["sh"]})
        self.engine = Engine(self.data, self.exec, self.svc)

    def run(self, cmd: list[str], host_config: dict | None = None, name: str | None = None,
            **config) -> str:
        cid = self.engine.create({"Image": "busybox", "Cmd": cmd, **config}, host_config, name)
        self.engine.start(cid)
        return cid

    def log(self, cid: str) -> list[dict]:
        path = Path(self.data, "containers", cid, f"{cid}-json.log")
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("engine"))
    yield e
    ids = [c["Id"] for c in e.engine.list(all=True)]
    for cid in ids:
        try:
            e.engine.remove(cid, force=True)
        except NotFound:
            pass
    monitor_pid = e.engine.monitor.pid()
    e.engine.monitor.shutdown()
    e.engine.close()
    e.svc.close()
    assert not alive(monitor_pid)
    assert not mounts_under(e.data)
    assert not [d for cid in ids for d in cgroup_dirs(cid)]
    for root in [CGROUP_FS, *(os.path.join(CGROUP_FS, d) for d in os.listdir(CGROUP_FS))]:
        try:
            os.rmdir(os.path.join(root, "dockyard"))  # the parent, once empty
        except OSError:
            pass


@pytest.fixture
def engine(env: Env) -> Iterator[Engine]:
    yield env.engine
    for c in env.engine.list(all=True):
        env.engine.remove(c["Id"], force=True)


def test_echo_exit_zero_and_json_log(env: Env, engine: Engine) -> None:
    cid = env.run(["echo", "hi"])
    assert engine.wait(cid) == 0
    records = env.log(cid)
    assert [(r["log"], r["stream"]) for r in records] == [("hi\n", "stdout")]
    assert records[0]["time"].endswith("Z")
    state = engine.inspect(cid)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0 and not state["Running"]
    assert [(s, line) for s, line, _ in engine.logs(cid)] == [("stdout", "hi\n")]


def test_exit_code_and_stderr(env: Env, engine: Engine) -> None:
    cid = env.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert engine.wait(cid) == 3
    assert [(r["log"], r["stream"]) for r in env.log(cid)] == [("oops\n", "stderr")]
    # waiting for an already exited container answers at once
    t = time.monotonic()
    assert engine.wait(cid) == 3
    assert time.monotonic() - t < 0.5


def test_stop_falls_back_to_sigkill(env: Env, engine: Engine) -> None:
    cid = env.run(["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    time.sleep(0.3)
    t = time.monotonic()
    engine.stop(cid, timeout=1)
    took = time.monotonic() - t
    assert 0.9 < took < 10
    assert engine.inspect(cid)["State"]["ExitCode"] == 137
    with pytest.raises(NotModified):
        engine.stop(cid)


def test_stop_with_sigterm(env: Env, engine: Engine) -> None:
    # as pid 1, `sleep` would ignore SIGTERM (docker stop then takes the timeout too)
    cid = env.run(["sh", "-c", "trap 'exit 143' TERM; while true; do sleep 0.1; done"])
    time.sleep(0.3)
    t = time.monotonic()
    engine.stop(cid, timeout=5)
    assert time.monotonic() - t < 3
    assert engine.inspect(cid)["State"]["ExitCode"] == 143


def test_kill(env: Env, engine: Engine) -> None:
    cid = env.run(["sleep", "100"])
    engine.kill(cid, "SIGKILL")
    assert engine.wait(cid) == 137
    with pytest.raises(Conflict, match="is not running"):
        engine.kill(cid)


def test_remove_refuses_running_force_cleans_up(env: Env, engine: Engine) -> None:
    cid = env.run(["sleep", "100"])
    pid = engine.inspect(cid)["State"]["Pid"]
    assert alive(pid) and cgroup_dirs(cid)
    with pytest.raises(Conflict, match="You cannot remove a running container"):
        engine.remove(cid)
    engine.remove(cid, force=True)
    with pytest.raises(NotFound, match=f"No such container: {cid}"):
        engine.inspect(cid)
    assert not alive(pid)
    assert not cgroup_dirs(cid)
    assert not mounts_under(os.path.join(env.data, "containers", cid))
    assert not os.path.exists(os.path.join(env.data, "containers", cid))


def test_name_conflict_and_lookup(env: Env, engine: Engine) -> None:
    cid = engine.create({"Image": "busybox", "Cmd": ["true"]}, {}, "web")
    with pytest.raises(Conflict) as err:
        engine.create({"Image": "busybox", "Cmd": ["true"]}, {}, "web")
    assert str(err.value) == (
        f'Conflict. The container name "/web" is already in use by container "{cid}". You '
        "have to remove (or rename) that container to be able to reuse that name.")
    assert engine.inspect("web")["Id"] == cid
    assert engine.inspect(cid[:10])["Name"] == "/web"
    engine.rename("web", "web2")
    assert engine.inspect("web2")["Id"] == cid
    with pytest.raises(NotFound, match="No such image"):
        engine.create({"Image": "nosuchimage:1"}, {}, "x")


def test_restart_on_failure_twice_then_stops(env: Env, engine: Engine) -> None:
    cid = env.run(["sh", "-c", "echo run; exit 1"],
                  {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = engine.inspect(cid)
        if st["State"]["Status"] == "exited" and st["RestartCount"] == 2:
            break
        time.sleep(0.05)
    time.sleep(1.0)  # and no third run
    st = engine.inspect(cid)
    assert st["RestartCount"] == 2 and st["State"]["Status"] == "exited"
    assert st["State"]["ExitCode"] == 1
    assert [r["log"] for r in env.log(cid)] == ["run\n"] * 3


def test_restart_always(env: Env, engine: Engine) -> None:
    cid = env.run(["true"], {"RestartPolicy": {"Name": "always"}})
    deadline = time.monotonic() + 20
    while engine.inspect(cid)["RestartCount"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.inspect(cid)["RestartCount"] >= 3
    engine.stop(cid, timeout=1)
    count = engine.inspect(cid)["RestartCount"]
    time.sleep(1.0)
    st = engine.inspect(cid)
    assert st["State"]["Status"] == "exited" and st["RestartCount"] == count


def test_oom_killed(env: Env, engine: Engine) -> None:
    hog = "x=a; while true; do x=$x$x$x$x; done"
    cid = env.run(["sh", "-c", hog], {"Memory": 16 << 20, "MemorySwap": 16 << 20})
    assert engine.wait(cid, timeout=60) == 137
    assert engine.inspect(cid)["State"]["OOMKilled"] is True


def test_pids_limit(env: Env, engine: Engine) -> None:
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; wait; echo done"
    cid = env.run(["sh", "-c", script], {"PidsLimit": 5})
    engine.wait(cid, timeout=30)
    text = "".join(r["log"] for r in env.log(cid))
    assert "can't fork" in text or "Resource temporarily unavailable" in text, text


def test_survives_engine_restart_and_is_adopted(env: Env, engine: Engine) -> None:
    cid = env.run(["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"],
                  name="survivor")
    pid = engine.inspect(cid)["State"]["Pid"]
    done = env.run(["sh", "-c", "sleep 0.5; exit 4"])
    env.engine.close()  # the daemon goes away; containers and the monitor stay
    time.sleep(1.0)  # `done` exits while no engine listens
    assert alive(pid)
    env.engine = Engine(env.data, env.exec, env.svc)
    new = env.engine
    st = new.inspect("survivor")["State"]
    assert st["Running"] and st["Pid"] == pid
    assert new.inspect(done)["State"]["ExitCode"] == 4
    assert new.inspect(done)["State"]["Status"] == "exited"
    new.stop("survivor", timeout=5)
    assert new.inspect(cid)["State"]["ExitCode"] == 7
    assert not alive(pid)
    for c in new.list(all=True):
        new.remove(c["Id"], force=True)


def test_logs_tail_since_and_follow(env: Env, engine: Engine) -> None:
    cid = env.run(["sh", "-c", "echo one; echo two; sleep 1.2; echo three"])
    engine.wait(cid, timeout=20)
    lines = [line for _, line, _ in engine.logs(cid)]
    assert lines == ["one\n", "two\n", "three\n"]
    assert [line for _, line, _ in engine.logs(cid, tail=1)] == ["three\n"]
    times = [ts for _, _, ts in engine.logs(cid)]
    from dockyard.engine.model import parse_time
    since = parse_time(times[1]) + 0.5
    assert [line for _, line, _ in engine.logs(cid, since=since)] == ["three\n"]
    assert [line for _, line, _ in engine.logs(cid, until=since)] == ["one\n", "two\n"]
    stamped = next(iter(engine.logs(cid, timestamps=True)))[1]
    assert stamped == f"{times[0]} one\n"
    # follow returns once the container has exited
    cid2 = env.run(["sh", "-c", "echo a; sleep 0.5; echo b"])
    assert [line for _, line, _ in engine.logs(cid2, follow=True)] == ["a\n", "b\n"]


def test_pause_unpause_top_stats(env: Env, engine: Engine) -> None:
    cid = env.run(["sleep", "100"])
    top = engine.top(cid)
    assert "PID" in top["Titles"] and any("sleep" in " ".join(p) for p in top["Processes"])
    stats = engine.stats(cid)
    assert stats["pids_stats"]["current"] >= 1 and stats["memory_stats"]["usage"] > 0
    engine.pause(cid)
    assert engine.inspect(cid)["State"]["Status"] == "paused"
    engine.unpause(cid)
    assert engine.inspect(cid)["State"]["Status"] == "running"
    engine.pause(cid)
    engine.kill(cid)  # a paused container can be killed
    assert engine.wait(cid) == 137


def test_spec_user_caps_and_files(env: Env, engine: Engine) -> None:
    cid = env.run(["sh", "-c", "id -u; id -g; hostname; cat /proc/self/status | grep CapEff"],
                  {"CapDrop": ["ALL"], "CapAdd": ["NET_BIND_SERVICE"]}, User="nobody")
    engine.wait(cid)
    out = [r["log"].strip() for r in env.log(cid)]
    assert out[:3] == ["65534", "65534", cid[:12]]
    assert out[3].split()[-1] in ("0000000000000000", "0000000000000400")
    assert signal.SIGTERM  # keep the import used


def test_auto_remove(env: Env, engine: Engine) -> None:
    cid = env.run(["true"], {"AutoRemove": True})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            engine.inspect(cid)
        except NotFound:
            break
        time.sleep(0.05)
    with pytest.raises(NotFound):
        engine.inspect(cid)
