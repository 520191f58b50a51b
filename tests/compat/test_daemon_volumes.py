"""Volumes, bind mounts and tmpfs (issue 6) through `dockyard daemon`, driven by the
official docker CLI and by our `dockyard` CLI: named and anonymous volumes, copy-up
(owner, mode, symlinks, hard links), read-only mounts, rm -v, binds of a file and a
directory, tmpfs sizes, --volumes-from, volume-nocopy, the local driver's options,
the volume verbs, persistence across a daemon restart, and docker's errors.

One daemon per module (private data root, exec root and socket); the images are
made with `docker import` of tars built here. At the end nothing may be left:
no monitor, no mount under the temp dir, no cgroup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_containers import _check_nothing_left, _read_pid
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

from dockyard.devtools.busybox import make_rootfs

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

IMG = "bbvol:dyk"  # busybox with /data (1000:1000, 0750) and VOLUME /data
PLAIN = "bbplain:dyk"  # the same without VOLUME


class Holder:
    """The module's daemon; a test may restart it (same roots, same socket)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.d = self._start()

    def _start(self) -> Daemon:
        return Daemon(self.workdir, "--exec-root", str(self.workdir / "exec"))

    def restart(self) -> None:
        assert self.d.stop() == 0, self.d.logs()
        self.d = self._start()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dyv")


@pytest.fixture(scope="module")
def holder(workdir: Path) -> Iterator[Holder]:
    h = Holder(workdir)
    yield h
    monitor_pid = _read_pid(workdir / "exec" / "monitor.pid")
    cdir = os.path.join(h.d.data_root, "containers")
    ids = os.listdir(cdir) if os.path.isdir(cdir) else []
    assert h.d.stop() == 0, h.d.logs()
    _check_nothing_left(workdir, monitor_pid, ids)


@pytest.fixture(scope="module")
def docker(holder: Holder, workdir: Path) -> Iterator[DockerCLI]:
    cli = DockerCLI.in_workdir(holder.d, workdir)
    yield cli
    cli.remove_all_containers(volumes=True)
    names = cli("volume", "ls", "-q", check=False).stdout.split()
    if names:
        cli("volume", "rm", "-f", *names, check=False)


def ours(holder: Holder, *args: str, input: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H",
                        f"unix://{holder.d.sock}", *args], capture_output=True, text=True,
                       input=input, timeout=120, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"dockyard {' '.join(args)} -> {r.returncode}\n{r.stdout}\n"
                             f"{r.stderr}")
    return r


@pytest.fixture(scope="module")
def images(docker: DockerCLI, workdir: Path) -> None:
    root = make_rootfs(str(workdir / "rootfs"))
    data = Path(root) / "data"
    (data / "sub").mkdir(parents=True)
    (data / "file").write_text("from the image\n")
    os.chown(data / "file", 1000, 1000)
    os.chmod(data / "file", 0o640)
    os.link(data / "file", data / "hard")
    os.symlink("file", data / "link")
    os.symlink("/etc/passwd", data / "abs-link")
    os.chown(data, 1000, 1000)
    os.chmod(data, 0o750)
    big = Path(root) / "many"
    big.mkdir()
    for i in range(50):
        (big / f"f{i}").write_text(str(i))
    out = workdir / "bb.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    docker("import", "-c", 'CMD ["sh"]', "-c", "VOLUME /data", str(out), IMG)
    docker("import", "-c", 'CMD ["sh"]', str(out), PLAIN)


def _run(docker: DockerCLI, *args: str) -> str:
    return docker("run", "--rm", *args).stdout


def _volumes(docker: DockerCLI) -> set[str]:
    return set(docker("volume", "ls", "-q").stdout.split())


# -- named volumes --------------------------------------------------------------------------

def test_named_volume_persists_across_containers_and_restart(
        holder: Holder, docker: DockerCLI, images: None) -> None:
    assert docker("volume", "create", "keep").stdout.strip() == "keep"
    _run(docker, "-v", "keep:/v", PLAIN, "sh", "-c", "echo one > /v/a")
    assert _run(docker, "-v", "keep:/v", PLAIN, "cat", "/v/a") == "one\n"
    docker("create", "--name", "user-of-keep", "-v", "keep:/v", PLAIN, "true")
    holder.restart()
    assert "keep" in _volumes(docker)
    assert _run(docker, "-v", "keep:/v", PLAIN, "cat", "/v/a") == "one\n"
    r = docker("volume", "rm", "keep", check=False)  # the reference survived the restart
    assert r.returncode != 0 and "volume is in use" in r.stderr
    docker("rm", "user-of-keep")
    docker("volume", "rm", "keep")
    assert "keep" not in _volumes(docker)


