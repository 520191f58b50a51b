"""docker compose v2 (the real one, Debian's package, see scripts/compose-v2-peer.sh)
as a peer of `dockyard compose`:

- its model of a service (`config --format json`, the input of its config-hash) and
  ours (dockyard.compose.gojson) are the same JSON, on a corpus of compose files;
- on our daemon, each keeps the containers the other created: `docker compose up`
  after `dockyard compose up` recreates nothing, and the other way round; a changed
  service is recreated by either, alone; `docker compose down` removes our project.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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

from dockyard.compose import gojson
from dockyard.compose.loader import Options, load
from dockyard.devtools.compose_peer import compose_v2_config_dir, compose_v2_env

DATA = Path(__file__).resolve().parent.parent / "data"

pytestmark = pytest.mark.skipif(compose_v2_config_dir() is None,
                                reason="docker compose v2 peer not installed "
                                       "(scripts/compose-v2-peer.sh)")


def peer(args: list[str], cwd: Path, host: str | None = None,
         env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", "compose", *args], cwd=cwd, capture_output=True, text=True,
                       env={**compose_v2_env(host), **(env or {})}, timeout=120, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"docker compose {' '.join(args)} -> {r.returncode}\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


# -- the model: the same JSON for every service ---------------------------------------------

CORPUS = [
    ("compose-hash/services", ["--profile", "x"]),
    ("compose-hash/shapes", []), ("compose-hash/edges", []), ("compose-hash/resources", []),
    ("compose-hash/extensions", []),
    ("compose/basic", []), ("compose/convert", []), ("compose/extends", []),
    ("compose/include", []), ("compose/interp", []), ("compose/profiles", ["--profile", "*"]),
    ("compose/merge", ["-f", "base.yaml", "-f", "prod.yaml"]),
]


@pytest.mark.parametrize("directory,args", CORPUS, ids=[c[0] for c in CORPUS])
def test_service_model_is_docker_compose_s(directory: str, args: list[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = DATA / directory
    env = {"NOVAL": "from-the-shell"}
    out = peer([*args, "config", "--format", "json"], cwd, env=env).stdout
    # `config` writes $ as $$ (so its output can be read again); the model has $
    full = json.loads(out.replace("$$", "$"))
    theirs = full["services"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)
    files = [args[i + 1] for i, a in enumerate(args) if a == "-f"]
    profiles = [args[i + 1] for i, a in enumerate(args) if a == "--profile"]
    project = load(Options(files=files, profiles=profiles))
    ours = project.services
    assert sorted(ours) == sorted(theirs)
    # networks and volumes too (they carry hashes of their own)
    for kind, model in (("networks", gojson.network_model), ("volumes", gojson.volume_model)):
        mine = getattr(project, kind)
        assert sorted(mine) == sorted(full.get(kind) or {}), kind
        for key, value in (full.get(kind) or {}).items():
            assert gojson.dumps(model(mine[key])) == gojson.dumps(value), (kind, key)
    for name in theirs:
        assert gojson.dumps(gojson.service_model(ours[name]), indent=1) == \
            gojson.dumps(theirs[name], indent=1), name
    # and docker compose's hash of that model is the label we write
    for name, model in theirs.items():
        for key in gojson.HASH_EXCLUDED:
            model.pop(key, None)
        if "deploy" in model:
            model["deploy"].pop("replicas", None)
        expected = __import__("hashlib").sha256(gojson.dumps(model).encode()).hexdigest()
        assert gojson.config_hash(ours[name]) == expected, name


@pytest.mark.parametrize("directory,args", CORPUS, ids=[c[0] for c in CORPUS])
def test_config_output_is_docker_compose_s(directory: str, args: list[str],
                                           tmp_path: Path) -> None:
    """`compose config`, YAML and JSON: the same bytes as docker compose's."""
    cwd = DATA / directory
    env = {"NOVAL": "from-the-shell"}
    for fmt in ("yaml", "json"):
        theirs = peer([*args, "config", "--format", fmt], cwd, env=env).stdout
        ours = subprocess.run(
            [sys.executable, "-m", "dockyard.cli.main", "compose", *args, "config",
             "--format", fmt], cwd=cwd, capture_output=True, text=True, timeout=60,
            check=True,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")},
                 **env, "XDG_CACHE_HOME": str(tmp_path)}).stdout
        assert ours == theirs, fmt


