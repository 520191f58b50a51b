"""`docker events` against `dockyard daemon` with the official docker CLI and the docker
SDK: past events with --since/--until and filters, a live stream, the SDK's decoded
events, image events, exec events, and the API's 400s.

One daemon for the module (private data root, exec root and socket); at the end it
is stopped and nothing may be left (no monitor, process, mount or cgroup).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

# the same module-scoped daemon set-up as the container tests (a daemon of its own here)
from test_daemon_containers import busybox, daemon, docker, workdir  # noqa: F401
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


def _past(docker: DockerCLI, since: float, *args: str) -> list[dict]:
    """The events from `since` to now, as JSON."""
    r = docker("events", "--since", f"{since:.9f}", "--until", f"{time.time():.9f}",
               "--format", "{{json .}}", *args)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_run_rm_events_since_until(docker: DockerCLI, busybox: str) -> None:
    since = time.time()
    cid = docker("run", "--rm", "--name", "ev1", "--label", "team=a", "busybox:dyk",
                 "sh", "-c", "exit 3", check=False)
    assert cid.returncode == 3
    deadline = time.monotonic() + 10
    while True:
        events = _past(docker, since, "--filter", "container=ev1")
        actions = [e["Action"] for e in events]
        if "destroy" in actions or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for wanted in ("create", "attach", "start", "die", "destroy"):
        assert wanted in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("die") \
        < actions.index("destroy")
    die = events[actions.index("die")]
    assert die["Type"] == "container" and die["scope"] == "local"
    attrs = die["Actor"]["Attributes"]
    assert attrs["exitCode"] == "3" and attrs["name"] == "ev1"
    assert attrs["image"] == "busybox:dyk" and attrs["team"] == "a"
    assert die["status"] == "die" and die["id"] == die["Actor"]["ID"]
    # the filters: event, label, type, image; a filter that matches nothing
    only = _past(docker, since, "--filter", "event=die", "--filter", "label=team=a")
    assert [e["Action"] for e in only] == ["die"]
    assert _past(docker, since, "--filter", "container=ev1", "--filter", "type=image") == []
    by_image = _past(docker, since, "--filter", "image=busybox:dyk",
                     "--filter", "event=start")
    assert [e["Actor"]["Attributes"]["name"] for e in by_image] == ["ev1"]
    assert _past(docker, since, "--filter", "label=team=b") == []


def test_default_format(docker: DockerCLI, busybox: str) -> None:
    since = time.time()
    docker("create", "--name", "ev2", "busybox:dyk", "true")
    docker("rm", "ev2")
    r = docker("events", "--since", f"{since:.9f}", "--until", f"{time.time():.9f}",
               "--filter", "container=ev2", "--filter", "event=create")
    line = r.stdout.strip()
    stamp, kind, action, _cid, rest = line.split(" ", 4)
    assert stamp.endswith("Z") and len(stamp) == len("2024-05-01T10:00:00.123456789Z")
    assert (kind, action) == ("container", "create")
    assert rest == "(image=busybox:dyk, name=ev2)"


def test_stream_sees_a_start_live(docker: DockerCLI, busybox: str) -> None:
    proc = subprocess.Popen([DOCKER, "events", "--filter", "container=ev3", "--format",
                             "{{.Action}}"], env=docker.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # the stream is open
        docker("run", "-d", "--name", "ev3", "busybox:dyk", "sleep", "100")
        seen = []
        while "start" not in seen:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, proc.stderr.read()  # type: ignore[union-attr]
            seen.append(line.strip())
        assert seen[:2] == ["create", "start"]
        assert proc.poll() is None  # it stays open
    finally:
        proc.kill()
        proc.wait()
        docker("rm", "-f", "ev3", check=False)


def test_lifecycle_actions(docker: DockerCLI, busybox: str) -> None:
    since = time.time()
    docker("run", "-d", "--name", "ev4", "busybox:dyk", "sleep", "100")
    docker("pause", "ev4")
    docker("unpause", "ev4")
    docker("rename", "ev4", "ev4b")
    docker("exec", "ev4b", "true")
    docker("kill", "-s", "USR1", "ev4b")
    docker("stop", "-t", "1", "ev4b")
    docker("rm", "ev4b")
    events = _past(docker, since, "--filter", "type=container")
    actions = [e["Action"] for e in events if e["Actor"]["Attributes"].get("name")
               in ("ev4", "ev4b")]
    for wanted in ("create", "start", "pause", "unpause", "rename", "exec_create: true ",
                   "exec_start: true ", "exec_die", "kill", "die", "stop", "destroy"):
        assert wanted in actions, (wanted, actions)
    by_action = {e["Action"]: e["Actor"]["Attributes"] for e in events}
    assert by_action["rename"]["oldName"] == "/ev4"
    assert by_action["exec_die"]["exitCode"] == "0" and by_action["exec_die"]["execID"]
    kills = [e["Actor"]["Attributes"]["signal"] for e in events if e["Action"] == "kill"]
    assert kills[:2] == ["10", "15"]
    # docker's prefix match for exec_create/exec_start/health_status
    execs = _past(docker, since, "--filter", "event=exec_create")
    assert [e["Action"] for e in execs] == ["exec_create: true "]  # docker's space


def test_image_events(docker: DockerCLI, busybox: str) -> None:
    since = time.time()
    docker("tag", "busybox:dyk", "evimg:1")
    docker("rmi", "evimg:1")
    docker("container", "prune", "-f")
    events = _past(docker, since, "--filter", "type=image")
    assert [e["Action"] for e in events] == ["tag", "untag"]
    pruned = _past(docker, since, "--filter", "event=prune")
    assert [(e["Type"], "reclaimed" in e["Actor"]["Attributes"]) for e in pruned] == \
        [("container", True)]
    assert events[0]["Actor"]["Attributes"]["name"] == "evimg:1"
    assert events[0]["Actor"]["ID"] == busybox


def test_sdk_events(daemon: Daemon, docker: DockerCLI, busybox: str) -> None:
    import docker as sdk

    client = sdk.DockerClient(base_url=f"unix://{daemon.sock}")
    try:
        since = int(time.time()) - 1
        docker("run", "--rm", "--name", "ev5", "busybox:dyk", "true")
        stream = client.events(since=since, until=time.time() + 0.5, decode=True,
                               filters={"container": "ev5", "event": ["start", "die"]})
        got = [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in stream]
        assert got == [("start", "ev5"), ("die", "ev5")]
    finally:
        client.close()


def test_api_errors(daemon: Daemon) -> None:
    status, _, body = http_request(daemon.sock, "GET", "/events?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D")
    assert status == 400 and b"invalid filter 'nope'" in body
    status, _, body = http_request(daemon.sock, "GET", "/events?since=abc")
    assert status == 400
    status, _, _ = http_request(daemon.sock, "GET", "/events?since=20&until=10")
    assert status == 400
    # since and until in the past: the recorded events, then the end
    status, headers, body = http_request(daemon.sock, "GET", "/events?since=1&until=2")
    assert status == 200 and body == b"" and headers["content-type"] == "application/json"


def _dockyard(daemon: Daemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H",
                           f"unix://{daemon.sock}", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_dockyard_cli_prints_like_docker(daemon: Daemon, docker: DockerCLI,
                                         busybox: str) -> None:
    since = time.time()
    docker("run", "--rm", "--name", "ev6", "--label", "x=1", "busybox:dyk", "true")
    window = ("--since", f"{since:.9f}", "--until", f"{time.time() + 0.3:.9f}",
              "--filter", "container=ev6")
    theirs = docker("events", *window).stdout
    for verb in (("events",), ("system", "events")):
        ours = _dockyard(daemon, *verb, *window)
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout == theirs
    fmt = ("--format", "{{.Type}} {{.Action}} {{.ID}} {{.Actor.Attributes.x}} {{.Scope}}")
    assert _dockyard(daemon, "events", *window, *fmt).stdout == \
        docker("events", *window, *fmt).stdout
    lines = _dockyard(daemon, "events", *window, "--format", "json").stdout.splitlines()
    assert [json.loads(line)["Action"] for line in lines][-1] == "destroy"
    # durations and RFC 3339 times for --since/--until, as docker takes them
    past = _dockyard(daemon, "events", "--since", "1m", "--until",
                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1)),
                     "--filter", "container=ev6", "--format", "{{.Action}}")
    assert "start" in past.stdout.split()
    bad = _dockyard(daemon, "events", "--filter", "nope=1", "--until", "1s")
    assert bad.returncode == 1 and "invalid filter 'nope'" in bad.stderr


def test_stream_ends_when_the_daemon_stops(tmp_path) -> None:
    d = Daemon(tmp_path)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "-H",
                                 f"unix://{d.sock}", "events"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        time.sleep(0.5)
        assert proc.poll() is None
        assert d.stop() == 0
        assert proc.wait(timeout=10) == 0
    finally:
        if d.proc.poll() is None:
            d.stop()