def test_volume_inspect_and_container_mounts(docker: DockerCLI, holder: Holder,
                                             images: None) -> None:
    docker("volume", "create", "--label", "team=a", "insp")
    v = json.loads(docker("volume", "inspect", "insp").stdout)[0]
    assert v["Name"] == "insp" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Labels"] == {"team": "a"}
    assert v["Mountpoint"] == os.path.join(holder.d.data_root, "volumes", "insp", "_data")
    assert os.path.isdir(v["Mountpoint"])
    docker("create", "--name", "mnts", "-v", "insp:/data:ro", "-v", "/tmp:/host-tmp",
           "--mount", "type=tmpfs,dst=/scratch", "-v", "insp:/again", "-v", "/anon",
           PLAIN, "true")
    mounts = {m["Destination"]: m for m in json.loads(
        docker("inspect", "-f", "{{json .Mounts}}", "mnts").stdout)}
    assert mounts["/data"] == {"Type": "volume", "Name": "insp", "Source": v["Mountpoint"],
                               "Destination": "/data", "Driver": "local", "Mode": "ro",
                               "RW": False, "Propagation": ""}
    assert mounts["/host-tmp"] == {"Type": "bind", "Source": "/tmp",
                                   "Destination": "/host-tmp", "Mode": "", "RW": True,
                                   "Propagation": "rslave"}  # what dockerd 20.10 shows
    assert mounts["/scratch"]["Type"] == "tmpfs"
    assert mounts["/again"]["Mode"] == "z" and mounts["/anon"]["Mode"] == ""  # as dockerd
    docker("rm", "-v", "mnts")
    docker("volume", "rm", "insp")


# -- copy-up ----------------------------------------------------------------------------------

COPY_CHECK = ("stat -c '%u:%g %a' /data /data/file; cat /data/file; readlink /data/link; "
              "readlink /data/abs-link; stat -c '%i %h' /data/file /data/hard")


def _check_copied(out: str) -> None:
    lines = out.splitlines()
    assert lines[0] == "1000:1000 750"
    assert lines[1] == "1000:1000 640"
    assert lines[2] == "from the image"
    assert lines[3] == "file" and lines[4] == "/etc/passwd"
    (ino1, n1), (ino2, n2) = lines[5].split(), lines[6].split()
    assert ino1 == ino2 and n1 == n2 == "2"  # the hard link stayed one file


def test_copy_up_into_anonymous_volume_keeps_owner_and_mode(docker: DockerCLI,
                                                            images: None) -> None:
    before = _volumes(docker)
    _check_copied(_run(docker, IMG, "sh", "-c", COPY_CHECK))
    assert _volumes(docker) == before  # --rm took the anonymous volume with it


def test_copy_up_into_named_volume_and_nocopy(docker: DockerCLI, images: None) -> None:
    _check_copied(_run(docker, "-v", "cu:/data", PLAIN, "sh", "-c", COPY_CHECK))
    # not empty any more: a second container sees what the first left, no new copy
    _run(docker, "-v", "cu:/data", PLAIN, "sh", "-c", "rm /data/file; echo new > /data/x")
    assert _run(docker, "-v", "cu:/data", PLAIN, "ls", "/data").split() == \
        ["abs-link", "hard", "link", "sub", "x"]
    out = _run(docker, "--mount", "type=volume,src=nc,dst=/data,volume-nocopy", PLAIN,
               "ls", "-A", "/data")
    assert out == ""
    assert _run(docker, "-v", "nc2:/data:nocopy", PLAIN, "ls", "-A", "/data") == ""
    docker("volume", "rm", "cu", "nc", "nc2")


def test_image_volume_over_symlink_stays_inside(docker: DockerCLI, images: None,
                                                workdir: Path) -> None:
    """A VOLUME whose path is a symlink out of the root: copy-up reads the container's
    own file, and the mount lands inside the container (never on a host path)."""
    root = make_rootfs(str(workdir / "evil-rootfs"))
    os.symlink("/etc", os.path.join(root, "escape"))
    marker = workdir / "host-marker"
    marker.write_text("host")
    out = workdir / "evil.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    docker("import", "-c", 'CMD ["sh"]', "-c", "VOLUME /escape", str(out), "evil:dyk")
    r = _run(docker, "evil:dyk", "sh", "-c", "ls /escape/ | head -3; touch /escape/made")
    assert "passwd" in r or "hostname" in r  # the container's /etc, copied up
    assert not os.path.exists("/etc/made")
    docker("rmi", "evil:dyk")