def test_go_encodings() -> None:
    assert gojson.duration_string(90 * 10**9) == "1m30s"
    assert gojson.duration_string(3600 * 10**9) == "1h0m0s"
    assert gojson.duration_string(1500 * 10**6) == "1.5s"
    assert gojson.duration_string(500 * 10**6) == "500ms"
    assert gojson.duration_string(1500) == "1.5µs"
    assert gojson.dumps({"a": "<&>", "f": gojson.Float32(0.1), "g": gojson.Float32(1e22)}) \
        == '{"a":"\\u003c\\u0026\\u003e","f":0.1,"g":1e+22}'


# -- on our daemon: each keeps the other's containers ---------------------------------------

PROJECT = f"""
services:
  db:
    image: busybox:dyk
    command: ["sh", "-c", "{LOOP}"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
    volumes: [data:/data]
  web:
    image: busybox:dyk
    command: ["sh", "-c", "{LOOP}"]
    environment:
      GREETING: hello
    labels: [tier=front]
    ports: ["127.0.0.1::80"]
    depends_on: [db]
  side:  # references docker compose resolves to container ids before hashing
    image: busybox:dyk
    command: ["sh", "-c", "{LOOP}"]
    network_mode: service:db
    volumes_from: ["db:ro"]
volumes:
  data: {{}}
"""


def ids(compose: Compose, project: str) -> dict[str, str]:
    return {n: c["Id"] for n, c in compose.by_name(project).items()}


@pytest.fixture
def project_dir(workdir: Path, compose: Compose) -> Iterator[Path]:
    d = _project(workdir, "v2peer", PROJECT)
    yield d
    compose(d, "down", "-v", "--remove-orphans", check=False)


def test_docker_compose_keeps_our_containers(compose: Compose,
                                             project_dir: Path) -> None:
    compose(project_dir, "up", "-d")
    before = ids(compose, "v2peer")
    assert sorted(before) == ["v2peer-db-1", "v2peer-side-1", "v2peer-web-1"]
    network = compose.api("GET", "/networks/v2peer_default")[1]
    assert network["Labels"]["com.docker.compose.config-hash"]  # type: ignore[index]
    r = peer(["up", "-d"], project_dir, f"unix://{compose.sock}")
    assert "Recreate" not in r.stdout + r.stderr, r.stderr
    assert "exists but doesn't match" not in r.stderr, r.stderr  # the volume's hash
    assert ids(compose, "v2peer") == before
    # the network's hash is docker compose's too: it kept the network
    assert compose.api("GET", "/networks/v2peer_default")[1]["Id"] == network["Id"]  # type: ignore[index]
    listed = peer(["ps", "--format", "json"], project_dir, f"unix://{compose.sock}").stdout
    theirs = {r["Name"]: r for r in map(json.loads, listed.splitlines())}
    assert sorted(r["Service"] for r in theirs.values()) == ["db", "side", "web"]
    # our `ps --format json`: the same fields, the same values (labels in any order)
    ours = {r["Name"]: r for r in map(json.loads,
                                      compose(project_dir, "ps", "--format", "json")
                                      .stdout.splitlines())}
    assert sorted(ours) == sorted(theirs)
    for name, row in theirs.items():
        assert sorted(ours[name]) == sorted(row), name
        for key in ("ID", "Image", "Command", "Project", "Service", "State", "Health",
                    "Networks", "Mounts", "LocalVolumes", "Ports", "Publishers", "Size",
                    "ExitCode", "CreatedAt"):
            assert ours[name][key] == row[key], (name, key)
        assert sorted(ours[name]["Labels"].split(",")) == sorted(row["Labels"].split(","))

    # a change to one service: docker compose recreates that one only
    (project_dir / "compose.yaml").write_text(PROJECT.replace("GREETING: hello",
                                                              "GREETING: bye"))
    peer(["up", "-d"], project_dir, f"unix://{compose.sock}")
    after = ids(compose, "v2peer")
    assert after["v2peer-db-1"] == before["v2peer-db-1"]
    assert after["v2peer-web-1"] != before["v2peer-web-1"]

    # docker compose down removes what we created
    peer(["down", "-v"], project_dir, f"unix://{compose.sock}")
    assert compose.containers("v2peer") == []
    vols = compose.api("GET", "/volumes")[1]["Volumes"] or []  # type: ignore[index]
    assert not [v for v in vols if v["Name"] == "v2peer_data"]


