"""Debian root file systems from debootstrap, made clean the way official images are,
and written as reproducible layer tars (whole, or as the diff against a base).

    root = build_rootfs(cache, ["python3"], log=print)   # cached by the package set
    diff_id, size = write_tar(root, "layer.tar")          # deterministic bytes
    write_diff_tar(base, root, "python-layer.tar")       # changes + whiteouts only

Clean means no host-specific or volatile file: apt lists and caches, logs,
machine-id, /dev's nodes, the host's hostname/resolv.conf copied by debootstrap
are gone; the "slim" dpkg excludes (docs, man pages, locales) and the minimizing
apt/dpkg configuration of debuerreotype (the official images' builder) are in;
every mtime newer than the suite's Release date is clamped to it, so two builds
from the same archive state give the same layers and image IDs.
"""

from __future__ import annotations

import email.utils
import glob
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterator

from dockyard.errors import DockyardError

SUITE = "bookworm"
VARIANT = "minbase"
RECIPE = 1  # bump when the clean-up changes: it is part of every cache key

Log = Callable[[str], None]

# debuerreotype's --slim excludes: kept out now and by later dpkg installs
SLIM_EXCLUDES = ("/usr/share/doc/*", "/usr/share/groff/*", "/usr/share/info/*",
                 "/usr/share/linda/*", "/usr/share/lintian/overrides/*",
                 "/usr/share/locale/*", "/usr/share/man/*")
SLIM_INCLUDES = ("/usr/share/doc/*/copyright",)

MINIMIZING_FILES = {
    "usr/sbin/policy-rc.d": (0o755, ("#!/bin/sh\n# no service starts during image builds "
                                     "(as in the official images)\nexit 101\n")),
    "etc/apt/apt.conf.d/docker-clean": (0o644, ('Dir::Cache::pkgcache "";\n'
                                                 'Dir::Cache::srcpkgcache "";\n')),
    "etc/apt/apt.conf.d/docker-autoremove-suggests": (
        0o644, 'Apt::AutoRemove::SuggestsImportant "false";\n'),
    "etc/apt/apt.conf.d/docker-gzip-indexes": (0o644, 'Acquire::GzipIndexes "true";\n'),
    "etc/apt/apt.conf.d/docker-no-languages": (0o644, 'Acquire::Languages "none";\n'),
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": (0o644, "force-unsafe-io\n"),
    "etc/dpkg/dpkg.cfg.d/docker": (
        0o644, "# the slim variant: files containers do not need stay out\n"
        + "".join(f"path-exclude {p}\n" for p in SLIM_EXCLUDES)
        + "".join(f"path-include {p}\n" for p in SLIM_INCLUDES)),
    "etc/hosts": (0o644, ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                          "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                          "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")),
    "etc/hostname": (0o644, ""),     # the engine mounts its own over these
    "etc/resolv.conf": (0o644, ""),
}
REMOVE_GLOBS = ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                "var/cache/apt/archives/partial/*", "var/cache/debconf/*-old",
                "var/lib/dpkg/*-old", "var/cache/ldconfig/aux-cache", "etc/machine-id",
                "var/lib/dbus/machine-id", "etc/apt/sources.list", "dev/*", "tmp/*",
                "var/tmp/*", "root/.bash_history", "debootstrap")


def cache_key(packages: list[str], mirror: str, suite: str = SUITE) -> str:
    doc = {"suite": suite, "variant": VARIANT, "mirror": mirror, "recipe": RECIPE,
           "packages": sorted(set(packages))}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def unmount_under(root: str) -> None:
    """debootstrap mounts /proc and /sys in the target; none may stay behind."""
    real = os.path.realpath(root)
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted(points, reverse=True):
        point = point.replace("\\040", " ")
        if point == real or point.startswith(real + "/"):
            subprocess.run(["umount", "-l", point], check=False)


def release_epoch(root: str, suite: str = SUITE) -> int:
    """The Date of the suite's Release file debootstrap fetched: the images' time."""
    for path in sorted(glob.glob(os.path.join(root, "var/lib/apt/lists",
                                              f"*_dists_{suite}_*Release"))):
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("Date:"):
                    return int(email.utils.parsedate_to_datetime(line[5:].strip()).timestamp())
    raise DockyardError(f"debootstrap left no Release file for {suite} in {root}")


def debootstrap(target: str, packages: list[str], mirror: str, cache_dir: str, log: Log,
                suite: str = SUITE) -> None:
    if os.geteuid() != 0:
        raise DockyardError("building base images needs root (debootstrap, chown)")
    if shutil.which("debootstrap") is None:
        raise DockyardError("debootstrap is not installed (apt-get install debootstrap)")
    os.makedirs(cache_dir, exist_ok=True)
    cmd = ["debootstrap", f"--variant={VARIANT}", "--components=main",
           f"--cache-dir={os.path.abspath(cache_dir)}"]
    if packages:
        cmd.append("--include=" + ",".join(sorted(set(packages))))
    cmd += [suite, target, mirror]
    log(f"debootstrap {suite} ({VARIANT}{' + ' + ' '.join(packages) if packages else ''}) "
        f"from {mirror}")
    tail: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LC_ALL": "C"})
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        if line.startswith(("I: Retrieving Release ", "I: Installing core", "I: Installing base",
                            "I: Base system installed", "E:", "W:")):
            log("  " + line.rstrip())
    code = proc.wait()
    unmount_under(target)
    if code != 0:
        detail = "\n".join(tail)
        logfile = os.path.join(target, "debootstrap", "debootstrap.log")
        if os.path.exists(logfile):
            with open(logfile, errors="replace") as f:
                detail += "\n" + "".join(f.readlines()[-15:])
        raise DockyardError(f"debootstrap failed (exit {code}):\n{detail}")


