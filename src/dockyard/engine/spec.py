"""A container -> the OCI config.json dockerd would write for it.

Docker's defaults (moby's oci.DefaultLinuxSpec and daemon/oci_linux.go):
the default capability set, the default seccomp profile resolved for those
capabilities, masked and read-only paths, the standard mounts, a private
network namespace engine/networking.py prepared (the host's with --network host), cgroupsPath
/dockyard/<id>, resources, rlimits and sysctls from the HostConfig.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any

from dockyard.engine.model import Container
from dockyard.engine.users import resolve
from dockyard.errors import InvalidArgument, SystemError_

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
TMPFS_DEFAULTS = ["noexec", "nosuid", "nodev"]
CPU_PERIOD = 100_000
RLIMIT_NAMES = {"cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock",
                "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime"}
CGROUP_PARENT = "/dockyard"
INIT_DEST = "/sbin/docker-init"
DEFAULT_INIT = os.path.join(sys.prefix, "libexec", "dockyard-init")  # scripts/setup.sh builds it


@functools.cache
def default_seccomp_profile() -> dict:
    with open(os.path.join(os.path.dirname(__file__), "seccomp-default.json")) as f:
        return json.load(f)


def all_caps() -> list[str]:
    from dockyard.linux.capabilities import CAPS
    return list(CAPS)


def _cap_name(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") or name == "ALL" else "CAP_" + name


def grantable_caps() -> list[str]:
    """Every capability this kernel has that the daemon itself may grant (its bounding
    set): what --privileged and --cap-add ALL give, as a container cannot get more."""
    from dockyard.linux.capabilities import CAPS, last_cap
    bounding = (1 << (last_cap() + 1)) - 1
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    bounding = int(line.split()[1], 16)
    except OSError:
        pass
    return [name for name, bit in CAPS.items() if bounding >> bit & 1]


def capabilities(host_config: dict) -> list[str]:
    """docker's TweakCapabilities: default set, then --cap-drop, then --cap-add."""
    if host_config.get("Privileged"):
        return grantable_caps()
    known = set(all_caps())
    adds = [_cap_name(c) for c in host_config.get("CapAdd") or []]
    drops = [_cap_name(c) for c in host_config.get("CapDrop") or []]
    for cap in adds + drops:
        if cap != "ALL" and cap not in known:
            raise InvalidArgument(f"unknown capability: {cap!r}")
    caps = [] if "ALL" in drops else [c for c in DEFAULT_CAPS if c not in drops]
    if "ALL" in adds:
        return grantable_caps()
    for cap in adds:
        if cap not in caps:
            caps.append(cap)
    return caps


def security_options(host_config: dict) -> dict[str, str]:
    """--security-opt list -> {key: value}; "no-new-privileges" alone means true."""
    out: dict[str, str] = {}
    for opt in host_config.get("SecurityOpt") or []:
        if opt == "no-new-privileges":
            out["no-new-privileges"] = "true"
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
        out[key] = value
    return out


def seccomp(host_config: dict, caps: list[str]) -> dict | None:
    from dockyard.linux.seccomp_profile import resolve_docker_profile

    if host_config.get("Privileged"):
        return None
    value = security_options(host_config).get("seccomp", "")
    if value == "unconfined":
        return None
    if value and value != "builtin":
        try:
            profile = json.loads(value)
        except ValueError:
            raise InvalidArgument("decoding seccomp profile failed: invalid JSON") from None
    else:
        profile = default_seccomp_profile()
    return resolve_docker_profile(profile, caps, arch=os.uname().machine) or None


def environment(c: Container, hostname: str) -> list[str]:
    env = list(c.config.get("Env") or [])
    names = {e.split("=", 1)[0] for e in env}
    base = []
    if "PATH" not in names:
        base.append(f"PATH={DEFAULT_PATH}")
    base.append(f"HOSTNAME={hostname}")
    if c.config.get("Tty"):
        base.append("TERM=xterm")
    out: dict[str, str] = {}
    for e in base + env:
        out[e.split("=", 1)[0]] = e
    return list(out.values())


def standard_mounts(host_config: dict) -> list[dict[str, Any]]:
    privileged = bool(host_config.get("Privileged"))
    ro = [] if privileged else ["ro"]
    shm = int(host_config.get("ShmSize") or 64 << 20)
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *ro]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]},
    ]


