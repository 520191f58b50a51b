"""The overlay snapshotter's bookkeeping: ids, parents, atomic creation, removal."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.image.snapshot import Snapshotter


def chain(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


def writer(name: str, data: str = "x"):
    def fill(path: str) -> None:
        Path(path, name).write_text(data)
    return fill


def test_layers_and_parents(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    s.create_layer(chain(0), None, writer("a"))
    s.create_layer(chain(1), chain(0), writer("b"))
    assert s.exists(chain(1)) and not s.exists(chain(2))
    assert Path(s.layer_path(chain(1)), "b").exists()
    assert sorted(s.list()) == sorted([chain(0), chain(1)])
    mounts = s.prepare("ctr", chain(1))
    assert mounts[0]["type"] == "overlay"
    opts = dict(o.split("=", 1) for o in mounts[0]["options"])
    lowers = opts["lowerdir"].split(":")
    assert [os.path.realpath(p) for p in lowers] == [
        os.path.realpath(s.layer_path(chain(1))), os.path.realpath(s.layer_path(chain(0)))]
    assert all(len(os.path.basename(p)) == 26 for p in lowers)
    assert s.mounts("ctr") == mounts
    lowers_dirs, upper = s.diff_dirs("ctr")
    assert lowers_dirs == [s.layer_path(chain(1)), s.layer_path(chain(0))]
    assert opts["upperdir"] == upper
    Path(upper, "new").write_bytes(b"12345")
    assert s.usage("ctr") == 5
    assert "ctr" in s.list()


def test_bind_mounts_without_parent_or_single_layer_view(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    s.create_layer(chain(0), None, writer("a"))
    assert s.prepare("c", None)[0]["type"] == "bind"
    view = s.view("v", chain(0))
    assert view == [{"type": "bind", "source": s.layer_path(chain(0)),
                     "options": ["ro", "rbind"]}]


def test_errors(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    with pytest.raises(InvalidArgument):
        s.create_layer("sha256:nothex", None, writer("a"))
    with pytest.raises(NotFound, match="no such parent snapshot"):
        s.create_layer(chain(1), chain(0), writer("a"))
    with pytest.raises(NotFound):
        s.prepare("c", chain(0))
    s.create_layer(chain(0), None, writer("a"))
    s.prepare("c", chain(0))
    with pytest.raises(Conflict, match="already exists"):
        s.prepare("c", chain(0))
    with pytest.raises(Conflict, match="in use"):
        s.remove(chain(0))
    with pytest.raises(NotFound, match="no such snapshot: nope"):
        s.remove("nope")
    with pytest.raises(InvalidArgument, match="invalid snapshot key"):
        s.view("", None)
    s.view("v", chain(0))
    with pytest.raises(InvalidArgument, match="not an active snapshot"):
        s.diff_dirs("v")


def test_remove_and_links(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    s.create_layer(chain(0), None, writer("a"))
    s.create_layer(chain(1), chain(0), writer("b"))
    s.prepare("c", chain(1))
    s.remove("c")
    s.remove(chain(1))
    s.remove(chain(0))
    assert s.list() == []
    assert os.listdir(tmp_path / "l") == []
    deadline = time.monotonic() + 10  # the trash is emptied in the background
    while os.listdir(tmp_path / "trash") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.listdir(tmp_path / "trash") == []


def test_failed_fill_leaves_nothing(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))

    def bad(path: str) -> None:
        Path(path, "half").write_text("x")
        raise InvalidArgument("bad layer")

    with pytest.raises(InvalidArgument):
        s.create_layer(chain(0), None, bad)
    assert not s.exists(chain(0))
    assert os.listdir(tmp_path / "tmp") == []


def test_concurrent_creators_one_wins(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    calls = []

    def fill(path: str) -> None:
        calls.append(path)
        time.sleep(0.2)
        Path(path, "f").write_text(str(len(calls)))

    threads = [threading.Thread(target=s.create_layer, args=(chain(0), None, fill))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1  # serialised: the others saw it done
    assert os.listdir(s.layer_path(chain(0))) == ["f"]
    assert os.listdir(tmp_path / "tmp") == []
    # a second snapshotter on the same root (another process's view) agrees
    assert Snapshotter(str(tmp_path)).list() == [chain(0)]


def test_kill_9_during_fill_leaves_no_snapshot(tmp_path: Path) -> None:
    code = f"""
import os, signal
from pathlib import Path
from dockyard.image.snapshot import Snapshotter
def fill(path):
    Path(path, "half").write_text("x")
    os.kill(os.getpid(), signal.SIGKILL)
Snapshotter({str(tmp_path)!r}).create_layer({chain(0)!r}, None, fill)
"""
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9
    assert len(os.listdir(tmp_path / "tmp")) == 1  # the dead creator's temp dir
    s = Snapshotter(str(tmp_path))
    assert not s.exists(chain(0)) and s.list() == []
    assert os.listdir(tmp_path / "tmp") == []


def test_chain_walk_from_metadata(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    parent = None
    for i in range(10):
        s.create_layer(chain(i), parent, writer(f"f{i}"))
        parent = chain(i)
    s.prepare("k", parent)
    lowers, _ = s.diff_dirs("k")
    assert [Path(p, f"f{9 - n}").exists() for n, p in enumerate(lowers)] == [True] * 10
