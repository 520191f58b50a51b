"""A container's streams on our terminal: attach (also for run and start -a),
exec and logs; the local terminal's raw mode and size.

Without a TTY the daemon multiplexes stdout and stderr in stdcopy frames
(demuxed to our stdout/stderr); with one the stream is raw and our stdin is
put in raw mode like docker's (only stdin: on Linux docker leaves stdout).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from dockyard.cli.common import client_for
from dockyard.cli.runflags import LIST, VALUE, Flag, FlagError, parse_flags, read_kv_file, timestamp
from dockyard.detachkeys import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.client.api import Client
    from dockyard.client.hijack import HijackedStream

PROXIED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def size(fd: int | None = None) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on `fd` (stdout by default), or None."""
    fd = sys.stdout.fileno() if fd is None else fd
    try:
        cols, rows = os.get_terminal_size(fd)
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


@contextlib.contextmanager
def raw_terminal(fds: tuple[int, ...]) -> Iterator[None]:
    """Put each terminal among `fds` in raw mode (like docker's In().SetRawTerminal:
    on Linux only stdin is made raw); restore on exit. NORAW in the environment disables it, as in docker."""
    import termios
    import tty

    saved: list[tuple[int, list]] = []
    if not os.environ.get("NORAW"):
        for fd in dict.fromkeys(fds):
            if not is_tty(fd):
                continue
            try:
                saved.append((fd, termios.tcgetattr(fd)))
                tty.setraw(fd, termios.TCSANOW)
            except termios.error:
                pass
    try:
        yield
    finally:
        for fd, attrs in reversed(saved):
            try:
                termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
            except termios.error:
                pass


@contextlib.contextmanager
def monitor_size(resize: Callable[[int, int], None]) -> Iterator[None]:
    """Send the terminal's size now and on every SIGWINCH."""
    def send(*_: object) -> None:
        dims = size()
        if dims:
            with contextlib.suppress(Exception):  # a lost resize is not fatal (docker's too)
                resize(*dims)

    send()
    try:
        old = signal.signal(signal.SIGWINCH, send)
    except ValueError:  # not the main thread
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGWINCH, old)


# -- helpers -------------------------------------------------------------------------------

class StatusError(Exception):
    """Exit with `status` after printing `message` (docker's cli.StatusError)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_client = client_for


def _daemon_error(e: DockyardError) -> str:
    if type(e).__name__ == "CannotConnect":
        return str(e)
    return f"Error response from daemon: {e}"


def _usage(verb: str, usage: str, e: Exception) -> int:
    if str(e) == "help requested":
        print(f"Usage:  dockyard {verb} {usage}")
        return 0
    print(f"{e}\n\nUsage:  dockyard {verb} {usage}\n\n"
          f"Run 'dockyard {verb} --help' for more information", file=sys.stderr)
    return 125


def _report(verb: str, message: str) -> None:
    print(f"dockyard: {message}\n\nRun 'dockyard {verb} --help' for more information",
          file=sys.stderr)


# -- streams ------------------------------------------------------------------------------

def detach_keys_bytes(text: str) -> bytes:
    """docker's --detach-keys ("ctrl-p,ctrl-q", "a,DEL"); an invalid one gives the
    default here, as in docker's CLI (the daemon answers 400 for it)."""
    from dockyard.errors import InvalidArgument

    try:
        return parse_detach_keys(text) if text else DEFAULT_DETACH_KEYS
    except InvalidArgument:
        return DEFAULT_DETACH_KEYS


def copy_streams(hs: HijackedStream, tty: bool, send_stdin: bool,
                 detach_keys: str = "") -> bool:
    """Copy the container's output to ours until the daemon closes it; stdin goes the
    other way (in a thread) and is half-closed at EOF. With a TTY, the detach keys
    end it: True then (the container keeps running)."""
    detached = threading.Event()
    if send_stdin:
        scanner = DetachScanner(detach_keys_bytes(detach_keys)) if tty else None
        threading.Thread(target=_pump_stdin, args=(hs, scanner, detached),
                         daemon=True).start()
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    sys.stdout.flush()
    try:
        if tty:
            for data in hs:
                out.write(data)
                out.flush()
            return detached.is_set()
        from dockyard.client.stdcopy import STDERR, demux

        for stream, data in demux(hs):
            target = err if stream == STDERR else out
            target.write(data)
            target.flush()
    except OSError:
        if not detached.is_set():
            raise
    return detached.is_set()


