"""The container's root file system: mounts, devices, pivot_root, masked paths.

`plan_mounts` turns the spec into mount steps (pure, unit-tested without root);
the other functions carry them out inside the container's mount namespace.
"""

import errno
import os
import stat

from dockyard.linux import mount as m
from dockyard.linux.openat2 import open_in_root
from dockyard.runtime.paths import make_mountpoint, make_parents_inside, secure_join


class MountStep:
    __slots__ = ("bind", "data", "destination", "flags", "fstype", "propagation", "source")

    def __init__(self, destination: str, source: str | None, fstype: str | None, flags: int,
                 data: str, propagation: list[int] | None = None, bind: bool = False):
        self.destination = destination
        self.source = source
        self.fstype = fstype
        self.flags = flags
        self.data = data
        self.propagation = propagation or []
        self.bind = bind

    def __repr__(self) -> str:
        return f"MountStep({self.destination!r}, {self.source!r}, {self.fstype!r})"

    @property
    def readonly(self) -> bool:
        return bool(self.flags & m.MS_RDONLY)


class Device:
    __slots__ = ("gid", "kind", "major", "minor", "mode", "path", "uid")

    def __init__(self, path: str, kind: str, major: int, minor: int, mode: int = 0o666,
                 uid: int = 0, gid: int = 0):
        self.path = path
        self.kind = kind  # c, b, u, p
        self.major = major
        self.minor = minor
        self.mode = mode
        self.uid = uid
        self.gid = gid


DEFAULT_DEVICES = (
    Device("/dev/null", "c", 1, 3), Device("/dev/zero", "c", 1, 5),
    Device("/dev/full", "c", 1, 7), Device("/dev/random", "c", 1, 8),
    Device("/dev/urandom", "c", 1, 9), Device("/dev/tty", "c", 5, 0),
)
DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


def plan_mounts(spec: dict, bundle: str) -> list[MountStep]:
    steps = []
    for mnt in spec.get("mounts") or ():
        flags, propagation, data = m.parse_options(mnt.get("options") or [])
        bind = bool(flags & m.MS_BIND) or mnt.get("type") == "bind"
        source = mnt.get("source")
        if bind:
            flags |= m.MS_BIND
            if source and not source.startswith("/"):
                source = os.path.join(bundle, source)
        steps.append(MountStep(mnt["destination"], source, mnt.get("type"), flags, data,
                               propagation, bind))
    return steps


def plan_devices(spec: dict) -> list[Device]:
    devices = {d.path: d for d in DEFAULT_DEVICES}
    for d in (spec.get("linux") or {}).get("devices") or ():
        devices[d["path"]] = Device(d["path"], d["type"], d.get("major", 0), d.get("minor", 0),
                                    d.get("fileMode", 0o666), d.get("uid", 0), d.get("gid", 0))
    return list(devices.values())


def propagation_flags(spec: dict) -> int:
    prop = (spec.get("linux") or {}).get("rootfsPropagation")
    return m.PROPAGATION_OPTIONS[prop] if prop else m.MS_SLAVE | m.MS_REC


# --- carried out in the container's mount namespace, before pivot_root ---------------

def prepare_root(rootfs: str, propagation: int) -> None:
    m.mount(None, "/", None, propagation)
    _make_parent_private(rootfs)
    m.mount(rootfs, rootfs, None, m.MS_BIND | m.MS_REC)


