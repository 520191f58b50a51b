"""The container engine: lifecycle, state machine, restart policies, reconciliation.

Containers are run by the monitor process (engine/monitor.py), never by this
process; signals, pause and cgroup reads go through the runtime library
in-process (no fork). The monitor reports exits over its control socket; a
background thread applies them here (state, restart policy, --rm). State is
in the SQLite store; exits that happen while no engine runs are read back
from <data-root>/containers/<id>/exit.json at the next start.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable

from dockyard.engine import config as cfgmod
from dockyard.engine import health, restart
from dockyard.engine import mounts as volmounts
from dockyard.engine import spec as specmod
from dockyard.engine.events import EventBus, container_attributes
from dockyard.engine.health import HealthChecker
from dockyard.engine.model import Container, parse_time
from dockyard.engine.monitor_client import MonitorClient
from dockyard.engine.queries import EngineQueries
from dockyard.engine.store import ContainerStore
from dockyard.engine.util import read_json as _read_json
from dockyard.engine.util import start_error_code as _start_error_code
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, SystemError_
from dockyard.fsutil import remove_later
from dockyard.linux import signals as sg
from dockyard.linux.mount import is_mount_point
from dockyard.linux.signals import parse as _parse_signal
from dockyard.runtime import container as rt
from dockyard.volume.service import VolumeService


class _StoppedMeanwhile(Exception):
    """A restart's launch found the container stopped by the user meanwhile."""


class NotModified(DockyardError):
    """Nothing to do (the API's 304): already started, already stopped."""

    status = 304


