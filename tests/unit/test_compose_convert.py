"""A service -> the container create body; the config-hash; dependency order and
convergence decisions; interpolation edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.compose import convert, planner
from dockyard.compose.errors import ComposeError
from dockyard.compose.interpolate import interpolate, read_env_file, substitute
from dockyard.compose.loader import Options, load

DATA = Path(__file__).resolve().parents[1] / "data" / "compose"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Remembered validations go to a temp dir, not ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def _project(sub: str = "convert", **kw):
    return load(Options(workdir=str(DATA / sub), environ=kw.pop("environ", {}), **kw))


def test_create_body_features() -> None:
    p = _project()
    body = convert.create_body(p, "web", p.services["web"], 1, "sha256:abc")
    d = str(DATA / "convert")
    assert body["Image"] == "busybox:dyk"
    assert body["Cmd"] == ["sh", "-c", "sleep 1"] and body["Entrypoint"] == ["/bin/sh"]
    assert body["Env"] == ["FROM_FILE=yes", "A=1", "B=two"]
    assert body["Hostname"] == "webhost" and body["Domainname"] == "example.org"
    assert body["User"] == "1000:1000" and body["WorkingDir"] == "/srv"
    assert body["Tty"] and body["OpenStdin"]
    assert body["StopSignal"] == "SIGINT" and body["StopTimeout"] == 60
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://localhost"],
                                   "Interval": 90 * 10**9, "Timeout": 10 * 10**9,
                                   "StartPeriod": 5 * 10**8, "Retries": 3}
    assert set(body["ExposedPorts"]) == {"3000/tcp", "80/tcp", "53/udp", "9000/tcp",
                                         "9001/tcp"}
    labels = body["Labels"]
    assert labels["team"] == "a"
    assert labels[convert.PROJECT] == "conv" and labels[convert.SERVICE] == "web"
    assert labels[convert.NUMBER] == "1" and labels[convert.ONEOFF] == "False"
    assert labels[convert.CONFIG_HASH] == planner.config_hash(p.services["web"])
    assert labels[convert.WORKING_DIR] == d
    assert labels[convert.CONFIG_FILES] == f"{d}/compose.yaml"
    assert labels[convert.DEPENDS_ON] == "db:service_healthy:true"
    assert labels[convert.IMAGE] == "sha256:abc"
    assert convert.VERSION in labels
    h = body["HostConfig"]
    assert h["Binds"] == [f"{d}/html:/usr/share/html:ro", f"{d}/token.txt:/run/secrets/token:ro",
                          f"{d}/app.conf:/etc/app.conf:ro"]
    assert h["Mounts"] == [
        {"Type": "volume", "Target": "/data", "ReadOnly": False, "Source": "conv_data"},
        {"Type": "tmpfs", "Target": "/cache", "TmpfsOptions": {"SizeBytes": 10 * 2**20}},
        {"Type": "volume", "Target": "/anon", "ReadOnly": False}]
    assert h["Tmpfs"] == {"/run": ""}
    assert h["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "", "HostPort": "5353"}],
        "9000/tcp": [{"HostIp": "", "HostPort": "9000"}],
        "9001/tcp": [{"HostIp": "", "HostPort": "9001"}]}
    assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert h["NetworkMode"] == "conv_front"
    assert h["Memory"] == 64 * 2**20 and h["MemoryReservation"] == 32 * 2**20
    assert h["NanoCpus"] == 5 * 10**8 and h["PidsLimit"] == 100
    assert h["CapAdd"] == ["NET_ADMIN"] and h["CapDrop"] == ["ALL"]
    assert h["SecurityOpt"] == ["no-new-privileges:true"]
    assert h["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                            {"Name": "nproc", "Soft": 512, "Hard": 512}]
    assert h["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert h["ExtraHosts"] == ["host.example:10.0.0.1", "other:10.0.0.2"]
    assert h["Dns"] == ["9.9.9.9"] and h["ShmSize"] == 128 * 2**20
    assert h["PidMode"] == "host" and h["IpcMode"] == "private"
    assert h["Init"] is True and h["ReadonlyRootfs"] is True and h["Privileged"] is False
    assert h["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert h["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "r"}]
    assert h["DeviceCgroupRules"] == ["c 1:3 mr"] and h["CgroupnsMode"] == "private"
    assert h["CpuPeriod"] == 100000 and h["CpuQuota"] == 50000
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"conv_front": {
        "Aliases": ["web", "www"], "IPAMConfig": {"IPv4Address": "172.30.5.10"}}}}
    assert convert.extra_networks(p, "web", p.services["web"]) == [
        ("conv_back", {"Aliases": ["web"]})]
    db = convert.create_body(p, "db", p.services["db"], 2, "")
    assert db["HostConfig"]["NetworkMode"] == "none"
    assert db["NetworkingConfig"] == {"EndpointsConfig": {}}
    assert convert.container_name(p, "db", p.services["db"], 2) == "conv-db-2"


def test_restart_from_deploy_and_bad_values(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("""
services:
  a:
    image: x
    deploy: {restart_policy: {condition: on-failure, max_attempts: 2}, replicas: 3}
  b:
    image: x
    stop_grace_period: soon
