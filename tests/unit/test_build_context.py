""".dockerignore patterns, Go's filepath.Match, the build context reader (limits, `..`,
symlinks) and the content-addressed cache keys."""

from __future__ import annotations

import io
import tarfile

import pytest

from dockyard.build import cache, dockerignore
from dockyard.build.context import BuildContext
from dockyard.build.match import BadPattern, match
from dockyard.errors import InvalidArgument, NotFound

# -- Go's filepath.Match ---------------------------------------------------------------------


@pytest.mark.parametrize("pattern,name,want", [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False), ("*.txt", "d/a.txt", False),
    ("a?c", "abc", True), ("a?c", "a/c", False), ("[abc]", "b", True), ("[^abc]", "b", False),
    ("[a-c]x", "bx", True), ("[^a-c]x", "dx", True), ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False), ("[\\]]", "]", True), ("[]a]", "]", None),
    ("*x", "xxx", True), ("a[", "a[", None), ("[", "a", None), ("a\\", "a", None),
    ("[x-]", "x", None), ("[^/]", "/", False),
])
def test_go_match(pattern: str, name: str, want: bool | None) -> None:
    if want is None:
        with pytest.raises(BadPattern):
            match(pattern, name)
    else:
        assert match(pattern, name) is want


# -- .dockerignore --------------------------------------------------------------------------------

IGNORE = """
# comment
node_modules
*.log
!important.log
**/__pycache__
docs/**/*.md
!docs/README.md
/abs/
./dot/../cleaned
build*
!build/keep
"""


@pytest.mark.parametrize("path,ignored", [
    ("node_modules", True), ("node_modules/a/b.js", True), ("x.log", True),
    ("sub/x.log", False), ("important.log", False), ("__pycache__/a.pyc", True),
    ("a/b/__pycache__/c.pyc", True), ("docs/a/b/c.md", True), ("docs/c.md", True),
    ("docs/README.md", False), ("docs/x.txt", False), ("abs", True), ("abs/x", True),
    ("cleaned", True), ("build", True), ("build/x", True), ("build/keep", False),
    ("builder.py", True), ("src/main.py", False), ("# comment", False),
])
def test_dockerignore(path: str, ignored: bool) -> None:
    m = dockerignore.Matcher(dockerignore.read(IGNORE))
    assert m.ignored(path) is ignored


def test_dockerignore_exceptions_reach_into_ignored_dirs() -> None:
    m = dockerignore.Matcher(dockerignore.read("build*\n!build/keep\n"))
    assert m.may_hold_exceptions("build")
    assert not dockerignore.Matcher(["a"]).may_hold_exceptions("a")


def test_dockerignore_read_cleans() -> None:
    assert dockerignore.read("/a/b/\n a/../c \n\n#x\n! d\n") == ["a/b", "c", "!d"]


# -- the context -----------------------------------------------------------------------------------