class Engine(EngineQueries):
    def __init__(self, data_root: str, exec_root: str, image_service, *,
                 runtime: str | None = None, log_driver: str = "json-file",
                 log_opts: dict | None = None, events: EventBus | None = None,
                 init: bool = False, init_path: str | None = None, network=None):
        self.events = events or EventBus()
        self.init_default, self.init_path = init, init_path  # daemon.json init, init-path
        self.detach_keys = ""  # daemon.json detach-keys (the API's default for attach)
        self.default_ulimits: list[dict] = []  # daemon.json default-ulimits
        self.data_root = os.path.abspath(data_root)
        self.exec_root = os.path.abspath(exec_root)
        self.images = image_service
        self.log_driver = log_driver
        self.log_opts = dict(log_opts or {})
        self.containers_dir = os.path.join(self.data_root, "containers")
        self.runtime_root = os.path.join(self.exec_root, "runtime")
        os.makedirs(self.containers_dir, mode=0o710, exist_ok=True)
        # removed containers' directories, deleted in the background (what a crash
        # left there goes now)
        self.trash_dir = os.path.join(self.data_root, "trash", "containers")
        shutil.rmtree(self.trash_dir, ignore_errors=True)
        os.makedirs(self.trash_dir, mode=0o700, exist_ok=True)
        self.store = ContainerStore(self.data_root)
        self.volumes = VolumeService(self.data_root)
        volmounts.restore(self.volumes, self.store.list())  # volume references, as dockerd
        self._cond = threading.Condition(threading.RLock())
        self._starting: set[str] = set()
        self._removing: set[str] = set()
        self._early: dict[str, dict] = {}
        self._exiting: set[str] = set()  # exits being applied (their teardown runs)
        self._exits: dict[str, int] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._delays: dict[str, float] = {}
        self.health = HealthChecker(self)
        self.monitor = MonitorClient(self.exec_root, runtime)
        self.monitor.ensure()
        from dockyard.engine.networking import NoNetwork
        self.network = network if network is not None else NoNetwork()  # engine/networking.py
        self.network.bind(self)
        self.monitor.subscribe(self._on_event, on_reconnect=self.reconcile)
        self._shutting_down: set[str] = set()  # stopped by the daemon's shutdown
        self.reconcile()
        self._start_on_boot()

    def close(self) -> None:
        """Forget this engine (containers and the monitor keep running)."""
        with self._cond:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        self.health.close()
        self.network.close()
        self.monitor.close()
        self.store.close()

    # -- helpers --------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        return self.store.get(ref)

    def _paths(self, c: Container) -> tuple[str, str, str]:
        """(rootfs, exit file, log file)"""
        log_name = (f"{c.id}-json.log" if self._driver(c) != "local"
                    else os.path.join("local-logs", "container.log"))
        return (os.path.join(c.path, "rootfs"), os.path.join(c.path, "exit.json"),
                os.path.join(c.path, log_name))

    def _driver(self, c: Container) -> str:
        return (c.host_config.get("LogConfig") or {}).get("Type") or "json-file"

    def _spec(self, c: Container, rootfs: str, start: bool = True) -> dict:
        return specmod.build(c, rootfs, init_default=self.init_default,
                             init_path=self.init_path, default_ulimits=self.default_ulimits,
                             start=start, shared=self._shared_namespaces(c) if start else None)

    def _shared_namespaces(self, c: Container) -> dict[str, str]:
        """--pid/--ipc/--uts host, or container:X: X's namespace files (X must run)."""
        out = {}
        for kind, mode in specmod.namespace_modes(c.host_config).items():
            if mode == "host":
                out[kind] = "host"
                continue
            other = self.store.get(mode[len("container:"):])
            if other.id == c.id:
                raise InvalidArgument(f"cannot join own {kind.upper()} namespace")
            if not other.state.Running or other.state.Restarting or not other.state.Pid:
                raise Conflict(f"cannot join {kind.upper()} of a non running container: "
                               f"{other.id}")
            out[kind] = f"/proc/{other.state.Pid}/ns/{kind}"
        return out

    def _save(self, c: Container) -> None:
        self.store.save(c)
        self._cond.notify_all()

    def emit(self, c: Container, action: str, **attrs) -> None:
        """Publish a container event (docker's attributes: labels, image, name, `attrs`)."""
        self.events.emit("container", action, c.id, container_attributes(
            c.name, c.image_name, c.config.get("Labels"), attrs))

    # -- create -----------------------------------------------------------------------------

    def create(self, config: dict, host_config: dict | None = None,
               name: str | None = None, networking: dict | None = None) -> str:
        config = dict(config or {})
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise InvalidArgument("config.Image is required")
        image = self.images.get(image_ref)  # NotFound "No such image: x" (404: the CLI pulls)
        hc = cfgmod.check_host_config(host_config or {})
        if not hc["LogConfig"]["Config"] and hc["LogConfig"]["Type"] == self.log_driver:
            hc["LogConfig"]["Config"] = dict(self.log_opts)
        merged = cfgmod.merge_image_config(config, image.config.get("config") or {})
        health.apply_merge(merged, config, image.config.get("config") or {})  # field by field
        health.check_config(merged.get("Healthcheck"))
        if not (merged.get("Entrypoint") or merged.get("Cmd")):
            raise InvalidArgument("No command specified")
        points = volmounts.parse(merged, hc, volmounts.lookup_in(self.store))  # 400s first
        full_name = cfgmod.check_name(name) if name else self._free_random_name()
        try:  # fail early on a taken name; store.add decides for good
            owner = self.store.get(full_name)
        except NotFound:
            owner = None
        if owner is not None and owner.name == full_name:
            from dockyard.engine.store import name_conflict
            raise name_conflict(full_name, owner.id)
        cid = secrets.token_hex(32)
        c = Container(id=cid, name=full_name, image=image.id, image_name=image_ref,
                      config=merged, host_config=hc,
                      path=os.path.join(self.containers_dir, cid))
        self.network.prepare(c, networking)  # NetworkMode, endpoints, ports: 400s first
        rootfs = os.path.join(c.path, "rootfs")
        os.makedirs(rootfs)
        mounted = prepared = False
        made_volumes: list[str] | None = None
        try:
            made_volumes = volmounts.realize(self.volumes, cid, points)
            volmounts.set_points(c, points)
            mounts = self.images.snapshots.prepare(f"container-{cid}", image.chain_ids[-1]
                                                   if image.chain_ids else None)
            prepared = True
            from dockyard.image.snapshot import mount_all
            mount_all(mounts, rootfs)
            mounted = True
            specmod.write_files(c)
            if self._driver(c) == "local":
                os.makedirs(os.path.join(c.path, "local-logs"), exist_ok=True)
            self._spec(c, rootfs, start=False)  # a bad user, capability, ulimit... fails now
            self._add_with_free_name(c, generated=not name)
        except BaseException:
            if made_volumes is not None:
                volmounts.release_all(self.volumes, cid, points, made_volumes)
            self._cleanup_files(c, mounted, prepared)
            raise
        self.emit(c, "create")
        return cid

    def _add_with_free_name(self, c: Container, generated: bool) -> None:
        for _ in range(5):
            try:
                self.store.add(c)
                return
            except Conflict:
                if not generated:  # a name the user chose: docker's conflict error
                    raise
                c.name = self._free_random_name()  # lost a race for a generated one
        self.store.add(c)

    def _free_random_name(self) -> str:
        """A generated name nobody uses; like docker, a digit is added after a few clashes
        (store.add still decides for good under concurrent creates)."""
        for attempt in range(10):
            candidate = "/" + cfgmod.random_name() + (f"{attempt}" if attempt >= 3 else "")
            try:
                self.store.get(candidate)
            except NotFound:
                return candidate
        return "/" + cfgmod.random_name() + "_" + secrets.token_hex(3)

    def _cleanup_files(self, c: Container, mounted: bool = True, prepared: bool = True) -> None:
        from dockyard.image.snapshot import unmount_all
        rootfs = os.path.join(c.path, "rootfs")
        if mounted:
            while is_mount_point(rootfs):
                unmount_all(rootfs)
        if prepared:
            try:
                self.images.snapshots.remove(f"container-{c.id}")
            except NotFound:
                pass
        trash = os.path.join(self.trash_dir, c.id)
        try:
            os.rename(c.path, trash)
        except OSError:
            shutil.rmtree(c.path, ignore_errors=True)
        else:
            remove_later(trash)

    # -- start --------------------------------------------------------------------------------

    def start(self, ref: str) -> None:
        with self._cond:
            c = self.store.get(ref)
            if c.state.Paused:
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.state.Running or c.id in self._starting:
                raise NotModified("container already started")
            if c.id in self._removing:
                raise Conflict("container is marked for removal and cannot be started")
            if c.state.Dead:
                raise Conflict("cannot start a dead container")
            c.manually_stopped = False
            self._shutting_down.discard(c.id)
            c.restart_count = 0
            self._cancel_restart(c.id)
            self._delays.pop(c.id, None)
            self._starting.add(c.id)
        self._launch(c)

    def _launch(self, c: Container) -> None:
        """Start `c` (its id is in self._starting) and record the result."""
        restarting = c.state.Restarting
        try:
            rootfs, exit_file, log_path = self._paths(c)
            if not is_mount_point(rootfs):
                from dockyard.image.snapshot import mount_all
                mount_all(self.images.snapshots.mounts(f"container-{c.id}"), rootfs)
            volmounts.activate(self.volumes, c.id, c.extra.get("mountpoints") or [], rootfs)
            self.network.setup(c)  # netns, endpoints, ports, DNS, /etc files (all or nothing)
            specmod.ensure_working_dir(c, rootfs)
            spec = self._spec(c, rootfs)
            tmp = os.path.join(c.path, "config.json.tmp")
            with open(tmp, "w") as f:
                json.dump(spec, f)
            os.replace(tmp, os.path.join(c.path, "config.json"))
            token = secrets.token_hex(8)
            with self._cond:
                # a fresh read: a stop may have come while we prepared (and a restart
                # that was stopped meanwhile must not start after all)
                fresh = self.store.get(c.id)
                if c.state.Restarting and not fresh.state.Restarting:
                    raise _StoppedMeanwhile()
                fresh.extra.update(c.extra)  # what the network and volume setup recorded
                fresh.extra["token"] = token
                self._save(fresh)
                c = fresh
            try:
                os.unlink(exit_file)
            except FileNotFoundError:
                pass
            log = c.host_config.get("LogConfig") or {}
            pid, started_at = self.monitor.start(
                id=c.id, bundle=c.path, token=token, tty=bool(c.config.get("Tty")),
                stdin=bool(c.config.get("OpenStdin")), exit_file=exit_file,
                cgroup=f"{specmod.CGROUP_PARENT}/{c.id}",
                log={"driver": log.get("Type") or "json-file", "path": log_path,
                     "opts": log.get("Config") or {}})
        except BaseException as e:
            volmounts.deactivate(self.volumes, c.id, c.extra.get("mountpoints") or [])
            self.network.release(c)  # `c` knows what setup made, even if not saved
            if isinstance(e, _StoppedMeanwhile):
                with self._cond:
                    self._starting.discard(c.id)
                    self._cond.notify_all()
                return
            released = c
            with self._cond:
                self._starting.discard(c.id)
                try:
                    c = self.store.get(c.id)
                except NotFound:
                    raise e from None
                c.extra.update(released.extra)  # the network settings, addresses cleared
                message = str(e)
                c.state.Error = message
                c.state.ExitCode = 128 if isinstance(e, specmod.StartError) \
                    else _start_error_code(message)
                c.state.Restarting = c.state.Running = False
                if c.state.Status == "restarting":
                    c.state.set_exited(c.state.ExitCode, error=message)
                self._save(c)
            raise
        with self._cond:
            self._starting.discard(c.id)
            c = self.store.get(c.id)
            # stopped by the user while this restart was starting: it must not live on
            stopped_meanwhile = restarting and not c.state.Restarting and not c.state.Running
            c.state.set_running(pid)
            c.state.StartedAt = started_at or c.state.StartedAt
            self.health.watch(c)
            self._save(c)
            early = self._early.pop(c.id, None)
        self.emit(c, "start")
        if stopped_meanwhile:
            self._signal(c, sg.SIGKILL)  # its exit is recorded as a user stop
        if early is not None:
            self._apply_exit(early)

    # -- exits and restarts ---------------------------------------------------------------------

    def _on_event(self, event: dict) -> None:
        if event.get("event") == "exit":
            # each exit on a thread of its own: one container's teardown (its port rules
            # are an iptables commit, its namespace an unmount) does not hold up the
            # others' (`compose down` stops them all at once)
            threading.Thread(target=self._apply_exit, args=(event,), daemon=True,
                             name=f"exit-{str(event.get('id', ''))[:12]}").start()
        elif event.get("event") == "exec_exit":
            try:
                c = self.store.get(event.get("container", ""))
            except NotFound:
                return
            self.emit(c, "exec_die", execID=event.get("id", ""),
                      exitCode=event.get("exit_code", 0))

    def _apply_exit(self, rec: dict) -> None:
        cid = rec.get("id", "")
        auto_remove = False
        with self._cond:
            if cid in self._starting:
                self._early[cid] = rec
                return
            try:
                c = self.store.get(cid)
            except NotFound:
                return
            if c.extra.get("token") != rec.get("token") or not c.state.Running \
                    or c.state.Restarting or cid in self._exiting:
                return
            self._exiting.add(cid)
            self.health.stopped(c)
        # the teardown outside the lock (as remove's): the container still shows running,
        # so stop/wait/remove keep waiting for it, while other containers' requests and
        # exits go on
        before = json.loads(json.dumps(c.extra))
        try:
            volmounts.deactivate(self.volumes, cid, c.extra.get("mountpoints") or [])
            self.network.release(c)  # addresses, rules, DNS, netns
        finally:
            with self._cond:
                self._exiting.discard(cid)
        with self._cond:
            released = c
            try:
                c = self.store.get(cid)  # with what changed meanwhile (stop's flag, ...)
            except NotFound:
                return
            if c.extra.get("token") != rec.get("token") or not c.state.Running \
                    or c.state.Restarting:
                return
            for key in set(before) | set(released.extra):  # what the teardown changed
                if key not in released.extra:
                    c.extra.pop(key, None)
                elif before.get(key) != released.extra[key]:
                    c.extra[key] = released.extra[key]
            ran_for = time.time() - parse_time(c.state.StartedAt)
            code = int(rec.get("exit_code", 255))
            c.state.set_exited(code, bool(rec.get("oom_killed")), rec.get("finished_at"))
            if c.state.OOMKilled:
                self.emit(c, "oom")
            self.emit(c, "die", exitCode=code, execDuration=int(max(ran_for, 0)))
            policy, retries = c.restart_policy
            decision = restart.decide(policy, retries, code, c.restart_count,
                                      c.manually_stopped or cid in self._removing
                                      or cid in self._shutting_down,
                                      self._delays.get(cid, 0.0), ran_for)
            if decision.restart:
                c.state.Restarting = c.state.Running = True
                c.state.Status = "restarting"
                self._delays[cid] = decision.delay
                self._schedule_restart(cid, c.extra.get("token", ""), decision.delay)
            else:
                self._delays.pop(cid, None)
                auto_remove = bool(c.host_config.get("AutoRemove"))
            self._exits[cid] = self._exits.get(cid, 0) + 1
            self._save(c)
        if auto_remove:
            threading.Thread(target=self._auto_remove, args=(cid,), daemon=True).start()

    def _auto_remove(self, cid: str) -> None:
        try:
            self.remove(cid, force=True, volumes=True)  # --rm takes anonymous volumes too
        except (NotFound, Conflict):
            pass

    def _schedule_restart(self, cid: str, token: str, delay: float) -> None:
        self._cancel_restart(cid)
        timer = threading.Timer(delay, self._restart_now, args=(cid, token))
        timer.daemon = True
        self._timers[cid] = timer
        timer.start()

    def _cancel_restart(self, cid: str) -> None:
        timer = self._timers.pop(cid, None)
        if timer is not None:
            timer.cancel()

    def _restart_now(self, cid: str, token: str) -> None:
        with self._cond:
            self._timers.pop(cid, None)
            try:
                c = self.store.get(cid)
            except NotFound:
                return
            if not c.state.Restarting or c.extra.get("token") != token:
                return
            c.restart_count += 1
            self._starting.add(cid)
            self._save(c)
        try:
            self._launch(c)
        except DockyardError:
            pass  # recorded in the state by _launch

    def reconcile(self) -> None:
        """Adopt what still runs, apply exits that happened while we were away, and
        restart what docker restarts at daemon start."""
        running = self.monitor.running()
        for c in self.store.list():
            if c.id in self._starting:
                continue
            _, exit_file, _ = self._paths(c)
            token = c.extra.get("token")
            live = running.get(c.id)
            if c.state.Running and not c.state.Restarting:
                if live and live.get("token") == token:
                    if live.get("pid") and live["pid"] != c.state.Pid:
                        with self._cond:
                            c.state.Pid = live["pid"]
                            self._save(c)
                    if not self.health.watching(c.id):  # resume its probes
                        with self._cond:
                            fresh = self.store.get(c.id)
                            if self.health.watch(fresh):
                                self._save(fresh)
                    continue
                rec = _read_json(exit_file)
                if rec is None or rec.get("token") != token:
                    rec = {"id": c.id, "token": token, "exit_code": 255, "oom_killed": False}
                self._apply_exit(rec)
            elif c.state.Restarting and c.id not in self._timers:
                with self._cond:
                    self._schedule_restart(c.id, token or "", self._delays.get(c.id, 0.1))
            elif c.host_config.get("AutoRemove") and c.state.Status == "exited":
                threading.Thread(target=self._auto_remove, args=(c.id,), daemon=True).start()
        self.network.reconcile(self.store.list())  # adopt ports/DNS, drop leftovers

    def _start_on_boot(self) -> None:
        """What docker starts with the daemon: `always` containers, and `unless-stopped`
        ones the user did not stop (both only if they were ever started)."""
        for c in self.store.list():
            policy, _ = c.restart_policy
            if c.state.Running or c.state.StartedAt.startswith("0001-") or not (
                    policy == "always" or (policy == "unless-stopped"
                                           and not c.manually_stopped)):
                continue
            threading.Thread(target=self._boot_start, args=(c.id,), daemon=True).start()

    def _boot_start(self, cid: str) -> None:
        try:
            self.start(cid)
        except DockyardError:
            pass  # recorded in the container's state (State.Error)

    # -- stop, kill, pause ------------------------------------------------------------------------

    def _signal(self, c: Container, sig: int) -> None:
        self.emit(c, "kill", signal=sig)
        try:
            rt.kill(self.runtime_root, c.id, sig, all_processes=sig == sg.SIGKILL)
        except (DockyardError, OSError):
            pass  # already exiting: the monitor reports the exit

    def _wait_gone(self, cid: str, token: str | None, timeout: float | None) -> bool:
        def gone() -> bool:
            try:
                c = self.store.get(cid)
            except NotFound:
                return True
            return (c.extra.get("token") != token or not c.state.Running
                    or c.state.Restarting)
        with self._cond:
            return self._cond.wait_for(gone, timeout)

    def stop(self, ref: str, timeout: int | None = None, *, by_user: bool = True) -> None:
        """docker stop; the daemon's own stop at shutdown passes by_user=False, so that
        unless-stopped containers start again with the daemon, as docker's do."""
        with self._cond:
            c = self.store.get(ref)
            if not c.state.Running:
                raise NotModified("container already stopped")
            c.manually_stopped = c.manually_stopped or by_user
            if not by_user:
                self._shutting_down.add(c.id)
            if c.state.Restarting:
                self._cancel_restart(c.id)
                c.state.set_exited(c.state.ExitCode)
                self._exits[c.id] = self._exits.get(c.id, 0) + 1
                self._save(c)
                return
            self._save(c)
        token = c.extra.get("token")
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        timeout = 10 if timeout is None else int(timeout)
        sig = sg.SIGTERM
        if c.config.get("StopSignal"):
            sig = _parse_signal(c.config["StopSignal"])
        self._signal(c, sig)
        if c.state.Paused:
            self._resume_quietly(c)
        if not self._wait_gone(c.id, token, None if timeout < 0 else timeout):
            self._signal(c, sg.SIGKILL)
            if not self._wait_gone(c.id, token, 30):
                raise SystemError_(f"container {c.id} did not exit after SIGKILL")
        self.emit(c, "stop")

    def kill(self, ref: str, signal: str | int = "SIGKILL") -> None:
        sig = _parse_signal(signal)
        with self._cond:
            c = self.store.get(ref)
            if not c.state.Running:
                raise Conflict(f"Container {c.id} is not running")
            c.manually_stopped = True
            if c.state.Restarting:
                self._cancel_restart(c.id)
                c.state.set_exited(c.state.ExitCode)
                self._exits[c.id] = self._exits.get(c.id, 0) + 1
                self._save(c)
                return
            self._save(c)
        stop_sig = _parse_signal(c.config.get("StopSignal") or "SIGTERM")
        self._signal(c, sig)
        if c.state.Paused and sig in (sg.SIGKILL, stop_sig):
            self._resume_quietly(c)
        if sig == sg.SIGKILL:
            self._wait_gone(c.id, c.extra.get("token"), 10)

    def _resume_quietly(self, c: Container) -> None:
        try:
            rt.resume(self.runtime_root, c.id)
        except DockyardError:
            pass
        with self._cond:
            c = self.store.get(c.id)
            if c.state.Paused:
                c.state.Paused = False
                c.state.Status = "running" if c.state.Running else c.state.Status
                self._save(c)

    def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.store.get(ref)
        try:
            self.stop(c.id, timeout)
        except NotModified:
            pass
        self.start(c.id)
        self.emit(c, "restart")

    def pause(self, ref: str) -> None:
        with self._cond:
            c = self.store.get(ref)
            if not c.state.Running or c.state.Restarting:
                raise Conflict(f"Container {c.id} is not running")
            if c.state.Paused:
                raise Conflict(f"Container {c.id} is already paused")
            rt.pause(self.runtime_root, c.id)
            c.state.Paused, c.state.Status = True, "paused"
            self._save(c)
        self.emit(c, "pause")

    def unpause(self, ref: str) -> None:
        with self._cond:
            c = self.store.get(ref)
            if not c.state.Paused:
                raise Conflict(f"Container {c.id} is not paused")
            rt.resume(self.runtime_root, c.id)
            c.state.Paused, c.state.Status = False, "running"
            self._save(c)
        self.emit(c, "unpause")

    def update(self, ref: str, body: dict) -> list[str]:
        """docker update: limits and restart policy. A running container's cgroup is
        changed first; HostConfig is saved only once that worked (one store write)."""
        from dockyard.engine import update as upd
        with self._cond:
            c = self.store.get(ref)
            if c.id in self._removing:
                raise Conflict(f"Container {c.id} is marked for removal and cannot be updated")
            host_config, resources = upd.merge(c.host_config, body)
            if resources and c.state.Running and not c.state.Restarting:
                try:
                    rt.update(self.runtime_root, c.id, resources)
                except (DockyardError, OSError) as e:
                    raise InvalidArgument(f"Cannot update container {c.id}: {e}") from None
            c.host_config = host_config
            self._save(c)
        self.emit(c, "update")
        return []

    # -- wait, remove, rename ------------------------------------------------------------------------

    def wait(self, ref: str, condition: str = "not-running",
             timeout: float | None = None) -> int:
        """docker wait: the exit code once `condition` (not-running|next-exit|removed) holds."""
        return self.waiter(ref, condition)(timeout)

    def waiter(self, ref: str, condition: str = "not-running"
               ) -> Callable[[float | None], int]:
        """Register a wait now (what counts as the "next" exit is fixed here); the returned
        function blocks until `condition` holds and returns the exit code."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        with self._cond:
            c = self.store.get(ref)
            cid = c.id
            already = condition == "not-running" and (not c.state.Running
                                                      or c.state.Restarting)
            seen = self._exits.get(cid, 0)
            last = {"code": c.state.ExitCode}

        def done() -> bool:
            try:
                cur = self.store.get(cid)
            except NotFound:
                return True
            last["code"] = cur.state.ExitCode
            return condition != "removed" and self._exits.get(cid, 0) != seen

        def block(timeout: float | None = None) -> int:
            if already:
                return last["code"]
            with self._cond:
                if not self._cond.wait_for(done, timeout):
                    raise TimeoutError(f"timed out waiting for container {cid}")
            return last["code"]
        return block

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        with self._cond:
            c = self.store.get(ref)
            if c.id in self._removing:
                raise Conflict(f"removal of container {c.id} is already in progress")
            if c.state.Running and not force:
                what = "paused" if c.state.Paused else "running"
                raise Conflict(f"You cannot remove a {what} container {c.id}. Stop the "
                               "container before attempting removal or force remove")
            self._removing.add(c.id)
            self._cancel_restart(c.id)
            if c.state.Restarting:
                c.state.set_exited(c.state.ExitCode)
                self._save(c)
        try:
            if c.state.Running and not c.state.Restarting:
                self._signal(c, sg.SIGKILL)
                if not self._wait_gone(c.id, c.extra.get("token"), 30):
                    raise SystemError_(f"could not kill running container {c.id}, cannot "
                                       "remove")
            try:
                rt.delete(self.runtime_root, c.id, force=True)
            except DockyardError:
                pass
            self.network.release(c)
            self._cleanup_files(c)
            with self._cond:
                self.store.delete(c.id)
            points = c.extra.get("mountpoints") or []
            volmounts.release_all(self.volumes, c.id, points,
                               volmounts.anonymous(points) if volumes else None)
            with self._cond:
                self._delays.pop(c.id, None)
                self._cond.notify_all()
            self.emit(c, "destroy")
        finally:
            with self._cond:
                self._removing.discard(c.id)

    def rename(self, ref: str, new_name: str) -> None:
        full = cfgmod.check_name(new_name)
        with self._cond:
            c = self.store.get(ref)
            if c.name == full:
                raise InvalidArgument("Renaming a container with the same name as its "
                                      "current name")
            old = c.name
            self.store.rename(c, full)
            self._cond.notify_all()
        self.emit(c, "rename", oldName=old)