""")
    p = load(Options(workdir=str(tmp_path), environ={}))
    assert convert.create_body(p, "a", p.services["a"], 1)["HostConfig"]["RestartPolicy"] == \
        {"Name": "on-failure", "MaximumRetryCount": 2}
    assert planner.replicas(p.services["a"]) == 3
    with pytest.raises(ComposeError, match=r"services.b.stop_grace_period: invalid duration"):
        convert.create_body(p, "b", p.services["b"], 1)


def test_config_hash_stability(tmp_path: Path) -> None:
    f = tmp_path / "compose.yaml"

    def hashes(text: str) -> dict[str, str]:
        f.write_text(text)
        p = load(Options(workdir=str(tmp_path), environ={}))
        return {n: planner.config_hash(s) for n, s in p.services.items()}

    base = hashes("services:\n  a:\n    image: x\n    environment: [K=v]\n  b:\n    image: y\n")
    # same configuration, other spelling: same hash
    assert hashes("services:\n  b:\n    image: y\n  a:\n    environment: {K: v}\n"
                  "    image: x\n") == base
    # what does not change the container: depends_on, scale, profiles, build
    same = hashes("services:\n  a:\n    image: x\n    environment: [K=v]\n    scale: 2\n"
                  "    depends_on: [b]\n    build: .\n  b:\n    image: y\n")
    assert same == base
    changed = hashes("services:\n  a:\n    image: x\n    environment: [K=w]\n  b:\n"
                     "    image: y\n")
    assert changed["a"] != base["a"] and changed["b"] == base["b"]
    assert len(base["a"]) == 64


def test_levels_and_plans() -> None:
    p = _project("include")
    assert planner.levels(p) == [["backend"], ["front"]]
    assert planner.levels(p, ["backend"]) == [["backend"]]
    svc = {"image": "x"}
    digest = planner.config_hash(svc)

    def c(n: int, h: str = digest, image: str = "sha256:1", state: str = "running") -> dict:
        return {"Id": f"id{n}", "State": state, "Labels": {
            convert.NUMBER: str(n), convert.CONFIG_HASH: h, convert.IMAGE: image}}

    plan = planner.plan_service(svc, [c(1), c(2, "old"), c(3)], 2, "sha256:1")
    assert [x["Id"] for x in plan.keep] == ["id1"]
    assert [x["Id"] for x in plan.recreate] == ["id2"]
    assert [x["Id"] for x in plan.remove] == ["id3"] and plan.create == []
    plan = planner.plan_service(svc, [c(2)], 3, "sha256:2")  # the image changed
    assert [x["Id"] for x in plan.recreate] == ["id2"] and plan.create == [1, 3]
    plan = planner.plan_service(svc, [c(1, "old")], 1, "sha256:1", no_recreate=True)
    assert [x["Id"] for x in plan.keep] == ["id1"]
    plan = planner.plan_service(svc, [c(1)], 1, "sha256:1", force=True)
    assert [x["Id"] for x in plan.recreate] == ["id1"]


def test_substitute_edge_cases() -> None:
    env = {"A": "a", "E": ""}
    assert substitute("$A-${A}-$$A-${E:-d}-${E-d}-${U:-${A}}", env) == "a-a-$A-d--a"
    assert substitute("${A:?x}${U?}", {"A": "1", "U": ""}) == "1"
    with pytest.raises(Exception, match="required variable U is missing a value: why"):
        substitute("${U:?why}", env)
    with pytest.raises(ComposeError, match=r"f.yaml: services.s.command\[1\]: invalid "
                                           "interpolation format"):
        interpolate({"services": {"s": {"command": ["ok", "${"]}}}, env, "f.yaml")
    warnings: list[str] = []
    assert interpolate({"x": "$NOPE"}, env, "f", warn=warnings.append) == {"x": ""}
    assert "NOPE" in warnings[0]


def test_env_file_syntax(tmp_path: Path) -> None:
    f = tmp_path / "x.env"
    f.write_text("# c\nA=1\nexport B='single $A'\nC=\"double ${A}\\n\"\nD=x # comment\n"
                 "FROM_SHELL\nE=\n")
    assert read_env_file(str(f), {"FROM_SHELL": "s"}) == {
        "A": "1", "B": "single $A", "C": "double 1\n", "D": "x", "FROM_SHELL": "s", "E": ""}


def test_log_prefixes() -> None:
    import io

    from dockyard.compose.logs import Printer, display_name

    out = io.StringIO()
    pr = Printer(["web-1", "db-1"], color=True, out=out)
    pr.line("web-1", "hello")
    pr.line("db-1", "hi")
    pr.line("web-1", "again")
    lines = out.getvalue().splitlines()
    assert lines[0] == "\x1b[36mweb-1  | \x1b[0mhello"
    assert lines[1] == "\x1b[33mdb-1   | \x1b[0mhi"
    assert lines[2].startswith("\x1b[36m")
    out = io.StringIO()
    Printer(["a-1"], color=False, out=out).line("a-1", "x")
    assert out.getvalue() == "a-1  | x\n"
    assert display_name("proj", {"Names": ["/proj-web-2"]}) == "web-2"
    assert display_name("proj", {"Names": ["/custom"]}) == "custom"
