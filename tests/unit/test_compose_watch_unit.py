"""develop.watch without a daemon: which paths a trigger takes (include, ignore,
.dockerignore, editors' temporary files), where they go in the container, the
debouncing of change batches, the rules' validation and the sync tar."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dockyard.compose.errors import ComposeError
from dockyard.compose.model import Project
from dockyard.compose.watch import (
    Debouncer,
    PathMatcher,
    go_quote,
    load_rules,
    watch_roots,
    write_tar,
)


def _project(tmp: Path, **services: dict) -> Project:
    return Project(name="p", working_dir=str(tmp), config_files=[], services=services)


def _rule(tmp: Path, trigger: dict, build: dict | None = None):
    svc = {"develop": {"watch": [trigger]}}
    if build is not None:
        svc["build"] = build
    return load_rules(_project(tmp, web=svc), [])[0]


def test_matcher_rooted_patterns(tmp_path: Path) -> None:
    m = PathMatcher(str(tmp_path), ["*.tmp", "build", "!build/keep", "/abs/x"])
    assert m.matches(f"{tmp_path}/a.tmp")
    assert not m.matches(f"{tmp_path}/sub/a.tmp")  # `*` stays in its directory
    assert m.matches(f"{tmp_path}/build/out.o")     # a directory takes its contents
    assert not m.matches(f"{tmp_path}/build/keep")
    assert m.matches(f"{tmp_path}/abs/x")           # a leading / is the root's
    assert not m.matches("/elsewhere/a.tmp")        # outside the root: never
    assert not m.matches(str(tmp_path))


def test_matcher_star_keeps_only_exceptions(tmp_path: Path) -> None:
    # compose: a .dockerignore of "*" + "!src" must not hide every change from watch
    m = PathMatcher(str(tmp_path), ["*", "!src"])
    assert not m.matches(f"{tmp_path}/src/a.py")
    assert not m.matches(f"{tmp_path}/other")


def test_rule_defaults_ignore_editor_files_and_git(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    r = _rule(tmp_path, {"path": "./src", "action": "sync", "target": "/app"})
    base = f"{tmp_path}/src"
    assert r.container_path(f"{base}/main.py") == "/app/main.py"
    assert r.container_path(f"{base}/deep/er/x.txt") == "/app/deep/er/x.txt"
    for name in ("main.py~", ".main.py.swp", "4913", ".#main.py", "#main.py#",
                 ".git/HEAD", "sub/.git/config", ".idea/workspace.xml", "a___jb_tmp___"):
        assert r.container_path(f"{base}/{name}") is None, name
    assert r.container_path(base) is None            # the watched directory itself
    assert r.container_path(f"{tmp_path}/other") is None


def test_rule_ignore_include_and_dockerignore(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / ".dockerignore").write_text("# comment\nsrc/*.log\n")
    r = _rule(tmp_path, {"path": "./ctx/src", "action": "sync", "target": "/app",
                         "ignore": ["cache/", "*.tmp"], "include": ["*.py", "*.log", "cache"]},
              build={"context": str(ctx)})
    base = f"{ctx}/src"
    assert r.container_path(f"{base}/a.py") == "/app/a.py"
    assert r.container_path(f"{base}/a.txt") is None     # not included
    assert r.container_path(f"{base}/a.log") is None     # .dockerignore
    assert r.container_path(f"{base}/cache/x.py") is None  # the trigger's ignore
    # <Dockerfile>.dockerignore wins over .dockerignore
    (ctx / "Dockerfile.dockerignore").write_text("src/a.py\n")
    r = _rule(tmp_path, {"path": "./ctx/src", "action": "sync", "target": "/app"},
              build={"context": str(ctx), "dockerfile": "Dockerfile"})
    assert r.container_path(f"{base}/a.py") is None
    assert r.container_path(f"{base}/a.log") == "/app/a.log"


def test_rule_string_ignore_and_file_trigger(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text("{}")
    r = _rule(tmp_path, {"path": "package.json", "action": "rebuild"},
              build={"context": str(tmp_path)})
    assert r.container_path(f"{tmp_path}/package.json") == ""  # no target: rebuild
    r = _rule(tmp_path, {"path": ".", "action": "sync", "target": "/w", "ignore": "*.md"})
    assert r.container_path(f"{tmp_path}/README.md") is None
    assert r.container_path(f"{tmp_path}/x/y") == "/w/x/y"


@pytest.mark.parametrize("trigger, build, message", [
    ({"path": ".", "action": "sync"}, None, "target is required for non-rebuild actions"),
    ({"path": ".", "action": "rebuild"}, None,
     "can't watch service \"web\" with action rebuild without a build context"),
    ({"path": ".", "action": "sync+exec", "target": "/a"}, None, "without a command"),
    ({"path": ".", "action": "copy", "target": "/a"}, None, "invalid watch action"),
])
def test_rule_errors(tmp_path: Path, trigger: dict, build, message: str) -> None:
    with pytest.raises(ComposeError, match=message.replace("(", r"\(")):
        _rule(tmp_path, trigger, build)


def test_no_develop_no_rules(tmp_path: Path) -> None:
    assert load_rules(_project(tmp_path, web={"image": "x"}), []) == []


def test_selected_services_take_their_dependencies(tmp_path: Path) -> None:
    watch = {"develop": {"watch": [{"path": ".", "action": "restart"}]}}
    project = _project(tmp_path, web={"depends_on": {"db": {}}, **watch}, db=dict(watch),
                       other=dict(watch))
    assert sorted(r.service for r in load_rules(project, ["web"])) == ["db", "web"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_debouncer_waits_for_quiet() -> None:
    clock = Clock()
    d = Debouncer(0.5, clock)
    assert d.timeout() is None and d.flush() == []
    d.add(["/a", "/b"])
    clock.now += 0.3
    assert d.flush() == []
    d.add(["/a", "/c"])  # a change inside the window restarts it
    assert d.timeout() == pytest.approx(0.5)
    clock.now += 0.4
    assert d.flush() == []
    clock.now += 0.1
    assert d.timeout() == 0
    assert d.flush() == ["/a", "/b", "/c"]  # each path once, in arrival order
    assert d.flush() == [] and d.timeout() is None


def test_go_quote() -> None:
    assert go_quote(["web"]) == '["web"]'
    assert go_quote(["a", 'b"c']) == '["a" "b\\"c"]'


def test_watch_roots(tmp_path: Path) -> None:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "ver").write_text("1")
    watch = [{"path": "./src", "action": "sync", "target": "/a"},
             {"path": "./src/sub", "action": "sync", "target": "/b"},
             {"path": "./ver", "action": "restart"}]
    project = _project(tmp_path, web={"develop": {"watch": watch}})
    # a nested trigger folds into its parent; a file's directory is watched alone
    assert watch_roots(load_rules(project, []), project) == ([f"{tmp_path}/src"],
                                                             [str(tmp_path)])
    watch.append({"path": "./later/x", "action": "restart"})
    # a missing path is watched through what exists (recursively: it may appear deep)
    assert watch_roots(load_rules(project, []), project) == ([str(tmp_path)], [])


def test_sync_tar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d" / ".git").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "d" / "b.txt").write_text("B")
    (src / "d" / "b.txt~").write_text("tmp")
    (src / "d" / ".git" / "HEAD").write_text("ref")
    r = _rule(tmp_path, {"path": "./src", "action": "sync", "target": "/app"})
    buf = io.BytesIO()
    write_tar(buf, [(str(src / "a.txt"), "/app/a.txt", r), (str(src / "d"), "/app/d", r),
                    (str(src / "gone"), "/app/gone", r)])
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        names = sorted(t.getnames())
        assert names == ["app/a.txt", "app/d", "app/d/b.txt"]
        assert t.extractfile("app/d/b.txt").read() == b"B"
