"""A terminal for foreground `run -t` / `exec -t` without --console-socket:
receive the pty master from the container and relay it to our own stdio."""

import os
import select
import signal
import socket


def console_pair() -> tuple[socket.socket, int]:
    """(our end, the fd to hand to the container as its console socket)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return ours, theirs.detach()


def receive_master(sock: socket.socket) -> int:
    _msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("the container sent no terminal")
    return fds[0]


def relay(master: int, child_pid: int) -> int:
    """Copy stdin -> master and master -> stdout until the child exits; returns its status."""
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        _copy_winsize(master)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(master))
    try:
        fds = [0, master]
        while True:
            done, status = os.waitpid(child_pid, os.WNOHANG)
            if done:
                _drain(master)
                return status
            ready, _, _ = select.select(fds, [], [], 0.1)
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if data:
                    os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    fds.remove(0)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _drain(master: int) -> None:
    while select.select([master], [], [], 0)[0]:
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        os.write(1, data)


def _copy_winsize(master: int) -> None:
    import fcntl
    import termios
    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass
