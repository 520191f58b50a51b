"""`dockyard daemon`: serve the Engine API on a Unix socket (and TLS-verified TCP).

Configuration is /etc/dockyard/daemon.json with Docker's keys where they apply
(data-root, hosts, registry-mirrors, insecure-registries, debug, log-level,
pidfile, group, tls*); a flag overrides the file. Keys Docker knows that
later parts of the engine will use are accepted and ignored for now; any
other key is refused, as dockerd does.

Listeners: unix:// sockets get mode 0660 and the group `dockyard` (when it
exists); tcp:// only with --tlsverify (a client certificate signed by
--tlscacert is required), anything else is refused. One daemon per data
root (a lock file), a pidfile, and SIGTERM/SIGINT stop it: listeners close,
running requests get a few seconds, the sockets and the pidfile are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import grp
import json
import logging
import os
import signal
import socket
import ssl
import stat
import sys
from dataclasses import dataclass, field

from dockyard.errors import ConfigError, DockyardError, InvalidArgument

log = logging.getLogger("dockyard.daemon")

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
DEFAULT_CONFIG = "/etc/dockyard/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_EXEC_ROOT = "/run/dockyard"
DEFAULT_PIDFILE = "/run/dockyard/dockyard.pid"
DEFAULT_GROUP = "dockyard"
DEFAULT_TLS_PORT = 2376
SHUTDOWN_GRACE = 10.0

# daemon.json keys used now: key -> expected type(s)
APPLIED: dict[str, type | tuple[type, ...]] = {
    "data-root": str, "hosts": list, "registry-mirrors": list, "insecure-registries": list,
    "debug": bool, "log-level": str, "pidfile": str, "group": str, "tls": bool,
    "tlsverify": bool, "tlscacert": str, "tlscert": str, "tlskey": str,
    "exec-root": str, "live-restore": bool,
    "init": bool, "init-path": str, "log-driver": str, "log-opts": dict, "detach-keys": str,
    "default-ulimits": dict,
    # networks (engine/networking.py); dockyard-chain-prefix is ours: the iptables chains' prefix
    "bridge": str, "bip": str, "default-address-pools": list, "iptables": bool, "dns": list,
    "dns-search": list, "dns-opts": list, "dockyard-chain-prefix": str,
}
# Docker's keys that later parts of the engine will honour: accepted, ignored for now
LATER = frozenset({
    "storage-driver", "storage-opts", "default-runtime",
    "runtimes", "features", "builder", "labels", "max-concurrent-downloads",
    "max-concurrent-uploads", "max-download-attempts", "shutdown-timeout",
    "mtu", "userland-proxy", "ip-forward", "ip6tables", "ipv6",
    "fixed-cidr", "fixed-cidr-v6", "experimental", "default-cgroupns-mode", "cgroup-parent",
    "exec-opts", "default-shm-size", "seccomp-profile", "no-new-privileges", "icc", "ip",
    "oom-score-adjust", "selinux-enabled", "userns-remap",
    "default-ipc-mode", "containerd", "metrics-addr", "proxies", "log-format",
})
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR, "fatal": logging.CRITICAL}


@dataclass
class Settings:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    live_restore: bool = False
    pidfile: str = DEFAULT_PIDFILE
    group: str = DEFAULT_GROUP
    debug: bool = False
    log_level: str = "info"
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    init: bool = False  # --init for every container whose HostConfig.Init is null
    init_path: str = ""  # default: the venv's libexec/dockyard-init (scripts/setup.sh)
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    detach_keys: str = ""  # attach's default detach keys (docker's: ctrl-p,ctrl-q)
    default_ulimits: list = field(default_factory=list)  # [{"Name", "Soft", "Hard"}]
    bridge: str = "dockyard0"  # the default network's Linux bridge
    bip: str = ""  # its gateway/prefix (default 172.30.0.1/16)
    default_address_pools: list[dict] = field(default_factory=list)
    iptables: bool = True
    chain_prefix: str = "DOCKYARD"  # our iptables chains (unique per daemon on one host)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opts: list[str] = field(default_factory=list)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard daemon", allow_abbrev=False,
                                description="Serve the Docker Engine API.")
    p.add_argument("-H", "--host", action="append", dest="hosts",
                   help=f"daemon socket(s) to listen on (default {DEFAULT_HOST})")
    p.add_argument("--data-root", help=f"engine state directory (default {DEFAULT_DATA_ROOT})")
    p.add_argument("--exec-root", help=f"runtime state directory (default {DEFAULT_EXEC_ROOT})")
    p.add_argument("--live-restore", action="store_true", default=None,
                   help="keep containers running while the daemon is down")
    p.add_argument("--config-file", help=f"daemon configuration file (default {DEFAULT_CONFIG})")
    p.add_argument("-p", "--pidfile", help=f"path of the pid file (default {DEFAULT_PIDFILE}; "
                   "empty: none)")
    p.add_argument("-G", "--group", help="group owning the Unix sockets (default dockyard)")
    p.add_argument("-D", "--debug", action="store_true", default=None)
    p.add_argument("-l", "--log-level", choices=sorted(LOG_LEVELS))
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--tlsverify", action="store_true", default=None,
                   help="listen on tcp:// with TLS, requiring client certificates")
    p.add_argument("--tlscacert", help="CA certificate clients' certificates must chain to")
    p.add_argument("--tlscert", help="the server certificate (PEM)")
    p.add_argument("--tlskey", help="the server key (PEM)")
    return p


def load_config_file(path: str, explicit: bool) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if explicit:
            raise ConfigError("", f"unable to configure the daemon with file {path}: "
                              "no such file") from None
        return {}
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ConfigError("", f"unable to configure the daemon with file {path}: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError("", f"{path}: the configuration must be a JSON object")
    unknown = sorted(k for k in doc if k not in APPLIED and k not in LATER)
    if unknown:
        raise ConfigError("", f"{path}: the following directives don't match any "
                          f"configuration option: {', '.join(unknown)}")
    for key, kind in APPLIED.items():
        if key in doc and not isinstance(doc[key], kind):
            raise ConfigError(key, f"{path}: wrong type, want {getattr(kind, '__name__', kind)}")
        if kind is list and key in doc and key != "default-address-pools" \
                and not all(isinstance(v, str) for v in doc[key]):
            raise ConfigError(key, f"{path}: every entry must be a string")
    return doc


def settings_from(argv: list[str], default_data_root: str = DEFAULT_DATA_ROOT) -> Settings:
    args = _parser().parse_args(argv)
    doc = load_config_file(args.config_file or DEFAULT_CONFIG, bool(args.config_file))
    s = Settings()
    s.data_root = default_data_root

    def pick(flag, key: str, current):
        if flag is not None:
            return flag
        return doc.get(key, current)

    s.hosts = pick(args.hosts, "hosts", s.hosts) or [DEFAULT_HOST]
    s.data_root = os.path.abspath(pick(args.data_root, "data-root", s.data_root))
    s.exec_root = os.path.abspath(pick(args.exec_root, "exec-root", s.exec_root))
    s.live_restore = bool(pick(args.live_restore, "live-restore", s.live_restore))
    s.pidfile = pick(args.pidfile, "pidfile", s.pidfile)
    s.group = pick(args.group, "group", s.group)
    s.debug = bool(pick(args.debug, "debug", s.debug))
    s.log_level = pick(args.log_level, "log-level", s.log_level)
    if s.log_level not in LOG_LEVELS:
        raise ConfigError("log-level", f"unknown log level {s.log_level!r}")
    s.registry_mirrors = pick(args.registry_mirrors, "registry-mirrors", s.registry_mirrors)
    s.insecure_registries = pick(args.insecure_registries, "insecure-registries",
                                 s.insecure_registries)
    s.tlsverify = bool(pick(args.tlsverify, "tlsverify", s.tlsverify))
    for name in ("tlscacert", "tlscert", "tlskey"):
        setattr(s, name, pick(getattr(args, name), name, ""))
    s.init = bool(doc.get("init", False))
    s.init_path = doc.get("init-path", "")
    s.log_driver = doc.get("log-driver") or "json-file"
    s.log_opts = {str(k): str(v) for k, v in (doc.get("log-opts") or {}).items()}
    s.detach_keys = doc.get("detach-keys", "")
    s.default_ulimits = _default_ulimits(doc.get("default-ulimits") or {})
    s.bridge = doc.get("bridge") or s.bridge
    s.bip = doc.get("bip", "")
    s.default_address_pools = list(doc.get("default-address-pools") or [])
    s.iptables = bool(doc.get("iptables", True))
    s.chain_prefix = doc.get("dockyard-chain-prefix") or s.chain_prefix
    s.dns, s.dns_search, s.dns_opts = (list(doc.get(k) or []) for k in ("dns", "dns-search",
                                                                      "dns-opts"))
    _check_container_defaults(s)
    return s


def _default_ulimits(doc: dict) -> list[dict]:
    """daemon.json's {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}} -> the
    HostConfig.Ulimits entries containers get for the names they do not set."""
    from dockyard.engine.spec import RLIMIT_NAMES

    out = []
    for key, value in doc.items():
        where = f"default-ulimits.{key}"
        if not isinstance(value, dict):
            raise ConfigError(where, "must be an object with Name, Soft and Hard")
        name = str(value.get("Name") or key).lower()
        soft, hard = value.get("Soft"), value.get("Hard")
        if name not in RLIMIT_NAMES:
            raise ConfigError(where, f"invalid ulimit type: {name}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (soft, hard)):
            raise ConfigError(where, "Soft and Hard must be integers")
        if soft > hard:
            raise ConfigError(where, f"ulimit soft limit must be less than or equal to hard "
                                     f"limit: {soft} > {hard}")
        out.append({"Name": name, "Soft": soft, "Hard": hard})
    return out


def _check_container_defaults(s: Settings) -> None:
    """A bad log driver, log option or detach key sequence stops the daemon at start."""
    from dockyard.detachkeys import parse_detach_keys
    from dockyard.engine.config import LOG_DRIVERS
    from dockyard.engine.logfile import validate_opts

    if s.log_driver not in LOG_DRIVERS:
        raise ConfigError("log-driver", f"logger: no log driver named '{s.log_driver}' is "
                          "registered")
    try:
        validate_opts(s.log_driver, s.log_opts)
        if s.detach_keys:
            parse_detach_keys(s.detach_keys)
    except InvalidArgument as e:
        raise ConfigError("", str(e)) from None


# -- listeners ---------------------------------------------------------------------------

def parse_host(text: str) -> tuple[str, str, int]:
    """("unix", path, 0) or ("tcp", host, port)."""
    if text.startswith("/"):
        text = "unix://" + text
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise InvalidArgument(f"invalid daemon host {text!r}: want unix:///path or "
                              "tcp://host:port")
    if scheme == "unix":
        return "unix", rest or DEFAULT_HOST.removeprefix("unix://"), 0
    if scheme == "tcp":
        host, colon, port = rest.rstrip("/").rpartition(":")
        if not colon:
            host, port = rest.rstrip("/"), str(DEFAULT_TLS_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"invalid daemon host {text!r}: bad port")
        return "tcp", host.strip("[]") or "0.0.0.0", int(port)
    raise InvalidArgument(f"invalid daemon host {text!r}: {scheme}:// is not supported")


def check_listeners(s: Settings) -> list[tuple[str, str, int]]:
    listeners = [parse_host(h) for h in s.hosts]
    for kind, host, port in listeners:
        if kind == "tcp" and not s.tlsverify:
            raise InvalidArgument(f"refusing to listen on tcp://{host}:{port} without "
                                  "--tlsverify (TLS with client certificates); use a unix:// "
                                  "socket or configure --tlsverify, --tlscacert, --tlscert "
                                  "and --tlskey")
    return listeners


def tls_context(s: Settings) -> ssl.SSLContext:
    missing = [f"--{n}" for n in ("tlscacert", "tlscert", "tlskey") if not getattr(s, n)]
    if missing:
        raise InvalidArgument(f"--tlsverify needs {', '.join(missing)}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=s.tlscacert)
    ctx.load_cert_chain(s.tlscert, s.tlskey)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def unix_listener(path: str, group: str, explicit_group: bool) -> socket.socket:
    """A listening socket at `path`: mode 0660, group `group` when it exists."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise InvalidArgument(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale, left by a daemon that died
        else:
            raise DockyardError(f"another daemon is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o660)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        if explicit_group:
            sock.close()
            os.unlink(path)
            raise InvalidArgument(f"group {group} not found") from None
        gid = None
    if gid is not None:
        with contextlib.suppress(PermissionError):
            os.chown(path, -1, gid)
    sock.listen(128)
    sock.setblocking(False)
    return sock


# -- process guards ----------------------------------------------------------------------

def lock_data_root(data_root: str) -> int:
    os.makedirs(data_root, mode=0o711, exist_ok=True)
    fd = os.open(os.path.join(data_root, "daemon.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DockyardError(f"data root {data_root} is in use by another dockyard daemon"
                            ) from None
    return fd


def write_pidfile(path: str) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        with open(path, encoding="ascii") as f:
            pid = int(f.read().strip() or "0")
        if pid and pid != os.getpid() and os.path.exists(f"/proc/{pid}"):
            raise DockyardError(f"pid file found, ensure dockyard daemon is not running or "
                                f"delete {path}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


# -- the daemon --------------------------------------------------------------------------

def make_image_service(s: Settings):
    """The daemon's ImageService: registry credentials come from each request's
    X-Registry-Auth (dockerd reads no client config.json)."""
    from dockyard.api.images import REQUEST_CREDENTIALS
    from dockyard.image.service import ImageService

    return ImageService(s.data_root, insecure=tuple(s.insecure_registries),
                        mirrors=tuple(s.registry_mirrors), credentials=REQUEST_CREDENTIALS)


def make_network(s: Settings, loop=None):
    """The network manager: bridges, NAT, DNS on the daemon's loop (engine/networking.py)."""
    from dockyard.engine.networking import NetworkManager

    return NetworkManager(s.data_root, s.exec_root, bridge_name=s.bridge,
                          bridge_subnet=s.bip or None, pools=s.default_address_pools or None,
                          chain_prefix=s.chain_prefix, iptables=s.iptables,
                          dns_servers=s.dns, dns_search=s.dns_search or None,
                          dns_options=s.dns_opts or None, loop=loop)


def make_engine(s: Settings, images, loop=None):
    """The container engine (it starts or adopts the monitor of the exec root)."""
    from dockyard.engine.engine import Engine

    engine = Engine(s.data_root, s.exec_root, images, log_driver=s.log_driver,
                    log_opts=s.log_opts, init=s.init,
                    init_path=os.path.abspath(s.init_path) if s.init_path else None,
                    network=make_network(s, loop))
    engine.detach_keys = s.detach_keys  # read by api/attach.py
    engine.default_ulimits = s.default_ulimits
    return engine


def stop_engine(engine, live_restore: bool) -> None:
    """Daemon shutdown: without live-restore, stop what runs. The monitor goes too once
    nothing runs (with live-restore it stays while it has containers to look after)."""
    import threading

    if not live_restore:
        running = [c["Id"] for c in engine.list()]
        threads = [threading.Thread(target=_stop_quietly, args=(engine, cid)) for cid in running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    try:
        others = engine.monitor.running()  # with live-restore, or another daemon's
    except (OSError, DockyardError):
        others = {"?": {}}  # cannot tell: leave it
    if not others:
        engine.monitor.shutdown()
    engine.close()
    if not others:  # nothing runs: our rules, bridges and netns mount go (start remakes them)
        try:
            engine.network.purge()
        except (OSError, DockyardError) as e:
            log.warning("removing the networks' kernel state: %s", e)


def _stop_quietly(engine, cid: str) -> None:
    try:
        engine.stop(cid, by_user=False)
    except DockyardError as e:
        log.debug("stop %s at shutdown: %s", cid[:12], e)


async def serve(s: Settings, explicit_group: bool) -> None:
    from aiohttp import web

    from dockyard.api.server import ApiBackend, make_app

    listeners = check_listeners(s)
    ssl_ctx = tls_context(s) if any(k == "tcp" for k, _, _ in listeners) else None
    svc = make_image_service(s)
    engine = await asyncio.to_thread(make_engine, s, svc, asyncio.get_running_loop())
    api = ApiBackend(images=svc, data_root=s.data_root, containers=engine,
                     insecure_registries=tuple(s.insecure_registries),
                     registry_mirrors=tuple(s.registry_mirrors), debug=s.debug,
                     live_restore=s.live_restore,
                     hosts=tuple(s.hosts))
    app = make_app(api)
    runner = web.AppRunner(app, access_log=log if s.debug else None,
                           shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    sockets: list[str] = []
    try:
        for kind, host, port in listeners:
            if kind == "unix":
                sock = unix_listener(host, s.group, explicit_group)
                sockets.append(host)
                await web.SockSite(runner, sock, shutdown_timeout=SHUTDOWN_GRACE).start()
                log.info("API listen on %s", host)
            else:
                await web.TCPSite(runner, host, port, ssl_context=ssl_ctx,
                                  shutdown_timeout=SHUTDOWN_GRACE).start()
                log.info("API listen on %s:%d (TLS, client certificates required)", host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("Daemon has completed initialization")
        await stop.wait()
        log.info("Processing signal, shutting down")
    finally:
        api.stopping.set()
        await runner.cleanup()
        await asyncio.to_thread(stop_engine, engine, s.live_restore)
        for path in sockets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        svc.close()
    log.info("Daemon shutdown complete")


def daemon(argv: list[str], ctx) -> int:
    try:
        return _run(argv, getattr(ctx, "data_root", None) or DEFAULT_DATA_ROOT)
    except DockyardError as e:
        print(f"dockyard daemon: {e}", file=sys.stderr)
        return 1


def _run(argv: list[str], default_data_root: str) -> int:
    s = settings_from(argv, default_data_root)
    logging.basicConfig(level=logging.DEBUG if s.debug else LOG_LEVELS[s.log_level],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    explicit_group = "-G" in argv or any(a.startswith("--group") for a in argv)
    if any(kind == "tcp" for kind, _, _ in check_listeners(s)):
        tls_context(s)  # certificates readable before anything is created
    lock_fd = lock_data_root(s.data_root)
    try:
        if s.pidfile:
            write_pidfile(s.pidfile)
        try:
            asyncio.run(serve(s, explicit_group))
        finally:
            if s.pidfile:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(s.pidfile)
    finally:
        os.close(lock_fd)
    return 0