def test_we_keep_docker_compose_s_containers(compose: Compose,
                                            project_dir: Path) -> None:
    peer(["up", "-d"], project_dir, f"unix://{compose.sock}")
    before = ids(compose, "v2peer")
    assert sorted(before) == ["v2peer-db-1", "v2peer-side-1", "v2peer-web-1"]
    r = compose(project_dir, "up", "-d")
    assert "Recreate" not in r.stdout + r.stderr, r.stderr
    assert ids(compose, "v2peer") == before

    (project_dir / "compose.yaml").write_text(PROJECT.replace("tier=front", "tier=back"))
    compose(project_dir, "up", "-d")
    after = ids(compose, "v2peer")
    assert after["v2peer-db-1"] == before["v2peer-db-1"]
    assert after["v2peer-web-1"] != before["v2peer-web-1"]
    # and docker compose agrees that the recreated container is up to date
    r = peer(["up", "-d"], project_dir, f"unix://{compose.sock}")
    assert "Recreate" not in r.stdout + r.stderr, r.stderr
    assert ids(compose, "v2peer") == after


# -- what the listing commands print: docker compose's output, on the same daemon -----------

IDLE = "trap 'exit 0' TERM; sleep 3600 & wait"  # steady processes, for `top`

LISTED = f"""
services:
  web:
    image: busybox:dyk
    command: ["sh", "-c", "{IDLE}"]
    ports: ["127.0.0.1::80", "127.0.0.1::81/udp"]
    depends_on: [db]
  db:
    image: busybox:dyk
    command: ["sh", "-c", "{IDLE}"]
    volumes: [data:/data]
  job:
    image: busybox:dyk
    command: ["true"]
  tool:
    image: busybox:dyk
    profiles: [debug, admin]
volumes:
  data: {{}}
  spare: {{}}
networks:
  spare: {{}}
"""

_AGO = re.compile(r"(Less than a second|About an? (?:minute|hour)|"
                  r"\d+ (?:second|minute|hour|day|week|month|year)s?)")


def _cells(text: str) -> list[list[str]]:
    """A table's cells, relative times made equal (they tick between two commands)."""
    return [re.split(r" {2,}", _AGO.sub("T", line).strip()) for line in text.splitlines()]


@pytest.fixture
def listed_dir(workdir: Path, compose: Compose) -> Iterator[Path]:
    d = _project(workdir, "v2fmt", LISTED)
    yield d
    compose(d, "down", "-v", "-t", "1", "--remove-orphans", check=False)


