"""The client side of the image verbs: names, credentials, progress display."""

from __future__ import annotations

import base64
import io
import json
import os

from dockyard.client.auth import ConfigFile, registry_auth_header, registry_of
from dockyard.client.progress import display
from dockyard.client.reference import normalized, split


def test_split_and_normalized_names() -> None:
    assert split("busybox") == ("busybox", "", "")
    assert split("localhost:5000/a/b:v1") == ("localhost:5000/a/b", "v1", "")
    assert split("localhost:5000/a/b") == ("localhost:5000/a/b", "", "")
    assert split("b@sha256:abc") == ("b", "", "sha256:abc")
    assert normalized("busybox") == "docker.io/library/busybox:latest"
    assert normalized("me/app:1") == "docker.io/me/app:1"
    assert normalized("docker.io/busybox:2") == "docker.io/library/busybox:2"
    assert normalized("127.0.0.1:5000/x@sha256:abc") == "127.0.0.1:5000/x@sha256:abc"
    assert registry_of("busybox") == registry_of("me/app") == "docker.io"
    assert registry_of("localhost/x") == "localhost"
    assert registry_of("Reg.Example:443/x") == "reg.example:443"


def test_credentials_round_trip_like_docker(tmp_path) -> None:
    cfg = tmp_path / "cfg"
    os.makedirs(cfg)
    (cfg / "config.json").write_text(json.dumps({"auths": {}, "psFormat": "x"}))
    store = ConfigFile(str(cfg))
    store.set("127.0.0.1:5000", "alice", "s3:cret")
    store.set("docker.io", "bob", "pw")
    doc = json.loads((cfg / "config.json").read_text())
    assert doc["psFormat"] == "x"  # keys we do not know are kept
    assert base64.b64decode(doc["auths"]["127.0.0.1:5000"]["auth"]) == b"alice:s3:cret"
    assert "https://index.docker.io/v1/" in doc["auths"]
    assert os.stat(cfg / "config.json").st_mode & 0o777 == 0o600
    header = registry_auth_header(str(cfg), "127.0.0.1:5000/x/y:1")
    sent = json.loads(base64.urlsafe_b64decode(header))
    assert sent == {"username": "alice", "password": "s3:cret", "serveraddress": "127.0.0.1:5000"}
    hub = json.loads(base64.urlsafe_b64decode(registry_auth_header(str(cfg), "busybox")))
    assert hub["username"] == "bob"
    assert registry_auth_header(str(cfg), "other.example/x") is None
    assert store.remove("http://127.0.0.1:5000") is True
    assert store.get("127.0.0.1:5000") is None


def test_progress_display_plain_and_tty() -> None:
    msgs = [{"status": "v1: Pulling from x"},
            {"status": "Pulling fs layer", "progressDetail": {}, "id": "abc"},
            {"status": "Downloading", "progressDetail": {"current": 1, "total": 2},
             "progress": "[==>  ]", "id": "abc"},
            {"status": "Pull complete", "progressDetail": {}, "id": "abc"},
            {"status": "Pull complete", "progressDetail": {}, "id": "abc"},
            {"aux": {"Digest": "sha256:1"}},
            {"stream": "Loaded image: x\n"}]
    out = io.StringIO()
    assert display(msgs, out, tty=False) == [{"Digest": "sha256:1"}]
    assert out.getvalue() == ("v1: Pulling from x\nabc: Pulling fs layer\nabc: Pull complete\n"
                              "Loaded image: x\n")
    out = io.StringIO()
    display(msgs, out, tty=True)
    assert "\x1b[1A\x1b[2K\rabc: Downloading [==>  ]\r\x1b[1B" in out.getvalue()
    assert display(msgs, None) == [{"Digest": "sha256:1"}]
