"""`dockyard compose --dry-run` end to end against a private daemon: every command
prints what it would do (progress lines prefixed like docker compose's) and changes
nothing: no container, network, volume or image is created, started, stopped or
removed. Commands that wait for what they "made" (depends_on conditions, --wait,
attached up) go on as if it had started and become healthy.

The daemon and helpers are test_compose.py's (one daemon for this module).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from test_compose import (  # noqa: F401 - fixtures used by name
    LOOP,
    Compose,
    _has,
    _project,
    compose,
    daemon,
    needs_networks,
    needs_volumes,
    workdir,
)

PREFIX = " DRY-RUN MODE - "

PROJECT = f"""
services:
  job:
    image: busybox:dyk
    command: ["true"]
  db:
    image: busybox:dyk
    command: ["sh", "-c", "touch /tmp/ready; {LOOP}"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 200ms
      retries: 50
  web:
    image: busybox:dyk
    command: ["sh", "-c", "{LOOP}"]
    volumes: [data:/data]
    networks: [default, back]
    depends_on:
      db: {{condition: service_healthy}}
      job: {{condition: service_completed_successfully}}
volumes:
  data:
networks:
  back:
"""


def _progress(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def _nothing_made(compose: Compose, name: str) -> None:
    assert compose.containers(name) == []
    assert compose.api("GET", f"/networks/{name}_default")[0] == 404
    assert compose.api("GET", f"/networks/{name}_back")[0] == 404
    assert compose.api("GET", f"/volumes/{name}_data")[0] == 404


def test_dry_run_up_creates_nothing(compose: Compose, workdir: Path) -> None:
    needs_networks(compose)
    needs_volumes(compose)
    p = _project(workdir, "dry", PROJECT)
    r = compose(p, "--dry-run", "up", "-d")
    lines = _progress(r.stderr)
    assert lines and all(ln.startswith(PREFIX) for ln in lines), r.stderr
    for what in ("Network dry_default  Created", "Network dry_back  Created",
                 'Volume "dry_data"  Created', "Container dry-web-1  Created",
                 "Container dry-db-1  Healthy", "Container dry-job-1  Exited",
                 "Container dry-web-1  Started"):
        assert f"{PREFIX} {what}" in lines, (what, r.stderr)
    # web starts once its dependencies reached their conditions
    assert lines.index(f"{PREFIX} Container dry-db-1  Healthy") < \
        lines.index(f"{PREFIX} Container dry-web-1  Starting")
    _nothing_made(compose, "dry")

    # the commands that would wait on the containers do not hang
    r = compose(p, "--dry-run", "up", "--wait", timeout=30)
    assert f"{PREFIX} Container dry-web-1  Healthy" in r.stderr
    r = compose(p, "--dry-run", "up", timeout=30)  # attached: no logs to follow
    assert "interactive run is not supported in dry-run mode" in r.stdout
    assert f"{PREFIX} Container dry-web-1  Started" in r.stderr
    r = compose(p, "--dry-run", "create")
    assert f"{PREFIX} Container dry-web-1  Created" in r.stderr
    assert "Starting" not in r.stderr
    r = compose(p, "--dry-run", "scale", "web=2")
    assert f"{PREFIX} Container dry-web-2  Started" in r.stderr
    r = compose(p, "--dry-run", "run", "-d", "web", "true")
    assert r.stdout.startswith("dry-web-run-")
    r = compose(p, "--dry-run", "run", "-T", "web", "true", check=False)
    assert r.returncode == 1 and "not supported in dry-run mode" in r.stderr
    # start finds nothing to start: nothing was created
    r = compose(p, "--dry-run", "start", check=False)
    assert r.returncode == 1 and "no container to start" in r.stderr
    _nothing_made(compose, "dry")


def test_dry_run_leaves_a_running_project_alone(compose: Compose, workdir: Path,
                                                tmp_path: Path) -> None:
    needs_networks(compose)
    needs_volumes(compose)
    p = _project(workdir, "dryrun", PROJECT)

    def snapshot() -> dict[str, tuple[str, str, str]]:
        out = {}
        for name, c in compose.by_name("dryrun").items():
            state = compose.api("GET", f"/containers/{c['Id']}/json")[1]["State"]
            out[name] = (c["Id"], state["Status"], state["StartedAt"])
        return out

    try:
        compose(p, "up", "-d")
        before = snapshot()
        assert {n: s[1] for n, s in before.items()} == {
            "dryrun-db-1": "running", "dryrun-web-1": "running", "dryrun-job-1": "exited"}
        for args in (["stop"], ["restart"], ["kill"], ["pause"], ["rm", "-f", "-s"],
                     ["up", "-d", "--force-recreate"], ["scale", "web=3"],
                     ["down", "-v", "--rmi", "local", "-t", "1"]):
            r = compose(p, "--dry-run", *args)
            assert PREFIX in r.stderr, (args, r.stderr)
            assert snapshot() == before, args
        # what was listed as done
        r = compose(p, "--dry-run", "rm", "-f", "-s")
        assert f"{PREFIX} Container dryrun-web-1  Removed" in r.stderr
        r = compose(p, "--dry-run", "down", "-v")
        for what in ("Container dryrun-web-1  Stopped", "Container dryrun-db-1  Removed",
                     "Network dryrun_default  Removed", "Volume dryrun_data  Removed"):
            assert f"{PREFIX} {what}" in r.stderr, (what, r.stderr)
        assert compose.api("GET", "/networks/dryrun_default")[0] == 200
        assert compose.api("GET", "/volumes/dryrun_data")[0] == 200
        r = compose(p, "--dry-run", "up", "-d", "--force-recreate")
        assert f"{PREFIX} Container dryrun-web-1  Recreated" in r.stderr
        assert f"{PREFIX} Container dryrun-db-1  Healthy" in r.stderr

        # unpause: a really paused container stays paused
        compose(p, "pause", "web")
        compose(p, "--dry-run", "unpause")
        assert compose.by_name("dryrun")["dryrun-web-1"]["State"] == "paused"
        compose(p, "unpause")

        # exec: detached only says what it would run; interactive is refused
        r = compose(p, "--dry-run", "exec", "-d", "web", "touch", "/tmp/made")
        assert r.stdout.startswith(f"{PREFIX}Executing command [\"touch\" \"/tmp/made\"]")
        r = compose(p, "--dry-run", "exec", "-T", "web", "true", check=False)
        assert r.returncode == 1 and "interactive exec is not supported" in r.stderr
        assert compose(p, "exec", "-T", "web", "test", "-e", "/tmp/made",
                       check=False).returncode == 1

        # cp: nothing copied either way, but a missing path is still an error
        src = tmp_path / "in.txt"
        src.write_text("x\n")
        compose(p, "--dry-run", "cp", str(src), "web:/tmp/in.txt")
        assert compose(p, "exec", "-T", "web", "test", "-e", "/tmp/in.txt",
                       check=False).returncode == 1
        compose(p, "--dry-run", "cp", "web:/etc/hostname", str(tmp_path / "out"))
        assert not (tmp_path / "out").exists()
        r = compose(p, "--dry-run", "cp", "web:/no/such", str(tmp_path / "out"), check=False)
        assert r.returncode == 1 and "Could not find the file /no/such" in r.stderr
        assert snapshot() == before
    finally:
        compose(p, "down", "-v", "-t", "1")
    assert compose.containers("dryrun") == []


def test_dry_run_build_pull_push_make_no_image(compose: Compose, workdir: Path) -> None:
    from test_daemon_images import Registry

    registry = Registry(workdir / "dry-registry")
    try:
        ref = f"{registry.host}/dyk/dry:v1"
        p = _project(workdir, "drypp", f"services:\n  app:\n    image: {ref}\n")
        # pull: the image is not in the registry nor here; nothing is fetched
        r = compose(p, "--dry-run", "pull")
        assert f"{PREFIX} app Pulled" in r.stderr
        assert compose.api("GET", f"/images/{ref}/json")[0] == 404
        # push: nothing reaches the registry
        compose.run("tag", "busybox:dyk", ref)
        r = compose(p, "--dry-run", "push")
        assert f"{PREFIX} app Pushed" in r.stderr
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://{registry.host}/v2/dyk/dry/tags/list", timeout=10)
        assert e.value.code == 404
        compose.run("rmi", ref)
    finally:
        registry.stop()

    if not _has(compose, "/networks"):
        return
    p = _project(workdir, "drybuild", "services:\n  app:\n    build: .\n")
    (p / "Dockerfile").write_text("FROM busybox:dyk\nRUN touch /built\n")
    r = compose(p, "--dry-run", "build")
    assert f"{PREFIX} app Built" in r.stderr
    r = compose(p, "--dry-run", "up", "-d")  # builds the missing image, then uses it
    assert f"{PREFIX} app Built" in r.stderr
    assert f"{PREFIX} Container drybuild-app-1  Started" in r.stderr
    assert compose.api("GET", "/images/drybuild-app/json")[0] == 404
    assert compose.containers("drybuild") == []