def test_listings_are_docker_compose_s(compose: Compose, listed_dir: Path) -> None:
    host = f"unix://{compose.sock}"

    def both(*args: str, check: bool = True) -> tuple[str, str]:
        return (compose(listed_dir, *args, check=check).stdout,
                peer(list(args), listed_dir, host, check=check).stdout)

    def same(*args: str, tries: int = 3) -> str:
        """Exactly docker compose's output (again, if a clock ticked in between)."""
        for _ in range(tries):
            ours, theirs = both(*args)
            if ours == theirs:
                return ours
        assert ours == theirs, args
        return ours

    # config: docker compose walks Go maps (any order), services after their dependencies
    ours, theirs = both("config", "--services")
    assert ours == "db\njob\nweb\n"
    listed = theirs.split()
    assert sorted(listed) == ["db", "job", "web"] and listed.index("db") < listed.index("web")
    assert same("config", "--volumes") == "data\n"      # the used ones only
    assert same("config", "--networks") == "default\n"
    assert same("config", "--profiles") == "admin\ndebug\n"
    ours, theirs = both("config", "--images")
    assert ours == "busybox:dyk\n" * 3 and theirs == ours

    compose(listed_dir, "up", "-d")
    _wait(lambda: compose.by_name("v2fmt")["v2fmt-job-1"]["State"] == "exited")

    # ps: the default table, templates, and its other outputs
    for args in (["ps"], ["ps", "-a"], ["ps", "--status", "exited"]):
        ours, theirs = both(*args)
        assert _cells(ours) == _cells(theirs), args
    assert same("ps", "-a", "--format", "table {{.Name}}\t{{.Image}}\t{{.Command}}\t"
                "{{.Service}}\t{{.State}}\t{{.Ports}}\t{{.Health}}\t{{.ID}}") \
        .startswith("NAME          IMAGE         COMMAND ")  # minwidth 10, padding 3
    same("ps", "--format", "{{.Names}} {{.Project}} {{.Command}} {{.ExitCode}}")
    same("ps", "--no-trunc", "--format", "table {{.ID}}\t{{.Command}}\t{{.CreatedAt}}")
    assert same("ps", "--services") == "db\nweb\n"
    assert same("ps", "-a", "--services") == "db\njob\nweb\n"
    same("ps", "-q")
    same("ps", "--status", "exited", "-q")
    same("ps", "--filter", "status=running", "--format", "{{.Name}}")
    same("ps", "--status", "paused", "--services")  # none: an empty line

    # top: one table, SERVICE and # first
    top = same("top").splitlines()
    assert top[0].split()[:3] == ["SERVICE", "#", "UID"] and top[0].endswith("CMD")
    assert [line.split()[0] for line in top[1:]] == ["db", "db", "web", "web"]
    same("top", "web")

    # images: decimal sizes, PLATFORM and CREATED; json a compact array
    ours, theirs = both("images")
    assert _cells(ours) == _cells(theirs)
    assert ours.startswith("CONTAINER" + " " * 11 + "REPOSITORY" + " " * 10 + "TAG")
    ours, theirs = both("images", "--format", "json")
    expected = sorted(json.loads(theirs), key=lambda r: r["ContainerName"])
    assert json.loads(ours) == expected
    assert ours == json.dumps(expected, separators=(",", ":")) + "\n\n" and \
        theirs.endswith("]\n\n")
    ours, theirs = both("images", "-q", "db")
    assert ours == theirs and len(ours.split()) == 1

    # ls: min column width 20; json compact
    for args in (["ls"], ["ls", "-a"], ["ls", "--format", "json"], ["ls", "-q"],
                 ["ls", "-a", "--filter", "name=^v2f"]):
        same(*args)

    # port
    assert same("port", "web", "80").startswith("127.0.0.1:")
    same("port", "--protocol", "UDP", "web", "81")
    for args in (["port", "web", "82"], ["port", "web", "81/udp"], ["port", "job", "80"],
                 ["port", "--index", "2", "web", "80"]):
        ours_r = compose(listed_dir, *args, check=False)
        theirs_r = peer(args, listed_dir, host, check=False)
        assert ours_r.returncode == theirs_r.returncode == 1, args
        assert ours_r.stderr.strip() == theirs_r.stderr.strip(), args

    # version: docker compose's layout, our version
    assert re.fullmatch(r"Dockyard Compose version v\S+\n", compose(listed_dir, "version").stdout)
    short = compose(listed_dir, "version", "--short").stdout
    assert re.fullmatch(r"[0-9]\S*\n", short)
    assert compose(listed_dir, "version", "--format", "json").stdout == \
        json.dumps({"version": "v" + short.strip()}, separators=(",", ":")) + "\n"


def test_events_are_docker_compose_s(compose: Compose, listed_dir: Path) -> None:
    host = f"unix://{compose.sock}"
    compose(listed_dir, "up", "-d", "db")
    streams = {}
    for mode in (["--json"], []):
        streams["ours", *mode] = subprocess.Popen(
            [sys.executable, "-m", "dockyard.cli.main", "compose", "events", *mode],
            cwd=listed_dir, env=compose.env, stdout=subprocess.PIPE, text=True)
        streams["theirs", *mode] = subprocess.Popen(
            ["docker", "compose", "events", *mode], cwd=listed_dir,
            env=compose_v2_env(host), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        compose(listed_dir, "restart", "-t", "1", "db")
        time.sleep(1)
    finally:
        out = {}
        for key, proc in streams.items():
            proc.terminate()
            out[key] = proc.communicate(timeout=10)[0]
    assert out["ours", "--json"].rstrip("\n") == out["theirs", "--json"].rstrip("\n")

    def attributes_sorted(text: str) -> str:  # Go prints a map's in any order
        return re.sub(r"\((.*)\)$", lambda m: "(" + ", ".join(sorted(m[1].split(", "))) + ")",
                      text.rstrip("\n"), flags=re.MULTILINE)

    assert "\n\n" in out[("ours",)]  # a blank line after each event, as docker compose's
    assert attributes_sorted(out[("ours",)]) == attributes_sorted(out[("theirs",)])
    actions = [json.loads(line)["action"] for line in out["ours", "--json"].splitlines()]
    assert {"kill", "die", "stop", "start"} <= set(actions)
