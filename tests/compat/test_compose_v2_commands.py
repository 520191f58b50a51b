"""The official docker compose v2 (the peer scripts/compose-v2-peer.sh unpacks), unchanged,
against a private dockyard daemon: every command on small busybox projects, checked
by what it leaves behind (container states and ids through the API, files, outputs,
exit codes) - the outcomes the same commands have on dockerd.

Found against dockerd and fixed in the daemon on the way: the listing's Command quotes
the arguments holding a space (`ps` shows "sh -c 'echo …"), the primary group is among
a process's supplementary groups (`exec -u nobody id`), a missing path in `cp` names the
container as the request did, untagging one of several tags of an image containers use
is no conflict, and an attached exec started a second time answers 200 with the error
in the stream (`watch` does that, for the `rm -rf` of a deleted file).

Known, left as they are: `build` needs BuildKit's /grpc (not served): without it
compose picks buildx's docker-container driver, which pulls moby/buildkit; with
DOCKER_BUILDKIT=0 it uses the legacy POST /build, as here. An exec of a missing
command exits 127 (today's docker; dockerd 20.10 says 126).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_compose import (  # noqa: F401 - fixtures used by name
    LOOP,
    Compose,
    _project,
    _wait,
    compose,
    daemon,
    workdir,
)
from test_daemon_images import http_request

from dockyard.devtools.compose_peer import compose_v2_config_dir, compose_v2_env

pytestmark = pytest.mark.skipif(compose_v2_config_dir() is None,
                                reason="docker compose v2 peer not installed "
                                       "(scripts/compose-v2-peer.sh)")


class Peer:
    """`docker compose` (v2) in one project directory, on the module's daemon."""

    def __init__(self, compose: Compose, project: Path) -> None:
        self.compose, self.project = compose, project
        self.env = {**compose_v2_env(f"unix://{compose.sock}"),
                    "XDG_CACHE_HOME": str(project / ".cache")}

    def __call__(self, *args: str, check: bool = True, env: dict | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run(["docker", "compose", *args], cwd=self.project,
                           env={**self.env, **(env or {})}, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} -> {r.returncode}\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["docker", "compose", *args], cwd=self.project, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)

    def states(self) -> dict[str, str]:
        name = self.project.name
        return {n: c["State"] for n, c in self.compose.by_name(name).items()}

    def inspect(self, name: str) -> dict:
        status, info = self.compose.api("GET", f"/containers/{name}/json")
        assert status == 200, info
        return info  # type: ignore[return-value]


@contextlib.contextmanager
def _peer(compose: Compose, workdir: Path, name: str, text: str) -> Iterator[Peer]:
    p = Peer(compose, _project(workdir, name, text))
    try:
        yield p
    finally:
        p("down", "-v", "-t", "1", "--remove-orphans", check=False)


MAIN = f"""
services:
  db:
    image: busybox:dyk
    command: ["sh", "-c", "echo db up; touch /tmp/ready; {LOOP}"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 200ms
      retries: 20
    volumes: [data:/data]
  web:
    image: busybox:dyk
    command: ["sh", "-c", "echo web says $$GREETING; {LOOP}"]
    environment:
      GREETING: hello
    ports: ["127.0.0.1::80"]
    depends_on:
      db:
        condition: service_healthy
volumes:
  data: {{}}
"""


@pytest.fixture
def main(compose: Compose, workdir: Path) -> Iterator[Peer]:
    with _peer(compose, workdir, "v2main", MAIN) as p:
        yield p


