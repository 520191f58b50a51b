"""dockyard.client against the real dockerd peer (private socket): version
negotiation, JSON calls and errors, hijacked attach (multiplexed and TTY), stdin
half-close, progress streams with errors, chunked uploads and the save stream."""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid

import pytest

from dockyard.client import Client, collect, demux
from dockyard.client.stdcopy import STDERR, STDOUT
from dockyard.devtools.dockerd_peer import DockerdPeer
from dockyard.errors import DockyardError, NotFound

pytestmark = pytest.mark.dockerd
IMAGE = "busybox:dyk"


@pytest.fixture
def client(dockerd: DockerdPeer):
    c = Client(dockerd.host)
    made: list[str] = []
    c.made = made  # type: ignore[attr-defined]
    yield c
    for cid in made:
        try:
            c.delete(f"/containers/{cid}", params={"force": True})
        except DockyardError:
            pass
    c.close()


def create(c: Client, cmd: list[str], **config) -> str:
    name = f"dyk-client-{uuid.uuid4().hex[:8]}"
    body = {"Image": IMAGE, "Cmd": cmd, "AttachStdout": True, "AttachStderr": True, **config}
    cid = c.post("/containers/create", params={"name": name}, body=body)["Id"]
    c.made.append(cid)  # type: ignore[attr-defined]
    return cid


def attach(c: Client, cid: str, stdin: bool = False):
    return c.hijack("POST", f"/containers/{cid}/attach",
                    params={"stream": True, "stdin": stdin, "stdout": True, "stderr": True})


def test_ping_and_version_negotiation(dockerd: DockerdPeer) -> None:
    c = Client(dockerd.host)
    headers = c.ping()
    server = headers["api-version"]
    assert headers.get("ostype") == "linux"
    expected = min("1.41", server, key=lambda v: tuple(int(x) for x in v.split(".")))
    assert c.api_version == expected
    assert c.url("/info").startswith(f"/v{expected}/info")
    doc = c.get("/version")
    assert doc["ApiVersion"] == server and doc["Os"] == "linux"
    pinned = Client(dockerd.host, version="1.30")
    assert pinned.api_version == "1.30"
    assert pinned.get("/version")["ApiVersion"] == server  # /v1.30/version is served
    assert pinned.ping_headers == {}  # no negotiation with an explicit version
    c.close()
    pinned.close()


def test_keepalive_connection_is_reused(client: Client) -> None:
    client.get("/version")
    sock = client._conn.sock  # type: ignore[union-attr]
    for _ in range(5):
        client.get("/info")
    assert client._conn.sock is sock  # type: ignore[union-attr]


def test_list_images(client: Client) -> None:
    images = client.get("/images/json")
    assert any(IMAGE in (img.get("RepoTags") or []) for img in images)
    only = client.get("/images/json", params={"filters": {"reference": [IMAGE]}})
    assert [IMAGE] == [t for img in only for t in img["RepoTags"]]


def test_404_is_not_found_with_dockerds_message(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        client.get("/containers/dyk-no-such-container/json")
    assert str(info.value) == "No such container: dyk-no-such-container"
    assert info.value.status == 404
    with pytest.raises(NotFound, match="No such image"):
        client.get("/images/nope:nope/json")


def test_hijacked_attach_demuxes_stdout_and_stderr(client: Client) -> None:
    cid = create(client, ["sh", "-c", "echo hi; echo err >&2"])
    with attach(client, cid) as s:
        assert s.status in (101, 200)
        client.post(f"/containers/{cid}/start")
        pieces = list(demux(s))
    out = b"".join(d for st, d in pieces if st == STDOUT)
    err = b"".join(d for st, d in pieces if st == STDERR)
    assert (out, err) == (b"hi\n", b"err\n")
    assert client.post(f"/containers/{cid}/wait")["StatusCode"] == 0


def test_tty_container_gives_a_raw_stream(client: Client) -> None:
    cid = create(client, ["sh", "-c", "echo hi; echo err >&2"], Tty=True)
    with attach(client, cid) as s:
        client.post(f"/containers/{cid}/start")
        raw = b"".join(s)
    assert raw == b"hi\r\nerr\r\n"  # no stdcopy headers, the pty's CRLF


def test_stdin_half_close(client: Client) -> None:
    cid = create(client, ["cat"], AttachStdin=True, OpenStdin=True, StdinOnce=True)
    with attach(client, cid, stdin=True) as s:
        client.post(f"/containers/{cid}/start")
        s.sendall(b"hello\n")
        s.sendall(b"world\n")
        s.close_write()  # cat sees EOF and exits
        s.settimeout(30)
        out, err = collect(s)
    assert (out, err) == (b"hello\nworld\n", b"")
    assert client.post(f"/containers/{cid}/wait")["StatusCode"] == 0


def test_pull_error_raises(client: Client) -> None:
    with pytest.raises(DockyardError, match="127.0.0.1:9"):
        for _ in client.stream_json("POST", "/images/create",
                                    params={"fromImage": "127.0.0.1:9/dyk/nope", "tag": "x"}):
            pass


def _context(dockerfile: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_build_streams_a_chunked_context_and_raises_in_stream_errors(client: Client) -> None:
    tag = f"dyk-client-build:{uuid.uuid4().hex[:8]}"
    msgs = list(client.stream_json("POST", "/build", params={"t": tag, "rm": True},
                                   body=_context(f"FROM {IMAGE}\nRUN echo built-here\n"),
                                   headers={"Content-Type": "application/x-tar"}))
    text = "".join(m.get("stream", "") for m in msgs)
    assert "built-here" in text
    assert any("aux" in m for m in msgs)
    client.delete(f"/images/{tag}")
    seen: list = []
    with pytest.raises(DockyardError, match="returned a non-zero code: 3"):
        seen.extend(client.stream_json("POST", "/build", params={"rm": True},
                                       body=_context(f"FROM {IMAGE}\nRUN exit 3\n"),
                                       headers={"Content-Type": "application/x-tar"}))
    assert seen  # progress came before the error


def test_save_stream_and_chunked_load(client: Client) -> None:
    with client.raw_stream("GET", f"/images/{IMAGE}/get") as stream:
        assert stream.headers["content-type"] == "application/x-tar"
        data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [IMAGE]
    msgs = list(client.stream_json("POST", "/images/load", params={"quiet": False},
                                   body=io.BytesIO(data),
                                   headers={"Content-Type": "application/x-tar"}))
    assert any(f"Loaded image: {IMAGE}" in m.get("stream", "") for m in msgs)


def test_stream_on_its_own_connection_leaves_json_calls_working(client: Client) -> None:
    events = client.raw_stream("GET", "/events", params={"until": int(time.time()) + 1})
    assert client.get("/version")["Os"] == "linux"  # the shared connection is free
    events.close()