def test_dotdot_volume_path_refused(docker: DockerCLI, holder: Holder, images: None) -> None:
    body = json.dumps({"Image": PLAIN, "Cmd": ["true"], "Volumes": {"/a/../../etc": {}}})
    status, _, data = http_request(holder.d.sock, "POST", "/v1.41/containers/create",
                                   body.encode(), {"Content-Type": "application/json"})
    assert status == 400 and "contains '..'" in json.loads(data)["message"]


# -- modes, binds, tmpfs ------------------------------------------------------------------------

def test_read_only_mounts_refuse_writes(docker: DockerCLI, images: None,
                                        tmp_path: Path) -> None:
    r = docker("run", "--rm", "-v", "rov:/data:ro", PLAIN, "sh", "-c", "touch /data/x",
               check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    r = docker("run", "--rm", "--mount", f"type=bind,src={tmp_path},dst=/b,readonly", PLAIN,
               "sh", "-c", "touch /b/x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not (tmp_path / "x").exists()
    docker("volume", "rm", "rov")


def test_rm_v_removes_anonymous_volumes_only(docker: DockerCLI, images: None) -> None:
    before = _volumes(docker)
    docker("create", "--name", "anon", "-v", "/scratch", "-v", "named1:/n", PLAIN, "true")
    made = _volumes(docker) - before
    assert "named1" in made and len(made) == 2
    docker("rm", "anon")  # without -v: both stay
    assert made <= _volumes(docker)
    anon = next(iter(made - {"named1"}))
    docker("volume", "rm", anon)
    docker("create", "--name", "anon2", "-v", "/scratch", "-v", "named1:/n", IMG, "true")
    made2 = _volumes(docker) - before - {"named1"}
    assert len(made2) == 2  # /scratch and the image's /data
    docker("rm", "-v", "anon2")
    assert _volumes(docker) - before == {"named1"}
    docker("volume", "rm", "named1")


def test_bind_mount_of_a_directory_and_a_file(docker: DockerCLI, images: None,
                                              tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    (d / "in").write_text("host side\n")
    f = tmp_path / "single.conf"
    f.write_text("k=v\n")
    out = _run(docker, "-v", f"{d}:/d", "-v", f"{f}:/etc/app.conf:ro", PLAIN, "sh", "-c",
               "cat /d/in /etc/app.conf; echo from-container > /d/out")
    assert out == "host side\nk=v\n"
    assert (d / "out").read_text() == "from-container\n"


def test_missing_bind_source_created_by_v_refused_by_mount(docker: DockerCLI, images: None,
                                                           tmp_path: Path) -> None:
    missing = tmp_path / "made" / "by-v"
    _run(docker, "-v", f"{missing}:/m", PLAIN, "true")
    assert missing.is_dir()
    other = tmp_path / "absent"
    r = docker("run", "--rm", "--mount", f"type=bind,src={other},dst=/m", PLAIN, "true",
               check=False)
    assert r.returncode == 125
    assert (f'invalid mount config for type "bind": bind source path does not exist: {other}'
            in r.stderr)
    assert not other.exists()


def test_tmpfs_sizes(docker: DockerCLI, images: None) -> None:
    out = _run(docker, "--tmpfs", "/t1:size=1m", "--mount", "type=tmpfs,dst=/t2,tmpfs-size=2m",
               PLAIN, "sh", "-c", "df -k /t1 /t2 | tail -2")
    sizes = [line.split()[1] for line in out.splitlines()]
    assert sizes == ["1024", "2048"]


def test_volumes_from(docker: DockerCLI, images: None) -> None:
    docker("run", "--name", "src-c", "-v", "/shared", "-v", "vf:/named", PLAIN, "sh", "-c",
           "echo s > /shared/f; echo n > /named/f")
    assert _run(docker, "--volumes-from", "src-c", PLAIN, "cat", "/shared/f",
                "/named/f") == "s\nn\n"
    r = docker("run", "--rm", "--volumes-from", "src-c:ro", PLAIN, "sh", "-c",
               "touch /shared/x", check=False)
    assert r.returncode != 0 and "Read-only" in r.stderr
    r = docker("run", "--rm", "--volumes-from", "no-such-c", PLAIN, "true", check=False)
    assert r.returncode == 125 and "No such container: no-such-c" in r.stderr
    docker("rm", "-v", "src-c")
    docker("volume", "rm", "vf")


def test_propagation_is_honored(docker: DockerCLI, images: None, tmp_path: Path) -> None:
    """rslave on a shared host mount: the container's copy receives later host mounts."""
    src = tmp_path / "shared"
    src.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(src)], check=True)
        out = _run(docker, "-v", f"{src}:/p:rslave", PLAIN, "sh", "-c",
                   "grep ' /p ' /proc/self/mountinfo")
        assert "master:" in out
        out = _run(docker, "-v", f"{src}:/p:rprivate", PLAIN, "sh", "-c",
                   "grep ' /p ' /proc/self/mountinfo")
        assert "master:" not in out and "shared:" not in out
    finally:
        subprocess.run(["umount", "-l", str(src)], check=False)
    docker("create", "--name", "prop", "--mount",
           f"type=bind,src={tmp_path},dst=/p,bind-propagation=rslave", PLAIN, "true")
    mounts = json.loads(docker("inspect", "-f", "{{json .Mounts}}", "prop").stdout)
    assert mounts[0]["Propagation"] == "rslave"
    docker("rm", "prop")


# -- the local driver's options ------------------------------------------------------------------

def test_tmpfs_volume_mounted_while_used(docker: DockerCLI, holder: Holder,
                                         images: None) -> None:
    docker("volume", "create", "-d", "local", "-o", "type=tmpfs", "-o", "device=tmpfs",
           "-o", "o=size=3m", "tv")
    path = os.path.join(holder.d.data_root, "volumes", "tv", "_data")
    out = _run(docker, "-v", "tv:/t", PLAIN, "sh", "-c", "df -k /t | tail -1")
    assert out.split()[1] == "3072"
    assert not os.path.ismount(path)  # the last user stopped
    docker("volume", "rm", "tv")


def test_bind_volume_with_device(docker: DockerCLI, images: None, tmp_path: Path) -> None:
    (tmp_path / "seen").write_text("device dir\n")
    docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o",
           f"device={tmp_path}", "bv")
    assert _run(docker, "-v", "bv:/b", PLAIN, "cat", "/b/seen") == "device dir\n"
    docker("volume", "rm", "bv")
    assert (tmp_path / "seen").exists()  # removing the volume never touches the device