def test_up_ps_logs_exec_run_cp(main: Peer, tmp_path: Path) -> None:
    api = main.compose
    r = main("up", "-d", "--wait")
    assert r.stderr.index("Container v2main-db-1  Healthy") < \
        r.stderr.index("Container v2main-web-1  Starting")
    assert main.states() == {"v2main-db-1": "running", "v2main-web-1": "running"}
    ids = {n: c["Id"] for n, c in api.by_name("v2main").items()}

    # ps: dockerd's Command (arguments holding a space quoted), ids, filters, json
    rows = main("ps", "-a").stdout.splitlines()
    assert rows[0].split()[:4] == ["NAME", "IMAGE", "COMMAND", "SERVICE"]
    assert re.split(" {2,}", rows[1])[2] == "\"sh -c 'echo db up; …\""
    assert sorted(main("ps", "--status", "running", "-q", "--no-trunc").stdout.split()) \
        == sorted(ids.values())
    assert main("ps", "--status", "exited", "-q").stdout == ""
    listed = {x["Service"]: x for x in map(json.loads, main("ps", "--format", "json")
                                            .stdout.splitlines())}
    assert {s: (x["State"], x["Health"]) for s, x in listed.items()} == \
        {"db": ("running", "healthy"), "web": ("running", "")}
    port = listed["web"]["Publishers"][0]["PublishedPort"]
    assert main("port", "web", "80").stdout == f"127.0.0.1:{port}\n"

    # logs
    _wait(lambda: "web says hello" in main("logs", "web").stdout)
    tail = main("logs", "--no-color", "--tail", "1", "-t", "db").stdout.strip()
    assert tail.startswith("db-1  | 20") and tail.endswith("Z db up")

    # exec: env, user (its primary group a supplementary one too, as dockerd's), cwd
    r = main("exec", "-T", "-e", "X=1", "-u", "nobody", "-w", "/tmp", "web",
             "sh", "-c", "echo $X $GREETING; id; pwd")
    assert r.stdout == "1 hello\nuid=65534(nobody) gid=65534(nogroup) " \
                       "groups=65534(nogroup)\n/tmp\n"
    assert main("exec", "-T", "web", "sh", "-c", "exit 3", check=False).returncode == 3
    main("exec", "-d", "web", "sh", "-c", "echo detached > /tmp/d")
    _wait(lambda: main("exec", "-T", "web", "cat", "/tmp/d", check=False).stdout
          == "detached\n")
    r = main("exec", "-T", "nosvc", "true", check=False)
    assert r.returncode == 1 and 'service "nosvc" is not running' in r.stderr

    # run: one-off containers
    r = main("run", "--rm", "-T", "-e", "X=2", "web", "sh", "-c", "echo run $X $GREETING")
    assert r.stdout == "run 2 hello\n"
    assert main("run", "--rm", "-T", "--no-deps", "--entrypoint", "echo", "web", "hi",
                "there").stdout == "hi there\n"
    assert main("run", "--rm", "-T", "web", "sh", "-c", "exit 4", check=False).returncode == 4
    cid = main("run", "-d", "--name", "v2main-sp", "--service-ports", "web").stdout.strip()
    info = main.inspect("v2main-sp")
    assert info["Id"] == cid and info["Config"]["Labels"]["com.docker.compose.oneoff"] == "True"
    assert info["NetworkSettings"]["Ports"]["80/tcp"][0]["HostIp"] == "127.0.0.1"
    assert {n: c["Id"] for n, c in api.by_name("v2main").items()
            if n != "v2main-sp"} == ids  # nothing else touched

    # cp: both ways, files and directories
    (tmp_path / "f.txt").write_text("from host\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a").write_text("a\n")
    main("cp", str(tmp_path / "f.txt"), "web:/tmp/f.txt")
    main("cp", str(tmp_path / "dir"), "web:/tmp/")
    assert main("exec", "-T", "web", "cat", "/tmp/f.txt", "/tmp/dir/a").stdout == \
        "from host\na\n"
    out = tmp_path / "out"
    out.mkdir()
    main("cp", "web:/etc/hostname", str(out))
    assert (out / "hostname").read_text().strip() == ids["v2main-web-1"][:12]
    main("cp", "web:/tmp/dir", str(out / "d2"))
    assert (out / "d2" / "a").read_text() == "a\n"
    r = main("cp", "web:/nonexist", str(out), check=False)
    assert r.returncode == 1
    assert f"Could not find the file /nonexist in container {ids['v2main-web-1']}" in r.stderr

    # --remove-orphans: a one-off container is an orphan once it has exited
    main("up", "-d", "--remove-orphans")
    assert main.states()["v2main-sp"] == "running"
    assert api.api("POST", "/containers/v2main-sp/kill")[0] == 204
    _wait(lambda: main.states()["v2main-sp"] == "exited")
    r = main("up", "-d", "--remove-orphans")
    assert "Container v2main-sp  Removed" in r.stderr
    assert sorted(main.states()) == ["v2main-db-1", "v2main-web-1"]
    main("down", "-v")
    assert api.containers("v2main") == []
    assert api.api("GET", "/volumes/v2main_data")[0] == 404
    assert api.api("GET", "/networks/v2main_default")[0] == 404