def _tar(members: list[tuple[str, str, bytes | str]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tar.addfile(info)
    buf.seek(0)
    return buf


def test_context_index_and_lookup(tmp_path) -> None:
    ctx = BuildContext.from_stream(_tar([
        ("Dockerfile", "file", b"FROM a\n"), ("src/a.py", "file", b"print(1)\n"),
        ("src/b.py", "file", b"x"), ("src/sub/c.txt", "file", b"c"),
        ("link", "symlink", "/etc/passwd"), ("srclink", "symlink", "src"),
        ("hard", "hardlink", "src/b.py")]), str(tmp_path))
    try:
        assert ctx.read_file(ctx.entries["src/a.py"]) == b"print(1)\n"
        assert ctx.entries["hard"].digest == ctx.entries["src/b.py"].digest
        assert [e.path for e in ctx.lookup("src/*.py")] == ["src/a.py", "src/b.py"]
        assert ctx.lookup("link")[0].kind == "symlink"  # copied as a link, not followed
        assert ctx.lookup("srclink/a.py")[0].path == "src/a.py"  # parents resolved inside
        assert ctx.lookup("./src/../src/a.py")[0].path == "src/a.py"
        with pytest.raises(InvalidArgument, match="outside the build context"):
            ctx.lookup("../etc/passwd")
        with pytest.raises(InvalidArgument, match="outside the build context"):
            ctx.lookup("src/../../x")
        with pytest.raises(NotFound):
            ctx.lookup("missing")
        with pytest.raises(NotFound):
            ctx.lookup("*.nope")
    finally:
        ctx.close()


def test_context_symlink_escape_stays_inside(tmp_path) -> None:
    ctx = BuildContext.from_stream(_tar([("up", "symlink", "../../.."),
                                         ("etc/passwd", "file", b"inside")]), str(tmp_path))
    try:
        # `up` points above the root: resolving it stays at the context root
        assert ctx.lookup("up/etc/passwd")[0].path == "etc/passwd"
    finally:
        ctx.close()


def test_context_refuses_dotdot_and_paths_below_links(tmp_path) -> None:
    with pytest.raises(InvalidArgument, match=r"\.\."):
        BuildContext.from_stream(_tar([("a/../../x", "file", b"x")]), str(tmp_path))
    with pytest.raises(InvalidArgument, match="below a non-directory"):
        BuildContext.from_stream(_tar([("l", "symlink", "/etc"), ("l/passwd", "file", b"x")]),
                                 str(tmp_path))


def test_context_gzip(tmp_path) -> None:
    import gzip

    raw = _tar([("f", "file", b"data")]).getvalue()
    ctx = BuildContext.from_stream(io.BytesIO(gzip.compress(raw)), str(tmp_path))
    try:
        assert ctx.read_file(ctx.entries["f"]) == b"data"
    finally:
        ctx.close()


def test_hidden_dockerfile_and_dockerignore(tmp_path) -> None:
    ctx = BuildContext.from_stream(_tar([
        ("Dockerfile", "file", b"FROM a"), (".dockerignore", "file", b"Dockerfile\n.dockerignore\n"),
        ("a", "file", b"a")]), str(tmp_path))
    try:
        ctx.hide_ignored("Dockerfile")
        assert [e.path for e in ctx.children("")] == ["a"]
        with pytest.raises(NotFound):
            ctx.lookup("Dockerfile")
    finally:
        ctx.close()


def test_checksums_ignore_mtime_and_owner(tmp_path) -> None:
    def entry(mtime: int, uid: int, data: bytes):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("f")
            info.size, info.mtime, info.uid = len(data), mtime, uid
            tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        ctx = BuildContext.from_stream(buf, str(tmp_path))
        try:
            return ctx.entries["f"].checksum()
        finally:
            ctx.close()

    assert entry(1, 0, b"x") == entry(2, 1000, b"x")
    assert entry(1, 0, b"x") != entry(1, 0, b"y")


# -- cache keys ---------------------------------------------------------------------------------------

def test_cache_keys() -> None:
    base = cache.step_key("sha256:p", {"run": ["a"]}, {"A": "1"}, ["s:1"])
    assert base == cache.step_key("sha256:p", {"run": ["a"]}, {"A": "1"}, ["s:1"])
    assert base != cache.step_key("sha256:q", {"run": ["a"]}, {"A": "1"}, ["s:1"])
    assert base != cache.step_key("sha256:p", {"run": ["b"]}, {"A": "1"}, ["s:1"])
    assert base != cache.step_key("sha256:p", {"run": ["a"]}, {"A": "2"}, ["s:1"])
    assert base != cache.step_key("sha256:p", {"run": ["a"]}, {"A": "1"}, ["s:2"])
    # config-only instructions on scratch differ by their whole config (CVE-2024-24557)
    a = cache.step_key("scratch", {"text": "HEALTHCHECK NONE", "config": {"Healthcheck":
                                                                         {"Test": ["NONE"]}}}, {})
    b = cache.step_key("scratch", {"text": "ONBUILD RUN x", "config": {"OnBuild": ["RUN x"]}},
                       {})
    assert a != b


def test_cache_store_survives_reopen(tmp_path) -> None:
    c = cache.BuildCache(str(tmp_path))
    c.put("k1", "sha256:img")
    c.close()
    c = cache.BuildCache(str(tmp_path))
    try:
        assert c.get("k1", lambda i: True) == "sha256:img"
        assert c.get("k1", lambda i: False) is None  # image gone: a miss, record dropped
        assert c.entries() == []
        c.put("k2", "sha256:x")
        assert [e["key"] for e in c.prune()] == ["k2"]
    finally:
        c.close()
