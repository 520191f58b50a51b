"""Client pieces that need no daemon: host parsing, query strings, JSON progress
streams and their errors, the HTTP error mapping, and a daemon that is not there."""

from __future__ import annotations

import pytest

from dockyard.client.api import Client, check_message, iter_json, query
from dockyard.client.transport import (
    DEFAULT_HOST,
    CannotConnect,
    TLSConfig,
    error_for,
    parse_host,
    resolve_host,
)
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound


def test_parse_host() -> None:
    e = parse_host("unix:///run/x.sock")
    assert (e.scheme, e.path) == ("unix", "/run/x.sock")
    e = parse_host("tcp://10.0.0.1:1234")
    assert (e.scheme, e.hostname, e.port) == ("tcp", "10.0.0.1", 1234)
    assert parse_host("tcp://example.com").port == 2375
    assert parse_host("tcp://example.com", tls=True).port == 2376
    e = parse_host("tcp://[::1]:99")
    assert (e.hostname, e.port) == ("::1", 99)
    for bad in ("/run/x.sock", "ssh://h", "tcp://h:99999", "unix://"):
        with pytest.raises(InvalidArgument):
            parse_host(bad)


def test_host_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    assert resolve_host(None) == DEFAULT_HOST == "unix:///run/dockyard/dockyard.sock"
    monkeypatch.setenv("DOCKYARD_HOST", "unix:///tmp/a.sock")
    assert resolve_host(None) == "unix:///tmp/a.sock"
    assert resolve_host("tcp://h:1") == "tcp://h:1"
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/docker.sock")  # not ours: ignored
    monkeypatch.delenv("DOCKYARD_HOST")
    assert Client().host == DEFAULT_HOST


def test_tls_from_env(tmp_path) -> None:
    assert TLSConfig.from_env({}) is None
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "cert.pem").write_text("x")
    tls = TLSConfig.from_env({"DOCKYARD_TLS_VERIFY": "1", "DOCKYARD_CERT_PATH": str(tmp_path)})
    assert tls is not None and tls.verify
    assert tls.ca_cert == str(tmp_path / "ca.pem") and tls.client_key is None
    tls = TLSConfig.from_env({"DOCKYARD_TLS": "1", "DOCKYARD_CERT_PATH": str(tmp_path)})
    assert tls is not None and not tls.verify


def test_query() -> None:
    assert query(None) == ""
    q = query({"all": True, "force": False, "skip": None, "filters": {"label": ["a=b"]},
               "tag": ["x", "y"], "t": 5})
    assert q == ("all=1&force=0&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&tag=x&tag=y&t=5")


def test_error_mapping() -> None:
    assert type(error_for(404, "no such container: x")) is NotFound
    assert type(error_for(409, "in use")) is Conflict
    assert type(error_for(400, "bad")) is InvalidArgument
    e = error_for(500, "boom")
    assert type(e) is DockyardError and e.status == 500 and str(e) == "boom"
    assert error_for(401, "auth").status == 401


def test_iter_json_across_chunk_boundaries() -> None:
    text = b'{"status":"a"}\n{"status":"\xc3\xa9"}{"id":"x", "progress": 1}\r\n'
    chunks = [text[i:i + 1] for i in range(len(text))]
    assert list(iter_json(chunks)) == [{"status": "a"}, {"status": "é"},
                                       {"id": "x", "progress": 1}]
    with pytest.raises(DockyardError, match="invalid JSON"):
        list(iter_json([b'{"status": "a"}\n{"trunc']))


def test_check_message() -> None:
    check_message({"status": "Pulling"})
    with pytest.raises(DockyardError, match="manifest unknown"):
        check_message({"errorDetail": {"message": "manifest unknown"}, "error": "x"})
    with pytest.raises(NotFound):
        check_message({"errorDetail": {"message": "not found", "code": 404}})
    with pytest.raises(DockyardError, match="plain"):
        check_message({"error": "plain"})


def test_missing_socket_has_dockers_wording(tmp_path) -> None:
    host = f"unix://{tmp_path}/none.sock"
    with pytest.raises(CannotConnect) as info:
        Client(host).get("/version")
    assert str(info.value) == (f"Cannot connect to the Dockyard daemon at {host}. "
                               "Is the dockyard daemon running?")
    with pytest.raises(CannotConnect):
        Client(host).hijack("POST", "/containers/x/attach")
