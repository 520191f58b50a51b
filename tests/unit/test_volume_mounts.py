"""Issue 6 without root: mount spec parsing and validation (daemon and CLI side), the
volume store and service (names, filters, references, prune), copy-up, cp's path
rules, Go's file mode bits, and openat2 containment."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from dockyard.cli import cp
from dockyard.cli.mountflags import parse_mount as cli_mount
from dockyard.cli.mountflags import split_volumes
from dockyard.cli.runflags import FlagError
from dockyard.engine import archive, mounts
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.linux.openat2 import fd_path, open_in_root
from dockyard.tarcopy import renamer
from dockyard.volume.copyup import copy_up
from dockyard.volume.service import VolumeService
from dockyard.volume.store import is_mount


def _no_containers(ref: str):
    raise InvalidArgument(f"No such container: {ref}")


# -- Binds ---------------------------------------------------------------------------------

def test_parse_bind_forms() -> None:
    p = mounts.parse_bind("data:/srv/data:ro")
    assert (p["Type"], p["Name"], p["Destination"], p["RW"], p["Mode"], p["CopyData"]) == \
        ("volume", "data", "/srv/data", False, "ro", True)
    p = mounts.parse_bind("/host/dir:/in//x/../y")
    assert (p["Type"], p["Source"], p["Destination"], p["RW"], p["Propagation"]) == \
        ("bind", "/host/dir", "/in/y", True, "rslave")
    p = mounts.parse_bind("/anon")
    assert p["Type"] == "volume" and p["Name"] == "" and p["Anonymous"]
    assert mounts.parse_bind("named:/x")["Mode"] == "z"  # dockerd's default for -v name:
    assert mounts.parse_bind("v1:/x:nocopy")["CopyData"] is False
    assert mounts.parse_bind("/h:/x:rshared,ro")["Propagation"] == "rshared"


@pytest.mark.parametrize(("spec", "message"), [
    ("v1:rel", "invalid mount path: 'rel' mount path must be absolute"),
    ("v1:/x:bogus", "invalid mode: bogus"),
    ("v1:/x:ro,rw", "invalid mode: ro,rw"),
    ("v1:/x:rshared", "field BindOptions must not be specified"),  # binds only
    ("/h:/x:nocopy", "invalid mode: nocopy"),
    ("a/b:/x", '"a/b" includes invalid characters for a local volume name'),
    ("/x:ro", "invalid volume specification: '/x:ro'"),
    ("a:b:c:d", "invalid volume specification"),
    ("v1:/", "destination can't be '/'"),
])
def test_parse_bind_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        mounts.parse_bind(spec)


# -- Mounts ----------------------------------------------------------------------------------

def test_parse_mount_kinds(tmp_path: Path) -> None:
    p = mounts.parse_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/b",
                            "ReadOnly": True, "BindOptions": {"Propagation": "rslave"}})
    assert p["Type"] == "bind" and not p["RW"] and p["Propagation"] == "rslave"
    p = mounts.parse_mount({"Type": "volume", "Source": "nv", "Target": "/v",
                            "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}}})
    assert p["CopyData"] is False and p["VolumeLabels"] == {"a": "b"}
    p = mounts.parse_mount({"Type": "tmpfs", "Target": "/t",
                            "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}})
    assert "size=1024k" in p["Tmpfs"] and "mode=700" in p["Tmpfs"]


@pytest.mark.parametrize(("m", "message"), [
    ({"Type": "bind", "Source": "/nonexistent-dyk-src", "Target": "/x"},
     ('invalid mount config for type "bind": bind source path does not exist: '
      "/nonexistent-dyk-src")),
    ({"Type": "bind", "Target": "/x"}, "field Source must not be empty"),
    ({"Type": "bind", "Source": "rel", "Target": "/x"}, "'rel' mount path must be absolute"),
    ({"Type": "volume", "Source": "v", "Target": ""}, "field Target must not be empty"),
    ({"Type": "volume", "Target": "/x", "BindOptions": {"Propagation": "shared"}},
     "field BindOptions must not be specified"),
    ({"Type": "tmpfs", "Source": "x", "Target": "/x"}, "field Source must not be specified"),
    ({"Type": "npipe", "Target": "/x"}, "mount type unknown"),
])
def test_parse_mount_errors(m: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        mounts.parse_mount(m)
    assert message in str(e.value)


def test_bind_create_mountpoint_allows_missing_source() -> None:
    p = mounts.parse_mount({"Type": "bind", "Source": "/nonexistent-dyk-2", "Target": "/x",
                            "BindOptions": {"CreateMountpoint": True}})
    assert p["CreateSource"] is True


def test_parse_all_orders_and_overrides() -> None:
    pts = mounts.parse({"Volumes": {"/data": {}, "/logs": {}}},
                       {"Binds": ["named:/data"], "Mounts": [{"Type": "tmpfs",
                                                              "Target": "/logs/t"}]},
                       _no_containers)
    by = {p["Destination"]: p for p in pts}
    assert by["/data"]["Name"] == "named"  # the bind wins over the image's VOLUME
    assert by["/logs"]["Anonymous"]
    assert [p["Destination"] for p in pts] == ["/data", "/logs", "/logs/t"]  # parents first
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        mounts.parse({}, {"Binds": ["a1:/x"], "Mounts": [{"Type": "volume",
                                                          "Target": "/x"}]}, _no_containers)
    with pytest.raises(InvalidArgument, match=r"contains '\.\.'"):
        mounts.parse({"Volumes": {"/a/../etc": {}}}, {}, _no_containers)
    with pytest.raises(InvalidArgument, match="No such container: gone"):
        mounts.parse({}, {"VolumesFrom": ["gone"]}, _no_containers)
    with pytest.raises(InvalidArgument, match="invalid mode for volumes-from: x"):
        mounts.parse({}, {"VolumesFrom": ["c:x"]}, _no_containers)


def test_volumes_from_copies_with_mode() -> None:
    theirs = [{"Type": "volume", "Name": "v", "Source": "/s", "Destination": "/d",
               "Driver": "local", "Mode": "", "RW": True, "Propagation": "",
               "CopyData": True}, {"Type": "tmpfs", "Destination": "/t", "RW": True}]
    pts = mounts.parse({}, {"VolumesFrom": ["other:ro"]}, lambda ref: ("id", theirs))
    assert len(pts) == 1 and pts[0]["RW"] is False and pts[0]["CopyData"] is False


def test_oci_mounts_and_rootfs_propagation() -> None:
    pts = [mounts.parse_bind("/h:/a:ro,rshared"), {**mounts.parse_bind("v1:/b"),
                                                  "Source": "/vols/v1/_data"}]
    oci, prop = mounts.oci_mounts(pts)
    assert oci[0] == {"destination": "/a", "type": "bind", "source": "/h",
                      "options": ["rbind", "rshared", "ro"]}
    assert oci[1]["options"] == ["rbind", "rslave"] and prop == "rshared"
    view = mounts.inspect_view(pts)
    assert set(view[0]) == {"Type", "Source", "Destination", "Mode", "RW", "Propagation"}


# -- the CLI's flags ---------------------------------------------------------------------------

def test_cli_volume_split_and_mount_flag() -> None:
    assert split_volumes(["/anon", "n:/x:ro", "/h:/y"]) == (["n:/x:ro", "/h:/y"],
                                                            {"/anon": {}})
    m = cli_mount("type=volume,src=v,dst=/x,volume-nocopy,volume-label=a=b,"
                  "volume-opt=type=tmpfs,readonly")
    assert m == {"Type": "volume", "Source": "v", "Target": "/x", "ReadOnly": True,
                 "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"},
                                   "DriverConfig": {"Options": {"type": "tmpfs"}}}}
    m = cli_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770")
    assert m["TmpfsOptions"] == {"SizeBytes": 64 << 20, "Mode": 0o1770}
    assert cli_mount("type=bind,src=/a,dst=/b,bind-propagation=rslave")["BindOptions"] == \
        {"Propagation": "rslave"}
    for bad, msg in (("type=volume,dst=/x,bind-propagation=shared", "cannot mix 'bind-*'"),
                     ("src=/a", "target is required"), ("type=bind,bogus=1,dst=/x",
                                                        "unexpected key 'bogus'"),
                     ("type=bind,dst=/x,what", "invalid field 'what'")):
        with pytest.raises(FlagError, match=re.escape(msg)):
            cli_mount(bad)


# -- the volume service --------------------------------------------------------------------------

def test_volume_service_lifecycle(tmp_path: Path) -> None:
    svc = VolumeService(str(tmp_path))
    v = svc.create("alpha", labels={"team": "a"})
    assert v.mountpoint == str(tmp_path / "volumes" / "alpha" / "_data")
    assert svc.create("alpha").name == "alpha"  # idempotent, as docker
    anon = svc.create()
    assert len(anon.name) == 64 and anon.anonymous
    with pytest.raises(InvalidArgument, match="includes invalid characters"):
        svc.create("-bad")
    with pytest.raises(InvalidArgument, match='create opts: invalid option: "foo"'):
        svc.create("opts", options={"foo": "1"})
    with pytest.raises(InvalidArgument, match='missing required option: "device"'):
        svc.create("opts", options={"type": "tmpfs"})
    svc.ref("alpha", "c1")
    assert [x.name for x in svc.list({"dangling": ["true"]})] == [anon.name]
    assert [x.name for x in svc.list({"label": ["team=a"]})] == ["alpha"]
    assert [x.name for x in svc.list({"name": ["alp"]})] == ["alpha"]
    with pytest.raises(InvalidArgument, match="Invalid filter 'nope'"):
        svc.list({"nope": ["x"]})
    with pytest.raises(Conflict, match=r"remove alpha: volume is in use - \[c1\]"):
        svc.remove("alpha")
    deleted, _ = svc.prune()
    assert deleted == [anon.name]  # anonymous only by default
    svc.create("beta")
    deleted, _ = svc.prune(all_volumes=True)
    assert deleted == ["beta"]  # alpha is in use
    svc.unref("alpha", "c1")
    svc.remove("alpha")
    with pytest.raises(NotFound, match="get alpha: no such volume"):
        svc.get("alpha")
    svc.remove("alpha", force=True)  # force: a missing volume is no error
    assert os.listdir(tmp_path / "volumes") == []


def test_half_created_volume_is_swept(tmp_path: Path) -> None:
    (tmp_path / "volumes" / "half" / "_data").mkdir(parents=True)
    (tmp_path / "volumes" / ".removing-x-1234").mkdir()
    svc = VolumeService(str(tmp_path))
    assert svc.list() == [] and os.listdir(tmp_path / "volumes") == []
    assert not is_mount(str(tmp_path))


# -- copy-up ---------------------------------------------------------------------------------------

def test_copy_up_copies_modes_links_and_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "f").write_text("content")
    os.chmod(root / "data" / "f", 0o604)
    os.link(root / "data" / "f", root / "data" / "h")
    os.symlink("/etc/passwd", root / "data" / "abs")
    os.chmod(root / "data", 0o751)
    os.symlink("/", root / "escape")  # the VOLUME path is a symlink to "/"
    vol = tmp_path / "vol"
    vol.mkdir()
    assert copy_up(str(root), "/data", str(vol))
    assert (vol / "f").read_text() == "content"
    assert stat.S_IMODE((vol / "f").stat().st_mode) == 0o604
    assert (vol / "f").stat().st_ino == (vol / "h").stat().st_ino
    assert os.readlink(vol / "abs") == "/etc/passwd"
    assert stat.S_IMODE(vol.stat().st_mode) == 0o751
    vol2 = tmp_path / "vol2"
    vol2.mkdir()
    copy_up(str(root), "/escape", str(vol2))  # resolves to root itself, not the host's /
    assert sorted(os.listdir(vol2)) == ["data", "escape"]
    assert not copy_up(str(root), "/missing", str(tmp_path / "vol"))


def test_openat2_stays_in_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../../..", root / "up")
    for path in ("abs", "up", "up/etc", "/../../etc"):
        fd = open_in_root(str(root), path)
        try:
            assert fd_path(fd).startswith(str(root))
        finally:
            os.close(fd)


# -- cp's rules and the stat header ---------------------------------------------------------------

def test_cp_path_rules() -> None:
    assert cp.split_arg("c1:/x") == ("c1", "/x")
    assert cp.split_arg("./c1:/x") == ("", "./c1:/x")
    assert cp.split_arg("/abs") == ("", "/abs")
    assert cp.split_dir_entry("/a/b/.") == ("/a/b", ".")
    assert cp.split_dir_entry("/a/b/") == ("/a", "b")
    d, f = cp.Info("/src/d", True, True), cp.Info("/src/f", True, False)
    assert cp.prepare(d, cp.Info("/dst", True, True)) == ("/dst", "d", "d")
    assert cp.prepare(d, cp.Info("/new")) == ("/", "d", "new")
    assert cp.prepare(f, cp.Info("/dst/file", True, False)) == ("/dst", "f", "file")
    with pytest.raises(cp.CpError, match="cannot copy directory"):
        cp.prepare(d, cp.Info("/dst/file", True, False))
    with pytest.raises(cp.CpError, match="no such directory"):
        cp.prepare(f, cp.Info("/dst/nodir/"))
    rename = renamer("d", "new")
    assert rename(b"d/x") == b"new/x" and rename(b"d") == b"new" and rename(b"dx") is None


def test_go_mode_bits() -> None:
    assert archive.go_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert archive.go_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert archive.go_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert archive.go_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666


def test_volume_subpath_is_refused_not_ignored() -> None:
    with pytest.raises(InvalidArgument, match="Subpath is not supported"):
        mounts.parse_mount({"Type": "volume", "Source": "data", "Target": "/d",
                            "VolumeOptions": {"Subpath": "a/b"}})