def tmpfs_mounts(host_config: dict) -> list[dict]:
    out = []
    for dest, opts in sorted((host_config.get("Tmpfs") or {}).items()):
        if not dest.startswith("/"):
            raise InvalidArgument(f"invalid tmpfs mount point {dest!r}: must be absolute")
        user = [o for o in (opts or "").split(",") if o]
        merged = [o for o in TMPFS_DEFAULTS if o not in user and
                  not (o == "noexec" and "exec" in user) and
                  not (o == "nosuid" and "suid" in user) and
                  not (o == "nodev" and "dev" in user)] + user
        out.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": merged})
    return out


def file_mounts(c: Container) -> list[dict]:
    return [{"destination": f"/etc/{name}", "type": "bind",
             "source": os.path.join(c.path, name), "options": ["rbind", "rprivate"]}
            for name in ("resolv.conf", "hostname", "hosts")]


def resources(host_config: dict, block_devices: bool = True) -> dict:
    res: dict[str, Any] = {"devices": [{"allow": bool(host_config.get("Privileged")),
                                        "access": "rwm"}]}
    memory: dict[str, int] = {}
    if host_config.get("Memory"):
        memory["limit"] = int(host_config["Memory"])
    if host_config.get("MemorySwap"):
        memory["swap"] = int(host_config["MemorySwap"])
    if host_config.get("MemoryReservation"):
        memory["reservation"] = int(host_config["MemoryReservation"])
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = {}
    if host_config.get("CpuShares"):
        cpu["shares"] = int(host_config["CpuShares"])
    if host_config.get("NanoCpus"):
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = int(host_config["NanoCpus"]) * CPU_PERIOD // 1_000_000_000
    elif host_config.get("CpuQuota"):
        cpu["quota"] = int(host_config["CpuQuota"])
        cpu["period"] = int(host_config.get("CpuPeriod") or CPU_PERIOD)
    if host_config.get("CpusetCpus"):
        cpu["cpus"] = host_config["CpusetCpus"]
    if host_config.get("CpusetMems"):
        cpu["mems"] = host_config["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    pids = host_config.get("PidsLimit")
    if pids and int(pids) > 0:
        res["pids"] = {"limit": int(pids)}
    if bio := block_io(host_config, block_devices):
        res["blockIO"] = bio
    return res


class StartError(SystemError_):
    """What dockerd finds only when it makes the spec at start (a 500): the container
    stays created with exit code 128, whatever the message says."""


THROTTLES = (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
             ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
             ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
             ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice"))


def _devno(path: str) -> dict[str, int]:
    """A device path's major/minor. As dockerd, only a failed stat is an error (a file
    that is no device gives 0:0, which the kernel then refuses)."""
    try:
        rdev = os.stat(path).st_rdev
    except OSError as e:
        reason = (e.strerror or str(e))[:1].lower() + (e.strerror or str(e))[1:]
        raise StartError(f"stat {path}: {reason}") from None
    return {"major": os.major(rdev), "minor": os.minor(rdev)}


def block_io(host_config: dict, devices: bool = True) -> dict:
    """HostConfig.Blkio* -> linux.resources.blockIO (device paths as major:minor;
    devices=False leaves the device lists out)."""
    bio: dict[str, Any] = {}
    if host_config.get("BlkioWeight"):
        bio["weight"] = int(host_config["BlkioWeight"])
    if not devices:
        return bio
    weights = [{**_devno(d.get("Path") or ""), "weight": int(d.get("Weight") or 0)}
               for d in host_config.get("BlkioWeightDevice") or []]
    if weights:
        bio["weightDevice"] = weights
    for api, oci in THROTTLES:
        if devs := host_config.get(api):
            bio[oci] = [{**_devno(d.get("Path") or ""), "rate": int(d.get("Rate") or 0)}
                        for d in devs]
    return bio


def _go_caps(caps: list) -> str:
    """[][]string as Go's %v prints it: [[gpu] [compute utility]]."""
    return "[" + " ".join("[" + " ".join(map(str, c or [])) + "]" for c in caps) + "]"


def check_device_requests(host_config: dict) -> None:
    """dockerd hands each DeviceRequest to a device driver (nvidia, amd, cdi) that
    matches its driver name or capabilities; Dockyard has none, so like a dockerd
    without them, the start fails rather than run the container without the device."""
    for req in host_config.get("DeviceRequests") or []:
        raise StartError(f"could not select device driver \"{req.get('Driver') or ''}\" "
                           f"with capabilities: {_go_caps(req.get('Capabilities') or [])}")


def rlimits(host_config: dict) -> list[dict]:
    out = []
    for u in host_config.get("Ulimits") or []:
        name = str(u.get("Name", "")).lower()
        if name not in RLIMIT_NAMES:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        soft, hard = int(u.get("Soft", 0)), int(u.get("Hard", 0))
        if soft > hard:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard "
                                  f"limit: {soft} > {hard}")
        out.append({"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard})
    return out


def devices(host_config: dict) -> tuple[list[dict], list[dict]]:
    """--device host[:container[:perms]] -> (linux.devices, cgroup allow rules)."""
    import stat

    devs, rules = [], []
    for d in host_config.get("Devices") or []:
        host = d.get("PathOnHost") or ""
        inside = d.get("PathInContainer") or host
        perms = d.get("CgroupPermissions") or "rwm"
        try:
            st = os.stat(host)
        except OSError as e:
            raise InvalidArgument(f"error gathering device information while adding custom "
                                  f"device \"{host}\": {e.strerror}") from None
        if stat.S_ISCHR(st.st_mode):
            kind = "c"
        elif stat.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            raise InvalidArgument(f"error gathering device information while adding custom "
                                  f"device \"{host}\": not a device node")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        devs.append({"path": inside, "type": kind, "major": major, "minor": minor,
                     "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0})
        rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                      "access": perms})
    return devs, rules


def hostname_of(c: Container) -> str:
    return c.config.get("Hostname") or c.id[:12]


def init_binary(path: str | None = None) -> str:
    """The --init binary: the daemon's init-path, else the one setup.sh builds in the venv."""
    path = path or DEFAULT_INIT
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise SystemError_(f"docker-init binary not found: {path} (build it with "
                           "scripts/setup.sh, or set init-path in daemon.json)")
    return path


def wants_init(hc: dict, default: bool = False) -> bool:
    """HostConfig.Init, or the daemon's "init" default when it is null (as docker)."""
    if hc.get("Init") is not None:
        return bool(hc["Init"])
    return default


def namespace_modes(hc: dict[str, Any]) -> dict[str, str]:
    """--pid, --ipc and --uts as {kind: "host" | "container:<ref>"} (checked as
    dockerd checks them); what is not there is the container's own."""
    out = {}
    for kind, key, own in (("pid", "PidMode", ("",)),
                           ("ipc", "IpcMode", ("", "private", "shareable", "none")),
                           ("uts", "UTSMode", ("",))):
        mode = str(hc.get(key) or "")
        if mode == "host" or (mode.startswith("container:") and mode[10:]
                              and kind != "uts"):
            out[kind] = mode
        elif mode not in own:
            raise InvalidArgument(f"invalid {kind.upper()} mode: {mode}")
    return out


def build(c: Container, rootfs: str, *, init_default: bool = False,
          init_path: str | None = None, default_ulimits: list[dict] | None = None,
          start: bool = True, shared: dict[str, str] | None = None) -> dict:
    """The OCI config for container `c` whose root file system is mounted at `rootfs`.

    init_default/init_path: the daemon's "init" and "init-path" settings;
    default_ulimits: its "default-ulimits" (for the names the container sets none of);
    start=False: the check at create, without what dockerd only looks at when the
    container starts (block devices, device requests): those fail the start only.
    shared: namespaces not the container's own, by type: "host", or another
    container's namespace file (--pid/--ipc container:X, see shared_namespaces)."""
    cfg, hc = c.config, c.host_config
    privileged = bool(hc.get("Privileged"))
    hostname = hostname_of(c)
    argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if not argv:
        raise InvalidArgument("no command specified")
    init_mounts = []
    if wants_init(hc, init_default):
        # docker's layout: the init bind-mounted read-only, the command after "--"
        init_mounts.append({"destination": INIT_DEST, "type": "bind",
                            "source": init_binary(init_path), "options": ["bind", "ro"]})
        argv = [INIT_DEST, "--", *argv]
    user = resolve(rootfs, cfg.get("User") or "", hc.get("GroupAdd"))
    caps = capabilities(hc)
    opts = security_options(hc)
    process: dict[str, Any] = {
        "terminal": bool(cfg.get("Tty")),
        "user": {"uid": user.uid, "gid": user.gid},
        "args": argv,
        "env": environment(c, hostname),
        "cwd": cfg.get("WorkingDir") or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": opts.get("no-new-privileges", "false") in ("true", "1", ""),
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = user.additional_gids
    own = {str(u.get("Name", "")).lower() for u in hc.get("Ulimits") or []}
    merged = list(hc.get("Ulimits") or []) + [
        u for u in default_ulimits or [] if str(u.get("Name", "")).lower() not in own]
    if limits := rlimits({"Ulimits": merged}):
        process["rlimits"] = limits
    if hc.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(hc["OomScoreAdj"])
    res = resources(hc, block_devices=start)
    devs, dev_rules = devices(hc)
    if start:
        check_device_requests(hc)
    res["devices"] += dev_rules
    namespace_modes(hc)  # a bad --pid/--ipc/--uts: 400 at create
    namespaces = []
    for kind in ("mount", "network", "uts", "pid", "ipc"):
        where = (shared or {}).get(kind)
        if where != "host":
            namespaces.append({"type": kind, **({"path": where} if where else {})})
    netns = c.extra.get("netns")  # engine/networking.py: a namespace file, or "host"
    if netns:
        namespaces = [n for n in namespaces if n["type"] != "network"]
        if netns != "host":
            namespaces.insert(1, {"type": "network", "path": netns})
    from dockyard.linux import cgroups
    if cgroups.detect_mode() == "v2":
        namespaces.append({"type": "cgroup"})
    linux: dict[str, Any] = {
        "resources": res,
        "cgroupsPath": f"{CGROUP_PARENT}/{c.id}",
        "namespaces": namespaces,
    }
    if devs:
        linux["devices"] = devs
    if hc.get("Sysctls"):
        linux["sysctl"] = {str(k): str(v) for k, v in hc["Sysctls"].items()}
    if not privileged:
        linux["maskedPaths"] = list(hc.get("MaskedPaths") or MASKED_PATHS)
        linux["readonlyPaths"] = list(hc.get("ReadonlyPaths") or READONLY_PATHS)
    profile = seccomp(hc, caps)
    if profile:
        linux["seccomp"] = profile
    mounts = standard_mounts(hc) + tmpfs_mounts(hc) + file_mounts(c)
    from dockyard.engine.mounts import oci_mounts  # volumes, binds, --mount tmpfs
    user_mounts, propagation = oci_mounts(c.extra.get("mountpoints") or [])
    mounts += user_mounts
    if propagation:
        linux["rootfsPropagation"] = propagation
    mounts += init_mounts
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if cfg.get("Domainname"):
        spec["domainname"] = cfg["Domainname"]
    return spec


HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
         "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
         "ff02::2\tip6-allrouters\n")


def resolv_conf(host_file: str = "/etc/resolv.conf") -> str:
    """The host's resolv.conf without loopback nameservers (docker's fallback: Google DNS)."""
    try:
        with open(host_file) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    out, servers = [], 0
    for line in lines:
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            if fields[1].startswith("127.") or fields[1] == "::1":
                continue
            servers += 1
        out.append(line)
    if not servers:
        out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(out) + "\n"


def write_files(c: Container) -> None:
    """The per-container /etc/hostname, /etc/hosts and /etc/resolv.conf."""
    for name, text in (("hostname", hostname_of(c) + "\n"), ("hosts", HOSTS),
                       ("resolv.conf", resolv_conf())):
        path = os.path.join(c.path, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)


def ensure_working_dir(c: Container, rootfs: str) -> None:
    """docker creates a missing WorkingDir (0755, root's) in the container's root before
    each start; it is resolved inside the root, never through a symlink out of it."""
    from dockyard.runtime.paths import make_mountpoint, secure_join

    wd = c.config.get("WorkingDir") or ""
    if not wd or wd == "/":
        return
    path = secure_join(rootfs, wd)
    if os.path.isdir(path):
        return
    try:
        make_mountpoint(rootfs, path, is_dir=True)
    except OSError as e:
        raise InvalidArgument(f"cannot create the working directory {wd}: "
                              f"{e.strerror or e}") from None
    if not os.path.isdir(path):
        raise InvalidArgument(f"the working directory {wd} is not a directory")
