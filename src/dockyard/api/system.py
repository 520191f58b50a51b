"""System endpoints: /_ping, /version, /info (/events is api/events.py)."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import threading
import time
import uuid

from aiohttp import web

from dockyard import __version__
from dockyard.api.server import (
    API_VERSION,
    MIN_API_VERSION,
    SERVER_HEADER,
    Routes,
    backend,
    json_response,
)

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
PING_HEADERS = {
    "Api-Version": API_VERSION,
    "Ostype": "linux",
    "Docker-Experimental": "false",
    "Builder-Version": "1",  # the classic builder: there is no BuildKit here
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Server": SERVER_HEADER,
}


def register(routes: Routes) -> None:
    routes.get("/_ping", ping)
    routes.head("/_ping", ping)
    routes.get("/version", version)
    routes.get("/info", info)
    routes.get("/system/df", disk_usage)


async def ping(request: web.Request) -> web.Response:
    if request.method == "HEAD":
        return web.Response(headers={**PING_HEADERS, "Content-Type": "text/plain; charset=utf-8",
                                     "Content-Length": "0"})
    return web.Response(text="OK", headers=PING_HEADERS)


def _arch() -> str:
    machine = platform.machine()
    return GO_ARCH.get(machine, machine)


def _python() -> str:
    return f"python{platform.python_version()}"


async def version(request: web.Request) -> web.Response:
    kernel = platform.release()
    details = {"ApiVersion": API_VERSION, "Arch": _arch(), "BuildTime": "", "Experimental":
               "false", "GitCommit": "", "GoVersion": _python(), "KernelVersion": kernel,
               "MinAPIVersion": MIN_API_VERSION, "Os": "linux"}
    return json_response({
        "Platform": {"Name": "Dockyard Engine"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": _python(),
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    })


def _os_release() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _nfd() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _sysctl(path: str) -> bool:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def engine_id(data_root: str) -> str:
    """A stable id for this engine, kept in <data-root>/engine-id."""
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path, encoding="ascii") as f:
            value = f.read().strip()
            if value:
                return value
    except OSError:
        pass
    value = str(uuid.uuid4())
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return value


def _registry_config(api) -> dict:
    insecure = ["127.0.0.0/8", "::1/128"] + [r for r in api.insecure_registries if "/" in r]
    index = {"docker.io": {"Name": "docker.io", "Mirrors": list(api.registry_mirrors),
                           "Secure": True, "Official": True}}
    for name in api.insecure_registries:
        if "/" not in name:
            index[name] = {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
    return {"AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": insecure, "IndexConfigs": index,
            "Mirrors": list(api.registry_mirrors)}


def _counts(api) -> dict[str, int]:
    """Containers by state, as dockerd counts them (restarting counts as running)."""
    states = [c.state for c in api.containers.store.list()] if api.containers else []
    paused = sum(1 for st in states if st.Paused)
    running = sum(1 for st in states if st.Running and not st.Paused)
    return {"Containers": len(states), "ContainersRunning": running,
            "ContainersPaused": paused, "ContainersStopped": len(states) - running - paused}


def _info(api) -> dict:
    images = api.images.list()
    now = time.time()
    return {
        "ID": engine_id(api.data_root),
        **_counts(api),
        "Images": len(images),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                         ["Using metacopy", "false"], ["Native Overlay Diff", "true"],
                         ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file", "local", "none"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False,
        "KernelMemoryTCP": False, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "OomKillDisable": False,
        "IPv4Forwarding": _sysctl("/proc/sys/net/ipv4/ip_forward"),
        "BridgeNfIptables": _sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        "BridgeNfIp6tables": _sysctl("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
        "Debug": api.debug,
        "NFd": _nfd(),
        "NGoroutines": threading.active_count(),
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + f".{int(now % 1 * 1e9):09d}Z",
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_release(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": _registry_config(api),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": api.data_root,
        "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
        "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"dockyard": {"path": "dockyard-runtime"}},
        "DefaultRuntime": "dockyard",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": api.live_restore,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"]
        + (["name=cgroupns"] if _cgroup_version() == "2" else []),
        "ProductLicense": "",
        "DefaultAddressPools": [],
        "Warnings": [],
    }


async def info(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(_info, backend(request)))


async def disk_usage(request: web.Request) -> web.Response:
    from dockyard.engine.containerfs import disk_usage as usage
    from dockyard.errors import DockyardError

    api = backend(request)
    if api.containers is None:
        raise DockyardError("the container engine is not available")
    from dockyard.api.build import cache_usage

    doc = await asyncio.to_thread(usage, api.containers)
    doc["BuildCache"] = await asyncio.to_thread(cache_usage, request)
    return json_response(doc)