def _slim(root: str) -> None:
    """Remove what dpkg's slim excludes keep out (copyright files stay)."""
    for pattern in SLIM_EXCLUDES:
        top = os.path.join(root, os.path.dirname(pattern).lstrip("/"))
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top, topdown=False):
            for name in filenames:
                path = os.path.join(dirpath, name)
                if top.endswith("/usr/share/doc") and name == "copyright" and \
                        os.path.dirname(dirpath) == top:
                    continue
                os.unlink(path)
            for name in dirnames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    os.unlink(path)
                elif not os.listdir(path):
                    os.rmdir(path)


def clean(root: str, sources: str) -> None:
    """Make a debootstrapped tree an image's: see the module's docstring."""
    unmount_under(root)
    for pattern in REMOVE_GLOBS:
        for path in glob.glob(os.path.join(root, pattern)):
            remove(path)
    for dirpath, _, filenames in os.walk(os.path.join(root, "var/log")):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
    _slim(root)
    for rel, (mode, text) in MINIMIZING_FILES.items():
        write_file(root, rel, text, mode)
    write_file(root, "etc/apt/sources.list.d/debian.sources", sources)


def write_file(root: str, rel: str, text: str, mode: int = 0o644) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def clamp_mtimes(root: str, epoch: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime > epoch or st.st_mtime != int(st.st_mtime):
                t = min(int(st.st_mtime), epoch)
                os.utime(path, (t, t), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


# -- tars ------------------------------------------------------------------------------------

class _HashingWriter:
    def __init__(self, f) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size


def _tarinfo(tar: tarfile.TarFile, path: str, arcname: str) -> tarfile.TarInfo | None:
    info = tar.gettarinfo(path, arcname)
    if info is None:  # a socket
        return None
    info.uname = info.gname = ""
    info.mtime = int(info.mtime)
    if info.isdir():
        info.name = arcname
    return info


def _add(tar: tarfile.TarFile, root: str, rel: str) -> None:
    path = os.path.join(root, rel)
    info = _tarinfo(tar, path, rel)
    if info is None:
        return
    if info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)


def _walk(root: str, rel: str = "") -> Iterator[str]:
    for name in sorted(os.listdir(os.path.join(root, rel))):
        sub = f"{rel}/{name}" if rel else name
        yield sub
        path = os.path.join(root, sub)
        if os.path.isdir(path) and not os.path.islink(path):
            yield from _walk(root, sub)


def _write(out_path: str, entries: Callable[[tarfile.TarFile], None]) -> tuple[str, int]:
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as raw:
        hw = _HashingWriter(raw)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            entries(tar)
    os.replace(tmp, out_path)
    return "sha256:" + hw.sha.hexdigest(), hw.size


def write_tar(root: str, out_path: str) -> tuple[str, int]:
    """The whole tree as a layer tar; returns (diff id, size)."""
    def entries(tar: tarfile.TarFile) -> None:
        for rel in _walk(root):
            _add(tar, root, rel)
    return _write(out_path, entries)


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _same(new: str, nst: os.stat_result, old: str, ost: os.stat_result) -> bool:
    if (nst.st_mode, nst.st_uid, nst.st_gid, int(nst.st_mtime)) != \
            (ost.st_mode, ost.st_uid, ost.st_gid, int(ost.st_mtime)):
        return False
    if stat.S_ISLNK(nst.st_mode):
        return os.readlink(new) == os.readlink(old)
    if stat.S_ISREG(nst.st_mode):
        return nst.st_size == ost.st_size and _same_content(new, old)
    if stat.S_ISCHR(nst.st_mode) or stat.S_ISBLK(nst.st_mode):
        return nst.st_rdev == ost.st_rdev
    return True


def changes(base: str, new: str, rel: str = "") -> list[tuple[str, bool]]:
    """What turns `base` into `new`: (path, is_whiteout) in tar order, parents first."""
    out: list[tuple[str, bool]] = []
    new_names = sorted(os.listdir(os.path.join(new, rel)))
    base_dir = os.path.join(base, rel)
    base_names = set(os.listdir(base_dir)) if os.path.isdir(base_dir) and \
        not os.path.islink(base_dir) else set()
    for name in sorted(base_names - set(new_names)):
        out.append((f"{rel}/.wh.{name}" if rel else f".wh.{name}", True))
    for name in new_names:
        sub = f"{rel}/{name}" if rel else name
        npath, bpath = os.path.join(new, sub), os.path.join(base, sub)
        nst = os.lstat(npath)
        try:
            bst: os.stat_result | None = os.lstat(bpath)
        except FileNotFoundError:
            bst = None
        if stat.S_ISDIR(nst.st_mode):
            if bst is not None and stat.S_ISDIR(bst.st_mode):
                inner = changes(base, new, sub)
                if inner or not _same(npath, nst, bpath, bst):
                    out.append((sub, False))
                    out += inner
            else:
                out.append((sub, False))
                out += [(p, False) for p in _walk(new, sub)]
        elif bst is None or not _same(npath, nst, bpath, bst):
            out.append((sub, False))
    return out


def write_diff_tar(base: str, new: str, out_path: str) -> tuple[str, int]:
    """The layer that turns `base` into `new` (with whiteouts); returns (diff id, size)."""
    found = changes(base, new)

    def entries(tar: tarfile.TarFile) -> None:
        for rel, whiteout in found:
            if whiteout:
                info = tarfile.TarInfo(rel)
                info.mode = 0o644
                st = os.lstat(os.path.join(new, os.path.dirname(rel)))
                info.mtime = int(st.st_mtime)
                tar.addfile(info)
            else:
                _add(tar, new, rel)
    return _write(out_path, entries)
