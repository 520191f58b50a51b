"""The compose loader on the corpus in tests/data/compose: files and overrides, -f
merging, interpolation and .env, extends, include, profiles, project names, and
errors that name the file and the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.compose.errors import ComposeError
from dockyard.compose.loader import Options, load, normalize_project_name

DATA = Path(__file__).resolve().parents[1] / "data" / "compose"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Remembered validations go to a temp dir, not ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def _load(sub: str, *files: str, **kw) -> object:
    env = kw.pop("environ", {})
    return load(Options(workdir=str(DATA / sub), files=list(files), environ=env,
                        warn=lambda m: None, **kw))


def test_default_files_and_override() -> None:
    p = _load("basic")
    assert p.name == "basic"
    assert p.config_files == [str(DATA / "basic/compose.yaml"),
                              str(DATA / "basic/compose.override.yaml")]
    web = p.services["web"]
    assert web["environment"] == {"MODE": "base", "DEBUG": "1"}
    assert web["labels"] == {"tier": "front"}
    assert web["ports"] == [{"mode": "ingress", "target": 80, "protocol": "tcp",
                             "published": "8080"}]
    assert web["networks"] == {"default": None}
    assert p.networks == {"default": {"name": "basic_default"}}
    assert "version" not in p.to_dict()


def test_files_found_from_a_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text("services:\n  a:\n    image: x\n")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    p = load(Options(workdir=str(tmp_path / "deep" / "er"), environ={}))
    assert p.working_dir == str(tmp_path)
    assert list(p.services) == ["a"]


def test_no_file() -> None:
    with pytest.raises(ComposeError, match="no configuration file provided"):
        load(Options(workdir="/", environ={}))


def test_interpolation_and_dotenv() -> None:
    p = _load("interp")
    app = p.services["app"]
    assert app["image"] == "busybox:1.36"
    assert app["environment"] == {"A": "fallback", "B": "empty-default", "C": "",
                                  "D": "quoted value", "E": "$HOME literal", "F": "1.36",
                                  "G": "tag is set"}
    # the process environment wins over .env
    p = _load("interp", environ={"TAG": "9"})
    assert p.services["app"]["image"] == "busybox:9"


def test_env_file_flag(tmp_path: Path) -> None:
    env = tmp_path / "other.env"
    env.write_text("TAG=from-flag\n")
    p = _load("interp", env_files=[str(env)])
    assert p.services["app"]["image"] == "busybox:from-flag"


def test_merge_several_files() -> None:
    p = _load("merge", "base.yaml", "prod.yaml")
    assert p.name == "merged"
    web = p.services["web"]
    assert web["command"] == ["sh", "-c", "echo prod"]           # replaced
    assert web["environment"] == {"A": "1", "B": "20", "C": "30"}  # merged
    assert [x["published"] for x in web["ports"]] == ["8080", "8443"]  # appended
    assert web["dns"] == ["1.1.1.1", "8.8.8.8"]
    vols = {v["target"]: v for v in web["volumes"]}                # merged by target
    assert vols["/etc/conf"]["source"] == str(DATA / "merge/prod-conf")
    assert not vols["/etc/conf"].get("read_only")
    assert vols["/data"]["source"] == "data"
    assert web["healthcheck"] == {"test": ["CMD", "false"], "interval": "5s"}
    worker = p.services["worker"]
    assert "ports" not in worker                                    # !reset
    assert worker["labels"] == {"b": "2"}                           # !override


def test_extends_other_file_and_same_file() -> None:
    p = _load("extends")
    app = p.services["app"]
    assert app["image"] == "busybox:dyk"
    assert app["environment"] == {"FROM": "common", "LEVEL": "2"}
    assert app["volumes"][0]["source"] == str(DATA / "extends/shared")
    assert "extends" not in app
    assert p.services["child"]["cap_add"] == ["NET_ADMIN", "SYS_TIME"]


def test_include() -> None:
    p = _load("include")
    assert set(p.services) == {"front", "backend"}
    assert p.services["backend"]["volumes"][0]["source"] == str(DATA / "include/sub/data")
    assert p.networks["back"]["name"] == "include_back"


def test_profiles() -> None:
    assert list(_load("profiles").services) == ["app"]
    assert sorted(_load("profiles", profiles=["debug"]).services) == ["app", "debug", "tools"]
    assert sorted(_load("profiles", environ={"COMPOSE_PROFILES": "tools"}).services) == \
        ["app", "tools"]
    assert sorted(_load("profiles", enabled=["debug"]).services) == ["app", "debug"]


def test_project_names(tmp_path: Path) -> None:
    assert normalize_project_name("My App.v2") == "myappv2"
    assert normalize_project_name("_-x") == "x"
    assert _load("basic", project_name="given").name == "given"
    assert _load("basic", environ={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "fromenv"
    assert _load("basic", project_name="given",
                 environ={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "given"
    with pytest.raises(ComposeError, match="invalid project name"):
        _load("basic", project_name="Bad Name")
    d = tmp_path / "Weird Dir.Name"
    d.mkdir()
    (d / "compose.yaml").write_text("services:\n  a:\n    image: x\n")
    assert load(Options(workdir=str(d), environ={})).name == "weirddirname"


@pytest.mark.parametrize("name, message", [
    ("typo", "errors/typo.yaml: services.web-fe: additional properties 'imagee' not allowed"),
    ("wrong-type", ("errors/wrong-type.yaml: services.web-fe.ports[0].target: must be a "
                   "integer or string, not array")),
    ("missing-var", ("errors/missing-var.yaml: services.web.image: required variable "
                    "NEEDED_TAG is missing a value: set NEEDED_TAG first")),
    ("cycle", ("errors/cycle.yaml: services.a.depends_on: dependency cycle detected: "
              "a -> b -> c -> a")),
    ("undefined-network", ("errors/undefined-network.yaml: services.web.networks: service "
                          "\"web\" refers to undefined network front")),
    ("undefined-volume", ("errors/undefined-volume.yaml: services.web.volumes[0]: service "
                         "\"web\" refers to undefined volume data")),
    ("undefined-dependency", ("errors/undefined-dependency.yaml: services.web.depends_on: "
                             "service \"web\" depends on undefined service \"nope\"")),
    ("bad-yaml", "errors/bad-yaml.yaml:4:1: invalid YAML"),
])
def test_errors_name_file_and_path(name: str, message: str) -> None:
    with pytest.raises(ComposeError) as info:
        _load("errors", f"{name}.yaml")
    assert message in str(info.value)


def test_wrong_type_at_top_level(tmp_path: Path) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: x\n    environment: 12\n")
    with pytest.raises(ComposeError, match=r"compose.yaml: services.web.environment"):
        load(Options(workdir=str(tmp_path), environ={}))
    f.write_text("- a list\n")
    with pytest.raises(ComposeError, match="top-level object must be a mapping"):
        load(Options(workdir=str(tmp_path), environ={}))


def test_service_without_image(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    command: x\n")
    with pytest.raises(ComposeError, match="neither an image nor a build context"):
        load(Options(workdir=str(tmp_path), environ={}))


def test_short_syntax_normalisation(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("""
services:
  s:
    image: x
    ports: ["80", "127.0.0.1:8000-8001:80-81/udp", "[::1]:9000:90"]
    volumes: ["/only", "named:/n:ro,nocopy", "./rel:/r:rw"]
    depends_on: [t]
    env_file: [a.env, {path: missing.env, required: false}]
    environment: [X=1, "Y"]
    healthcheck: {disable: true}
  t:
    image: x
