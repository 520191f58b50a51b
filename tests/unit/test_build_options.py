"""The builder's option parsing and pure helpers: RUN --mount=type=secret, the secret
channel in the context tar (client and daemon sides), platforms, durations for
builder prune, COPY --link's recorded questions and COPY --parents with a pivot."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.build.context import SECRETS_DIR, BuildContext
from dockyard.build.copy import CopyOptions, copy_context
from dockyard.build.executor import parse_duration
from dockyard.build.layers import LayerWriter, RecordingView
from dockyard.build.parser import DockerfileError
from dockyard.build.rootview import RootView
from dockyard.build.run import parse_mount
from dockyard.build.stages import check_platform, host_platform_string
from dockyard.cli.build import context_tar, read_secrets
from dockyard.errors import DockyardError, InvalidArgument


def test_secret_mount_defaults_and_options() -> None:
    m = parse_mount("type=secret,id=tok", "/app")
    assert (m.target, m.id, m.readonly) == ("/run/secrets/tok", "tok", True)
    assert m.opts == {"required": False, "mode": 0o400, "uid": 0, "gid": 0}
    m = parse_mount("type=secret,target=/etc/key.pem,required,mode=0440,uid=1000,gid=50",
                    "/")
    assert (m.id, m.target) == ("key.pem", "/etc/key.pem")
    assert m.opts == {"required": True, "mode": 0o440, "uid": 1000, "gid": 50}
    assert m.key()["opts"]  # the options, never the content, are in the cache key
    with pytest.raises(InvalidArgument):
        parse_mount("type=secret,id=x,mode=rw", "/")


def _tar(files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_the_secret_channel_is_taken_out_of_the_context(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "ctx" / "a.txt").write_text("a")
    out = io.BytesIO()
    context_tar(str(tmp_path / "ctx"), "", out, {"tok": b"s3cret", "a/b": b"x"})
    out.seek(0)
    ctx = BuildContext.from_stream(out, str(tmp_path))
    try:
        assert ctx.secrets == {"tok": b"s3cret", "a/b": b"x"}
        assert not any(p.startswith(SECRETS_DIR) for p in ctx.entries)
        assert {e.path for e in ctx.children("")} == {"Dockerfile", "a.txt"}
    finally:
        ctx.close()
    bad = _tar({f"{SECRETS_DIR}/not-hex": b"x"}, (SECRETS_DIR,))
    with pytest.raises(InvalidArgument):
        BuildContext.from_stream(bad, str(tmp_path))
    (tmp_path / "ctx" / SECRETS_DIR).mkdir()
    with pytest.raises(DockyardError, match="reserved"):
        context_tar(str(tmp_path / "ctx"), "", io.BytesIO(), {})


def test_read_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "s.txt"
    f.write_bytes(b"file-value")
    monkeypatch.setenv("MYTOK", "env-value")
    monkeypatch.setenv("ALONE", "alone-value")
    got = read_secrets([f"id=a,src={f}", "id=b,env=MYTOK", "id=ALONE",
                        f"type=file,id=c,source={f}", "type=env,id=d,src=MYTOK"])
    assert got == {"a": b"file-value", "b": b"env-value", "ALONE": b"alone-value",
                   "c": b"file-value", "d": b"env-value"}
    with pytest.raises(DockyardError):
        read_secrets(["id=x,env=NOT_SET_ANYWHERE_1234"])
    with pytest.raises(DockyardError):
        read_secrets([f"id=x,src={tmp_path / 'missing'}"])


def test_platforms() -> None:
    host = host_platform_string()
    check_platform(host)
    check_platform(host.split("/")[0])
    check_platform(f"{host},{host}")
    other = "linux/arm64" if "arm64" not in host else "linux/amd64"
    for bad in (other, "windows/" + host.split("/")[1], "linux/s390x", f"{host},{other}"):
        with pytest.raises(DockerfileError, match=f"dockyard builds for {host} only"):
            check_platform(bad)


def test_durations() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90 and parse_duration("500ms") == 0.5
    assert parse_duration("3600") == 3600
    for bad in ("soon", "1x", "h1"):
        with pytest.raises(InvalidArgument):
            parse_duration(bad)


def _ctx(tmp_path: Path, files: dict[str, bytes]) -> BuildContext:
    return BuildContext.from_stream(_tar(files), str(tmp_path))


def test_recording_view_replays_the_questions(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "srv").mkdir(parents=True)
    os.utime(a / "srv", (1000, 1000))
    os.utime(b / "srv", (1000, 1000))
    (b / "other").write_text("x")  # not asked about: the answers stay the same
    ctx = _ctx(tmp_path, {"f.txt": b"f"})
    rec = RecordingView(RootView([str(a)]))
    w = LayerWriter(io.BytesIO(), rec)  # type: ignore[arg-type]
    copy_context(ctx, ["f.txt"], "/srv/app/", "/", w, CopyOptions(), str(tmp_path))
    assert rec.asked
    assert RecordingView.replay(RootView([str(b)]), rec.asked) == rec.answers
    os.utime(b / "srv", (2000, 2000))  # /srv's metadata goes into the layer
    assert RecordingView.replay(RootView([str(b)]), rec.asked) != rec.answers
    ctx.close()


def test_copy_parents_with_a_pivot(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"base/keep/k.txt": b"k", "src/a/m.txt": b"a", "src/b/m.txt": b"b"})
    out = io.BytesIO()
    w = LayerWriter(out, RootView([]))
    copy_context(ctx, ["./base/./keep/k.txt", "src/*/m.txt"], "/out/", "/", w,
                 CopyOptions(parents=True), str(tmp_path))
    w.close()
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        names = {n.rstrip("/") for n in tar.getnames()}
    assert {"out/keep/k.txt", "out/src/a/m.txt", "out/src/b/m.txt"} <= names
    assert "out/base/keep/k.txt" not in names
    ctx.close()