def _make_parent_private(rootfs: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared."""
    best = ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if (rootfs == point or rootfs.startswith(point.rstrip("/") + "/")) \
                    and len(point) > len(best):
                best = point
    if best and " shared:" in _mountinfo_line(best):
        m.mount(None, best, None, m.MS_PRIVATE)


def _mountinfo_line(point: str) -> str:
    with open("/proc/self/mountinfo") as f:
        found = ""
        for line in f:
            if line.split()[4] == point:
                found = line
        return found


class _Pinned:
    """The mount point `dest` (secure_join'ed earlier) opened again by the kernel with
    openat2(RESOLVE_IN_ROOT) and used as /proc/self/fd/N: a path component swapped for
    a symlink since secure_join (another container sharing a volume, CVE-2021-30465)
    cannot make us mount over a host path. Re-pin after a mount to reach its top."""

    def __init__(self, rootfs: str, dest: str):
        self.fd = -1
        self.path = dest
        try:
            self.fd = open_in_root(rootfs, os.path.relpath(dest, rootfs), os.O_PATH)
        except OSError as e:
            if e.errno != errno.ENOSYS:  # a kernel without openat2 (< 5.6): the path
                raise
            return
        self.path = f"/proc/self/fd/{self.fd}"

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def mount_all(rootfs: str, steps: list[MountStep], cgroup_path: str, cgroupns: bool,
              newnet: bool) -> None:
    for step in steps:
        dest = secure_join(rootfs, step.destination)
        if step.fstype in ("cgroup", "cgroup2") and not step.bind:
            _mount_cgroups(rootfs, dest, step, cgroup_path, cgroupns)
            continue
        if step.bind:
            _bind(rootfs, dest, step)
        else:
            make_mountpoint(rootfs, dest, True)
            with _Pinned(rootfs, dest) as target:
                try:
                    m.mount(step.source or step.fstype, target, step.fstype, step.flags,
                            step.data)
                except PermissionError:
                    if step.fstype != "sysfs" or newnet:
                        raise
                    # sysfs cannot be mounted in the host's network namespace: bind it
                    m.mount("/sys", target, None, m.MS_BIND | m.MS_REC)
                    with _Pinned(rootfs, dest) as top:
                        _remount(top, step.flags | m.MS_BIND)
        if step.propagation:
            with _Pinned(rootfs, dest) as top:
                for prop in step.propagation:
                    m.mount(None, top, None, prop)


def _bind(rootfs: str, dest: str, step: MountStep) -> None:
    source = step.source or ""
    make_mountpoint(rootfs, dest, os.path.isdir(source))
    with _Pinned(rootfs, dest) as target:
        m.mount(source, target, None, step.flags & (m.MS_BIND | m.MS_REC))
    extra = step.flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
    if extra:
        with _Pinned(rootfs, dest) as top:
            _remount(top, extra | m.MS_BIND)


def _remount(dest: str, flags: int) -> None:
    """Remount a bind mount, keeping the flags the kernel locks (nosuid, nodev, ...)."""
    st = os.statvfs(dest)
    locked = 0
    for st_flag, ms_flag in ((os.ST_NOSUID, m.MS_NOSUID), (os.ST_NODEV, m.MS_NODEV),
                             (os.ST_NOEXEC, m.MS_NOEXEC), (os.ST_NOATIME, m.MS_NOATIME),
                             (os.ST_NODIRATIME, m.MS_NODIRATIME),
                             (os.ST_RELATIME, m.MS_RELATIME)):
        if st.f_flag & st_flag:
            locked |= ms_flag
    m.mount(None, dest, None, flags | locked | m.MS_REMOUNT | m.MS_BIND)


def _cgroup_hierarchies() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of the host's cgroup hierarchies."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _src, superopts = post.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((pre.split()[4], fstype, superopts))
    return found


def _mount_cgroups(rootfs: str, dest: str, step: MountStep, cgroup_path: str,
                   cgroupns: bool) -> None:
    hierarchies = _cgroup_hierarchies()
    make_mountpoint(rootfs, dest, True)
    if len(hierarchies) == 1 and hierarchies[0][1] == "cgroup2":
        if cgroupns:
            m.mount("cgroup2", dest, "cgroup2", step.flags)
        else:
            m.mount(hierarchies[0][0] + cgroup_path, dest, None, m.MS_BIND | m.MS_REC)
            _remount(dest, step.flags | m.MS_BIND)
        return
    m.mount("tmpfs", dest, "tmpfs", (step.flags & ~m.MS_RDONLY), "mode=755")
    for point, fstype, superopts in hierarchies:
        if not point.startswith("/sys/fs/cgroup/"):
            continue
        name = point[len("/sys/fs/cgroup/"):]
        target = os.path.join(dest, name)
        source = point + cgroup_path
        if not os.path.isdir(source):
            continue
        os.mkdir(target, 0o755)
        if cgroupns:
            opts = ",".join(o for o in superopts.split(",") if o not in ("rw", "ro"))
            m.mount("cgroup", target, fstype, step.flags, opts if fstype == "cgroup" else "")
        else:
            m.mount(source, target, None, m.MS_BIND | m.MS_REC)
            _remount(target, step.flags | m.MS_BIND)
        if "," in name.strip(","):  # co-mounted controllers: cpu,cpuacct -> cpu, cpuacct
            for alias in name.split(","):
                os.symlink(name, os.path.join(dest, alias))
    if step.readonly:
        _remount(dest, step.flags)


def create_devices(rootfs: str, devices: list[Device], bind_from_host: bool) -> None:
    for dev in devices:
        path = secure_join(rootfs, dev.path)
        make_parents_inside(rootfs, path)
        if bind_from_host:  # mknod is not allowed in a user namespace
            make_mountpoint(rootfs, path, False)
            m.mount(dev.path, path, None, m.MS_BIND)
            continue
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        if os.path.lexists(path):
            os.unlink(path)
        old = os.umask(0)
        try:
            os.mknod(path, kind[dev.kind] | (dev.mode & 0o7777), os.makedev(dev.major, dev.minor))
        finally:
            os.umask(old)
        os.chown(path, dev.uid, dev.gid)


def create_dev_symlinks(rootfs: str, has_devpts: bool, has_proc: bool) -> None:
    links = list(DEV_SYMLINKS)
    if has_proc:
        links.append(("/proc/kcore", "/dev/core"))
    if has_devpts:
        links.append(("pts/ptmx", "/dev/ptmx"))
    for target, link in links:
        path = os.path.join(rootfs, link.lstrip("/"))
        if os.path.lexists(path) and link == "/dev/ptmx":
            os.unlink(path)
        try:
            os.symlink(target, path)
        except FileExistsError:
            pass


def pivot(rootfs: str, no_pivot: bool) -> None:
    if no_pivot:
        os.chdir(rootfs)
        m.mount(rootfs, "/", None, m.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        m.pivot_root(".", ".")
        os.fchdir(old)  # now the old root, stacked under the new one: detach it
        m.mount(None, ".", None, m.MS_SLAVE | m.MS_REC)
        m.umount(".", m.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


# --- after pivot_root: os calls only, no imports ---------------------------------------

def mask_paths(paths: list[str]) -> None:
    null = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(null)
        # a /dev/null swapped for something else must not be mounted over host paths
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
            raise OSError(errno.EPERM, "/dev/null is not the null device; refusing to mask")
        for path in paths:
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    m.mount("tmpfs", path, "tmpfs", m.MS_RDONLY, "size=0k")
                else:
                    m.mount(f"/proc/self/fd/{null}", path, None, m.MS_BIND)
            except (FileNotFoundError, NotADirectoryError):
                continue
    finally:
        os.close(null)


def readonly_paths(paths: list[str]) -> None:
    for path in paths:
        try:
            m.mount(path, path, None, m.MS_BIND | m.MS_REC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        _remount(path, m.MS_RDONLY)


def readonly_root() -> None:
    _remount("/", m.MS_RDONLY)


# Always allowed, after the spec's own rules, as runc does: mknod of anything (the
# node is useless without rw), the default devices, ptys and tun.
ALLOWED_DEVICE_RULES = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"),
)


def device_rules(spec: dict) -> list[dict]:
    """The device cgroup rules: the spec's, then the defaults and linux.devices allowed."""
    linux = spec.get("linux") or {}
    rules = list((linux.get("resources") or {}).get("devices") or ())
    for kind, major, minor, access in ALLOWED_DEVICE_RULES:
        rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                      "access": access})
    for d in linux.get("devices") or ():
        if d.get("type") in ("c", "b"):
            rules.append({"allow": True, "type": d["type"], "major": d.get("major"),
                          "minor": d.get("minor"), "access": "rwm"})
    return rules