def _pump_stdin(hs: HijackedStream, scanner: DetachScanner | None = None,
                detached: threading.Event | None = None) -> None:
    import socket

    try:
        while True:
            data = os.read(0, 32768)
            if not data:
                break
            if scanner is not None:
                data, detach = scanner.feed(data)
                if data:
                    hs.sendall(data)
                if detach and detached is not None:
                    detached.set()
                    with contextlib.suppress(OSError):  # wakes the output loop
                        hs.sock.shutdown(socket.SHUT_RDWR)
                    return
                continue
            hs.sendall(data)
    except OSError:
        return
    try:
        hs.close_write()
    except DockyardError:
        pass


class Waiter:
    """POST /containers/{id}/wait, registered now, answered in a thread."""

    def __init__(self, client: Client, cid: str, condition: str) -> None:
        self.status = 125
        self._stream = client.raw_stream("POST", f"/containers/{cid}/wait",
                                         params={"condition": condition})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import json

        try:
            with self._stream as s:
                doc = json.loads(s.read() or b"{}")
        except (OSError, ValueError, DockyardError) as e:
            print(f"Error waiting for container: {e}", file=sys.stderr)
            return
        error = (doc.get("Error") or {}).get("Message") if isinstance(doc, dict) else None
        if error:
            print(f"Error waiting for container: {error}", file=sys.stderr)
            return
        self.status = int(doc.get("StatusCode", 125))

    def result(self) -> int:
        self._thread.join()
        return self.status


def _proxy_signals(client: Client, cid: str) -> None:
    import signal

    def forward(signum: int, _frame: object) -> None:
        try:
            client.post(f"/containers/{cid}/kill", params={"signal": str(signum)})
        except DockyardError:
            pass

    for name in PROXIED_SIGNALS:
        signal.signal(getattr(signal, name), forward)


def start_error_status(message: str) -> int:
    """docker's runStartContainerErr: 127 not found, 126 cannot invoke, else 125."""
    if ("executable file not found" in message or "no such file or directory" in message
            or "system cannot find the file specified" in message):
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def attach_and_run(client: Client, cid: str, attach: dict[str, bool], tty: bool,
                   auto_remove: bool, sig_proxy: bool, detach_keys: str = "",
                   start: bool = True) -> int:
    """Attach, register the wait, start, copy the streams; the container's status."""
    hs = None
    if any(attach.values()):
        params = {"stream": 1, **{k: int(v) for k, v in attach.items()},
                  "detachKeys": detach_keys or None}
        hs = client.hijack("POST", f"/containers/{cid}/attach", params=params)
    waiter = Waiter(client, cid, "removed" if auto_remove else "next-exit")
    if start:
        try:
            client.post(f"/containers/{cid}/start")
        except DockyardError as e:
            if hs is not None:
                hs.close()
            msg = _daemon_error(e)
            if auto_remove:
                waiter.result()
            raise StatusError(start_error_status(msg), msg) from None
    if sig_proxy and not tty:
        _proxy_signals(client, cid)
    if hs is not None:
        stdin_tty = attach.get("stdin") and is_tty(0)
        raw = raw_terminal((0,)) if tty and stdin_tty else _null()
        sized = (monitor_size(lambda h, w: client.post(
            f"/containers/{cid}/resize", params={"h": h, "w": w}))
            if tty and is_tty(1) else _null())
        with raw, sized:
            try:
                detached = copy_streams(hs, tty, bool(attach.get("stdin")), detach_keys)
            finally:
                hs.close()
        if detached:  # the container keeps running: no exit status to wait for
            if not start:  # `attach` reports it like docker's: an error, status 1
                print("read escape sequence", file=sys.stderr)
                return 1
            return 0
    return waiter.result()


def _null():
    import contextlib

    return contextlib.nullcontext()


# -- exec ---------------------------------------------------------------------------------

EXEC_FLAGS = [Flag("detach", short="d"), Flag("interactive", short="i"),
              Flag("tty", short="t"), Flag("env", LIST, "e"), Flag("env-file", LIST),
              Flag("workdir", VALUE, "w", ""), Flag("user", VALUE, "u", ""),
              Flag("privileged"), Flag("detach-keys", VALUE, default="")]