def test_lifecycle_verbs_events_scale(main: Peer) -> None:
    api = main.compose
    r = main("create")
    assert main.states() == {"v2main-db-1": "created", "v2main-web-1": "created"}
    main("start")
    assert set(main.states().values()) == {"running"}
    events = main.popen("events", "--json")
    try:
        time.sleep(1)
        started = main.inspect("v2main-web-1")["State"]["StartedAt"]
        r = main("restart", "-t", "1", "web")
        assert "Container v2main-web-1  Started" in r.stderr
        assert main.inspect("v2main-web-1")["State"]["StartedAt"] != started
        main("pause", "web")
        assert main.inspect("v2main-web-1")["State"]["Paused"] is True
        assert main("ps", "--status", "paused", "--services").stdout == "web\n"
        main("unpause", "web")
        assert main.inspect("v2main-web-1")["State"]["Status"] == "running"
        time.sleep(0.5)
    finally:
        events.terminate()
        out, _ = events.communicate(timeout=10)
    seen = [json.loads(line) for line in out.splitlines() if line.strip()]
    web = [e["action"] for e in seen if e["service"] == "web"]
    for action in ("kill", "die", "stop", "start", "restart", "pause", "unpause"):
        assert action in web, web
    assert all(e["type"] == "container" and e["id"] for e in seen)

    # top: the service's processes
    top = main("top", "web").stdout.splitlines()
    assert top[0].split()[:3] == ["SERVICE", "#", "UID"]
    assert any("web says" in line for line in top[1:])

    # kill -s, then wait on the dead service
    waiting = main.popen("wait", "web")
    time.sleep(0.5)
    main("kill", "-s", "SIGKILL", "web")
    assert waiting.wait(timeout=20) == 137
    assert main.inspect("v2main-web-1")["State"]["ExitCode"] == 137
    assert main.states()["v2main-db-1"] == "running"
    main("stop", "-t", "1")
    assert set(main.states().values()) == {"exited"}

    # scale, --force-recreate
    main("up", "-d", "--scale", "web=3")
    assert sorted(main.states()) == ["v2main-db-1", "v2main-web-1", "v2main-web-2",
                                     "v2main-web-3"]
    main("scale", "web=1")
    assert sorted(main.states()) == ["v2main-db-1", "v2main-web-1"]
    before = {n: c["Id"] for n, c in api.by_name("v2main").items()}
    r = main("up", "-d", "--force-recreate", "--no-deps", "web")
    assert "Container v2main-web-1  Recreated" in r.stderr
    after = {n: c["Id"] for n, c in api.by_name("v2main").items()}
    assert after["v2main-db-1"] == before["v2main-db-1"]
    assert after["v2main-web-1"] != before["v2main-web-1"]

    # rm -f -s -v
    main("rm", "-f", "-s", "-v", "web")
    assert sorted(main.states()) == ["v2main-db-1"]
    assert api.api("GET", "/volumes/v2main_data")[0] == 200  # a named volume stays
    assert main("ls", "--format", "json", "--filter", "name=v2main").stdout.startswith(
        '[{"Name":"v2main","Status":"running(1)"')


JOBS = f"""
services:
  loop:
    image: busybox:dyk
    command: ["sh", "-c", "echo started; {LOOP}"]
  job:
    image: busybox:dyk
    command: ["sh", "-c", "sleep 1; echo job done; exit 3"]
"""


@pytest.fixture
def jobs(compose: Compose, workdir: Path) -> Iterator[Peer]:
    with _peer(compose, workdir, "v2jobs", JOBS) as p:
        yield p


