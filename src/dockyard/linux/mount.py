"""mount(2), umount2(2), pivot_root(2) and the parsing of mount options."""

import ctypes
import os

from dockyard.linux.libc import call, libc, syscall

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2
SYS_PIVOT_ROOT = 155

# option -> (clear?, flag): as in mount(8); `clear` means the option removes the flag.
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID), "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV), "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC), "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS), "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC), "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK), "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME), "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME), "nodiratime": (False, MS_NODIRATIME),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "lazytime": (False, MS_LAZYTIME), "nolazytime": (True, MS_LAZYTIME),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "symfollow": (True, MS_NOSYMFOLLOW),
    "silent": (False, MS_SILENT), "loud": (True, MS_SILENT),
}

PROPAGATION_OPTIONS: dict[str, int] = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}

# Options that only make sense to the runtime itself, never passed to the kernel.
IGNORED_OPTIONS = {"defaults", "tmpcopyup", "idmap", "ridmap", "rro", "rrw", "rnosuid",
                   "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnoatime", "ratime",
                   "rrelatime", "rnorelatime", "rstrictatime", "rnostrictatime",
                   "rnodiratime", "rdiratime", "rnosymfollow", "rsymfollow"}


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """Split OCI mount options into (flags, [propagation flags], data string)."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in FLAG_OPTIONS:
            clear, flag = FLAG_OPTIONS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION_OPTIONS:
            propagation.append(PROPAGATION_OPTIONS[opt])
        elif opt in IGNORED_OPTIONS:
            continue
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def _b(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    call(libc.mount, _b(source), target.encode(), _b(fstype), ctypes.c_ulong(flags),
         _b(data or None), what=f"mount {source or fstype} on {target}")


def umount(target: str, flags: int = 0) -> None:
    call(libc.umount2, target.encode(), flags, what=f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    syscall(SYS_PIVOT_ROOT, new_root.encode(), put_old.encode(), what="pivot_root")


def is_mount_point(path: str) -> bool:
    """True if `path` is a mount point in our mount namespace, bind mounts of the same
    file system included (os.path.ismount compares devices and misses those)."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" ", 5)[4]
            if "\\" in point:  # octal escapes for spaces and the like
                point = point.encode().decode("unicode_escape")
            if point == real:
                return True
    return False