# -- the verbs, with our CLI -----------------------------------------------------------------------

def test_volume_verbs_with_our_cli(holder: Holder, docker: DockerCLI, images: None) -> None:
    assert ours(holder, "volume", "create", "--label", "a=b", "v1").stdout == "v1\n"
    ours(holder, "volume", "create", "v2")
    anon = ours(holder, "volume", "create").stdout.strip()
    assert len(anon) == 64
    assert ours(holder, "volume", "ls", "-q", "-f", "label=a=b").stdout == "v1\n"
    assert set(ours(holder, "volume", "ls", "-q", "-f", "name=v").stdout.split()) >= \
        {"v1", "v2"}
    table = ours(holder, "volume", "ls").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert ours(holder, "volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "v1").stdout \
        == "v1 local\n"
    docker("create", "--name", "holds-v2", "-v", "v2:/x", PLAIN, "true")
    dangling = set(ours(holder, "volume", "ls", "-q", "-f", "dangling=true").stdout.split())
    assert "v1" in dangling and "v2" not in dangling
    r = ours(holder, "volume", "rm", "v2", check=False)
    assert r.returncode == 1 and "remove v2: volume is in use - [" in r.stderr
    r = ours(holder, "volume", "create", "bad/name", check=False)
    assert r.returncode == 1 and "includes invalid characters" in r.stderr
    r = ours(holder, "volume", "create", "-o", "bogus=1", "xx", check=False)
    assert 'create xx: invalid option: "bogus"' in r.stderr
    r = ours(holder, "volume", "ls", "-f", "nope=1", check=False)
    assert "Invalid filter 'nope'" in r.stderr
    out = ours(holder, "volume", "prune", "-f").stdout  # API 1.41: every unused volume
    assert "v1" in out and anon in out and "v2" not in out
    docker("rm", "holds-v2")
    ours(holder, "volume", "rm", "v2")
    assert ours(holder, "volume", "rm", "-f", "never-was").returncode == 0
    assert ours(holder, "volume", "ls", "--format", "{{.Name}} {{.Links}}", "-f",
                "name=never").stdout == ""


def test_volume_events(docker: DockerCLI, images: None) -> None:
    since = str(int(time.time()) - 1)
    docker("volume", "create", "evv")
    docker("volume", "rm", "evv")
    out = docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                 "--filter", "type=volume", "--format", "{{.Action}} {{.Actor.ID}}").stdout
    assert out.splitlines()[-2:] == ["create evv", "destroy evv"]