def test_attached_up(jobs: Peer) -> None:
    r = jobs("up", "--abort-on-container-exit", "-t", "1", check=False)
    assert r.returncode == 3
    assert "job-1   | job done" in r.stdout and "job-1 exited with code 3" in r.stdout
    assert jobs.states() == {"v2jobs-job-1": "exited", "v2jobs-loop-1": "exited"}
    r = jobs("up", "--exit-code-from", "loop", "-t", "1", check=False)
    assert r.returncode == 0 and "loop-1 exited with code 0" in r.stdout
    assert jobs.inspect("v2jobs-job-1")["State"]["ExitCode"] == 3

    # Ctrl-C: compose stops the project and exits 130
    up = jobs.popen("up", "-t", "1", "loop")
    try:
        _wait(lambda: jobs.states().get("v2jobs-loop-1") == "running")
        time.sleep(1)
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 130, err
    assert "loop-1  | started" in out and "Gracefully Stopping" in out
    assert jobs.states()["v2jobs-loop-1"] == "exited"


BUILT = """
services:
  app:
    build:
      context: .
      args: {WHO: compose}
    image: REGISTRY/dyk/v2built:v1
    command: ["cat", "/who"]
  local:
    build: .
    command: ["cat", "/who"]
  plain:
    image: busybox:dyk
    command: ["true"]
"""


@pytest.fixture
def registry(workdir: Path) -> Iterator[str]:
    from dockyard.devtools.distribution import BINARY, DistributionRegistry

    if os.access(BINARY, os.X_OK):
        with DistributionRegistry(str(workdir / "v2registry")) as reg:
            yield reg.host
    else:  # our own registry server
        from test_daemon_images import Registry
        reg = Registry(workdir / "v2registry")
        try:
            yield reg.host
        finally:
            reg.stop()


def test_build_push_pull_images_down_rmi(compose: Compose, workdir: Path,
                                         registry: str) -> None:
    ref = f"{registry}/dyk/v2built:v1"
    try:
        with _peer(compose, workdir, "v2built", BUILT.replace("REGISTRY", registry)) as p:
            (p.project / "Dockerfile").write_text("FROM busybox:dyk\nARG WHO=local\n"
                                                  "RUN echo $WHO > /who\n")
            # no BuildKit (/grpc) here: the legacy builder, as compose does without buildx
            r = p("build", env={"DOCKER_BUILDKIT": "0"})
            assert "Successfully tagged " + ref in r.stdout + r.stderr
            assert "Successfully tagged v2built-local:latest" in r.stdout + r.stderr
            labels = compose.api("GET", f"/images/{ref}/json")[1]["Config"]["Labels"]
            assert labels["com.docker.compose.image.builder"] == "classic"
            r = p("push")  # the services with a build and an image
            assert "local Skipped" in r.stderr and "plain Skipped" in r.stderr
            assert "Pushed" in r.stderr
            assert compose.api("DELETE", f"/images/{ref}")[0] == 200
            assert compose.api("GET", f"/images/{ref}/json")[0] == 404
            r = p("pull", "app")
            assert "app Pulled" in r.stderr
            # busybox:dyk's registry is unreachable: pull says so, the image stays usable
            r = p("pull", "plain", check=False)
            assert r.returncode == 1 and "plain Error" in r.stderr
            assert p("pull", "--ignore-pull-failures", "plain").returncode == 0
            assert p("run", "--rm", "-T", "app").stdout == "compose\n"
            assert p("run", "--rm", "-T", "local").stdout == "local\n"
            r = p("up", "--exit-code-from", "plain", "plain")
            assert "plain-1 exited with code 0" in r.stdout
            p("up", "-d", "app", "local")
            images = json.loads(p("images", "--format", "json").stdout)
            assert sorted((i["ContainerName"], i["Repository"], i["Tag"]) for i in images) \
                == [("v2built-app-1", f"{registry}/dyk/v2built", "v1"),
                    ("v2built-local-1", "v2built-local", "latest"),
                    ("v2built-plain-1", "busybox", "dyk")]
            r = p("down", "--rmi", "local")  # the images without an `image:` name
            assert "Image v2built-local:latest  Removed" in r.stderr
            assert compose.api("GET", "/images/v2built-local/json")[0] == 404
            assert compose.api("GET", f"/images/{ref}/json")[0] == 200
            assert compose.api("GET", "/images/busybox:dyk/json")[0] == 200
    finally:
        compose.api("DELETE", f"/images/{ref}")
        compose.api("DELETE", "/images/v2built-local")