volumes:
  named:
    external: true
""")
    (tmp_path / "a.env").write_text("FROM_A=1\n")
    p = load(Options(workdir=str(tmp_path), environ={"Y": "from-shell"}))
    s = p.services["s"]
    assert s["ports"] == [
        {"mode": "ingress", "target": 80, "protocol": "tcp"},
        {"mode": "ingress", "target": 80, "protocol": "udp", "published": "8000",
         "host_ip": "127.0.0.1"},
        {"mode": "ingress", "target": 81, "protocol": "udp", "published": "8001",
         "host_ip": "127.0.0.1"},
        {"mode": "ingress", "target": 90, "protocol": "tcp", "published": "9000",
         "host_ip": "::1"}]
    assert s["volumes"] == [
        {"type": "volume", "target": "/only", "volume": {}},
        {"type": "volume", "source": "named", "target": "/n", "read_only": True,
         "volume": {"nocopy": True}},
        {"type": "bind", "source": str(tmp_path / "rel"), "target": "/r",
         "bind": {"create_host_path": True}}]
    assert s["depends_on"] == {"t": {"condition": "service_started", "required": True}}
    assert s["environment"] == {"FROM_A": "1", "X": "1", "Y": "from-shell"}
    assert s["healthcheck"] == {"disable": True}
    assert p.volumes["named"] == {"external": True, "name": "named"}


def test_yaml_1_2_scalars_and_any_version(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("""
version: 3.8
services:
  s:
    image: x
    ports: [22:22]
    environment:
      A: yes
      B: on
      C: 010
      D: 2001-01-01
      E: true
""")
    warnings: list[str] = []
    p = load(Options(workdir=str(tmp_path), environ={}, warn=warnings.append))
    s = p.services["s"]
    assert s["ports"] == [{"mode": "ingress", "target": 22, "protocol": "tcp",
                           "published": "22"}]
    # 010: octal to docker compose's YAML reader (yaml.v3), so to ours
    assert s["environment"] == {"A": "yes", "B": "on", "C": "8", "D": "2001-01-01",
                                "E": "true"}
    assert any("`version` is obsolete" in w for w in warnings)


def test_validation_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "compose.yaml").write_text("services:\n  s:\n    image: x\n")
    load(Options(workdir=str(tmp_path), environ={}))
    markers = list((tmp_path / "cache" / "dockyard" / "compose-valid").iterdir())
    assert len(markers) == 1
    load(Options(workdir=str(tmp_path), environ={}))
    (tmp_path / "compose.yaml").write_text("services:\n  s:\n    image: x\n    bad: 1\n")
    with pytest.raises(ComposeError, match="additional properties 'bad' not allowed"):
        load(Options(workdir=str(tmp_path), environ={}))
    assert len(list(markers[0].parent.iterdir())) == 1


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    (tmp_path / "compose.yaml").write_text("x-bomb:\n" + "\n".join("  " + ln for ln in lines)
                                           + "\nservices:\n  s:\n    image: x\n")
    with pytest.raises(ComposeError, match="compose.yaml: the document expands to more than"):
        load(Options(workdir=str(tmp_path), environ={}))