def test_system_df_counts_volumes(docker: DockerCLI, images: None) -> None:
    docker("volume", "create", "dfv")
    _run(docker, "-v", "dfv:/d", PLAIN, "dd", "if=/dev/zero", "of=/d/z", "bs=1k", "count=64")
    vols = json.loads(docker("system", "df", "-v", "--format", "{{json .Volumes}}").stdout)
    row = next(v for v in vols if v["Name"] == "dfv")
    assert row["Size"].endswith("kB") and str(row["Links"]) == "0"
    docker("volume", "rm", "dfv")


def test_diff_and_export_leave_mounts_out(docker: DockerCLI, images: None,
                                          tmp_path: Path) -> None:
    docker("run", "--name", "dx", "-v", "dxv:/vol", "-v", f"{tmp_path}:/bind", PLAIN, "sh",
           "-c", "echo a > /vol/in-volume; echo b > /bind/in-bind; echo c > /root-file")
    changes = docker("diff", "dx").stdout
    assert "/root-file" in changes
    assert "in-volume" not in changes and "in-bind" not in changes
    tar = tmp_path / "dx.tar"
    docker("export", "-o", str(tar), "dx")
    with tarfile.open(tar) as t:
        names = t.getnames()
    assert "root-file" in names or "./root-file" in names
    assert not [n for n in names if "in-volume" in n or "in-bind" in n]
    docker("rm", "-v", "dx")
    docker("volume", "rm", "dxv")


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["-v", "bad/name:/x"], '"bad/name" includes invalid characters for a local volume name'),
    (["-v", "vol:relative"], "invalid mount path: 'relative' mount path must be absolute"),
    (["-v", "vol:/x:bogus"], "invalid mode: bogus"),
    (["-v", "va:/x", "-v", "vb:/x"], "Duplicate mount point: /x"),
    (["-v", "va:/"], ("invalid volume specification: 'va:/': invalid mount config for type "
                       "\"volume\": invalid specification: destination can't be '/'")),
    (["-v", "va:/x:rshared"], ("invalid volume specification: 'va:/x:rshared': invalid mount "
                              'config for type "volume": field BindOptions must not be '
                              "specified")),
    (["--mount", "type=bind,dst=/x"], "field Source must not be empty"),
    (["--mount", "type=tmpfs,src=x,dst=/x"], "field Source must not be specified"),
])
def test_bad_mount_specs(docker: DockerCLI, images: None, args: list[str],
                         message: str) -> None:
    before = _volumes(docker)
    r = docker("run", "--rm", *args, PLAIN, "true", check=False)
    assert r.returncode == 125, r.stderr
    assert message in r.stderr
    assert _volumes(docker) == before  # nothing was created on the way


def test_bad_mount_flags_in_our_cli(holder: Holder, images: None) -> None:
    r = ours(holder, "run", "--rm", "--mount", "type=volume,dst=/x,bind-propagation=rslave",
             PLAIN, "true", check=False)
    assert r.returncode == 125 and "cannot mix 'bind-*' options with mount type 'volume'" \
        in r.stderr
    r = ours(holder, "run", "--rm", "--mount", "src=x", PLAIN, "true", check=False)
    assert r.returncode == 125 and "target is required" in r.stderr
    r = ours(holder, "run", "--rm", "--mount", "type=bind,src=/nonexistent-dyk,dst=/x",
             PLAIN, "true", check=False)
    assert r.returncode == 125 and "bind source path does not exist" in r.stderr
    out = ours(holder, "run", "--rm", "-v", "ourv:/data", "--mount",
               "type=tmpfs,dst=/t,tmpfs-size=1m", PLAIN, "sh", "-c",
               "cat /data/file; df -k /t | tail -1").stdout
    assert out.splitlines()[0] == "from the image" and out.splitlines()[1].split()[1] == "1024"
    ours(holder, "volume", "rm", "ourv")