def test_untag_one_of_several_tags_of_a_used_image(compose: Compose) -> None:
    """dockerd: another tag still names the image; untagging this one is no conflict."""
    status, created = compose.api("POST", "/containers/create?name=v2tagged",
                                  {"Image": "busybox:dyk", "Cmd": ["true"]})
    assert status == 201, created
    try:
        assert compose.api("POST", "/images/busybox:dyk/tag?repo=v2alias&tag=x")[0] == 201
        status, lines = compose.api("DELETE", "/images/v2alias:x")
        assert status == 200 and lines == [{"Untagged": "v2alias:x"}]
        status, err = compose.api("DELETE", "/images/busybox:dyk")  # the last name: 409
        assert status == 409 and "must force" in err["message"]  # type: ignore[index]
    finally:
        compose.api("DELETE", "/containers/v2tagged?force=1")


def test_second_attached_exec_start(compose: Compose) -> None:
    """compose's watch starts an attached exec, then POSTs start again: dockerd answers
    200 with the error in the stream (a detached second start: 409)."""
    status, created = compose.api("POST", "/containers/create?name=v2exec",
                                  {"Image": "busybox:dyk", "Cmd": ["sh", "-c", LOOP]})
    assert status == 201, created
    try:
        assert compose.api("POST", "/containers/v2exec/start")[0] == 204
        status, ex = compose.api("POST", "/containers/v2exec/exec",
                                 {"Cmd": ["true"], "AttachStderr": True})
        assert status == 201
        start = f"/exec/{ex['Id']}/start"  # type: ignore[index]
        body = json.dumps({"Detach": False, "Tty": False}).encode()
        headers = {"Content-Type": "application/json"}
        upgrade = {**headers, "Connection": "Upgrade", "Upgrade": "tcp"}  # as compose's
        assert http_request(compose.sock, "POST", start, body, upgrade)[0] == 101
        _wait(lambda: compose.api("GET", f"/exec/{ex['Id']}/json")[1]  # type: ignore[index]
              ["Running"] is False)
        status, _, raw = http_request(compose.sock, "POST", start, body, headers)
        assert status == 200 and raw.endswith(b"has already run\r\n")
        assert raw[:1] == b"\x01"  # on stdout, framed
        status, _ = compose.api("POST", start, {"Detach": True})
        assert status == 409
    finally:
        compose.api("DELETE", "/containers/v2exec?force=1")


WATCHED = f"""
services:
  app:
    image: busybox:dyk
    command: ["sh", "-c", "{LOOP}"]
    develop:
      watch:
        - action: sync
          path: ./src
          target: /app
"""


def test_watch_sync(compose: Compose, workdir: Path) -> None:
    with _peer(compose, workdir, "v2watch", WATCHED) as p:
        src = p.project / "src"
        src.mkdir(exist_ok=True)
        (src / "a.txt").write_text("v1\n")
        watch = p.popen("watch")

        def app(*cmd: str) -> str:
            return p("exec", "-T", "app", *cmd, check=False).stdout

        try:
            _wait(lambda: p.states().get("v2watch-app-1") == "running")
            time.sleep(2)  # the watcher is set up after the container starts
            (src / "a.txt").write_text("v2\n")
            (src / "new.txt").write_text("new\n")
            _wait(lambda: app("cat", "/app/a.txt", "/app/new.txt") == "v2\nnew\n")
            (src / "new.txt").unlink()
            _wait(lambda: app("ls", "/app") == "a.txt\n")
        finally:
            watch.send_signal(signal.SIGINT)
            out, err = watch.communicate(timeout=30)
        assert "Watch enabled" in out + err
        assert "Error handling changed files" not in out + err, err


def test_config_ls_version(compose: Compose, workdir: Path) -> None:
    p = Peer(compose, _project(workdir, "v2cfg", MAIN))
    assert p("config", "-q").stdout == ""
    assert p("config", "--services").stdout.split() == ["db", "web"]
    model = json.loads(p("config", "--format", "json").stdout)
    assert model["name"] == "v2cfg" and sorted(model["services"]) == ["db", "web"]
    assert p("version", "--short").stdout.strip()
    assert json.loads(p("ls", "-a", "--format", "json").stdout) is not None
    r = p("-f", "nope.yaml", "config", check=False)
    assert r.returncode == 1 and "nope.yaml" in r.stderr