def exec_(argv: list[str], ctx) -> int:
    usage = "[OPTIONS] CONTAINER COMMAND [ARG...]"
    try:
        p = parse_flags(argv, EXEC_FLAGS, interspersed=False)
        if len(p.args) < 2:
            raise FlagError("'dockyard exec' requires at least 2 arguments.")
        env: list[str] = []
        for path in p["env-file"]:
            env += read_kv_file(path, env_lookup=True)
        env += p["env"]
    except FlagError as e:
        return _usage("exec", usage, e)
    name, cmd = p.args[0], p.args[1:]
    detach, tty = p["detach"], p["tty"]
    body = {"User": p["user"], "Privileged": p["privileged"], "Tty": tty,
            "AttachStdin": bool(p["interactive"]) and not detach,
            "AttachStdout": not detach, "AttachStderr": not detach,
            "Detach": detach, "DetachKeys": p["detach-keys"], "Env": env or None,
            "WorkingDir": p["workdir"], "Cmd": cmd}
    client = _client(ctx)
    try:
        eid = client.post(f"/containers/{name}/exec", body=body)["Id"]
        if detach:
            client.post(f"/exec/{eid}/start", body={"Detach": True, "Tty": tty})
            return 0
        hs = client.hijack("POST", f"/exec/{eid}/start", body={"Detach": False, "Tty": tty})
        stdin = body["AttachStdin"]
        raw = raw_terminal((0,)) if tty and stdin and is_tty(0) else _null()
        sized = (monitor_size(lambda h, w: client.post(
            f"/exec/{eid}/resize", params={"h": h, "w": w}))
            if tty and is_tty(1) else _null())
        with raw, sized:
            try:
                if copy_streams(hs, tty, stdin, p["detach-keys"]):
                    return 0  # detached: the process keeps running
            finally:
                hs.close()
        return int(client.get(f"/exec/{eid}/json").get("ExitCode") or 0)
    except DockyardError as e:
        print(_daemon_error(e), file=sys.stderr)
        return 1
    finally:
        client.close()


# -- attach -------------------------------------------------------------------------------

ATTACH_FLAGS = [Flag("no-stdin"), Flag("sig-proxy", default=True),
                Flag("detach-keys", VALUE, default="")]


def attach(argv: list[str], ctx) -> int:
    try:
        p = parse_flags(argv, ATTACH_FLAGS)
        if len(p.args) != 1:
            raise FlagError("'dockyard attach' requires exactly 1 argument.")
    except FlagError as e:
        return _usage("attach", "[OPTIONS] CONTAINER", e) and 1
    client = _client(ctx)
    try:
        info = client.get(f"/containers/{p.args[0]}/json")
        if not info["State"].get("Running"):
            print("You cannot attach to a stopped container, start it first", file=sys.stderr)
            return 1
        if info["State"].get("Paused"):
            print("You cannot attach to a paused container, unpause it first", file=sys.stderr)
            return 1
        cfg = info["Config"]
        attach = {"stdin": bool(cfg.get("OpenStdin")) and not p["no-stdin"],
                  "stdout": True, "stderr": True}
        return attach_and_run(client, info["Id"], attach, bool(cfg.get("Tty")), False,
                              p["sig-proxy"], p["detach-keys"], start=False)
    except DockyardError as e:
        print(_daemon_error(e), file=sys.stderr)
        return 1
    finally:
        client.close()


# -- logs -------------------------------------------------------------------------------------

LOGS_FLAGS = [Flag("follow", short="f"), Flag("tail", VALUE, "n", "all"),
              Flag("since", VALUE, default=""), Flag("until", VALUE, default=""),
              Flag("timestamps", short="t"), Flag("details")]


def logs(argv: list[str], ctx) -> int:
    try:
        p = parse_flags(argv, LOGS_FLAGS)
        if len(p.args) != 1:
            raise FlagError("dockyard: 'logs' requires exactly 1 argument.")
    except FlagError as e:
        return _usage("logs", "[OPTIONS] CONTAINER", e) and 1
    client = _client(ctx)
    try:
        info = client.get(f"/containers/{p.args[0]}/json")
        params = {"stdout": 1, "stderr": 1, "follow": p["follow"] or None,
                  "tail": p["tail"], "timestamps": p["timestamps"] or None,
                  "details": p["details"] or None,
                  "since": timestamp(p["since"]) if p["since"] else None,
                  "until": timestamp(p["until"]) if p["until"] else None}
        stream = client.raw_stream("GET", f"/containers/{info['Id']}/logs", params=params)
        with stream:
            if info["Config"].get("Tty"):
                for data in stream:
                    sys.stdout.buffer.write(data)
                    sys.stdout.buffer.flush()
            else:
                from dockyard.client.stdcopy import STDERR, demux

                for kind, data in demux(stream):
                    out = sys.stderr.buffer if kind == STDERR else sys.stdout.buffer
                    out.write(data)
                    out.flush()
    finally:
        client.close()
    return 0
