"""What the network scenarios share: our daemon alone (ours vs ours: published port vs
direct, bridge vs none) or with a private dockerd using its userland proxy, a web server
container serving a big file from a tmpfs, and an HTTP download timed from the host.

Not a scenario (the leading underscore keeps discovery away).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path

from bench.scenarios._daemon_peers import IMAGE, DaemonPeers, DockyardDaemon

SIZE_MB = 256
SERVE = (f"dd if=/dev/zero of=/www/big bs=1M count={SIZE_MB} 2>/dev/null && "
         "exec httpd -f -p 80 -h /www")


def download(host: str, port: int) -> int:
    """GET /big; returns the byte count (checked against SIZE_MB)."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", "/big")
        resp = conn.getresponse()
        total = 0
        while chunk := resp.read(1 << 20):
            total += len(chunk)
    finally:
        conn.close()
    if total != SIZE_MB << 20:
        raise RuntimeError(f"short download from {host}:{port}: {total} bytes")
    return total


def wait_http(host: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("HEAD", "/big")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no web server on {host}:{port}")
        time.sleep(0.1)


class NetPeers(DaemonPeers):
    """DaemonPeers with our daemon only (`with_docker=False`), or with a dockerd whose
    published ports go through docker-proxy (its userland proxy, iptables off)."""

    def __init__(self, with_docker: bool) -> None:
        super().__init__()
        self.with_docker = with_docker

    def start(self, workdir: Path) -> None:
        from dockyard.devtools.dockerd_peer import DockerdPeer, peer_missing, pick_cli

        missing = peer_missing() if self.with_docker else None
        if missing:
            from bench.scenario import Skip
            raise Skip(f"no dockerd peer: {missing}")
        self.cli = pick_cli()
        root = workdir / "dockyard"
        root.mkdir()
        self.ours = DockyardDaemon(root).start()
        self._import_busybox(workdir)
        if self.with_docker:
            self.dockerd = DockerdPeer.start({}, cli=self.cli,
                                             extra_args=["--userland-proxy=true"])

    def serve(self, side: str, name: str) -> tuple[int, str]:
        """A web server container with the big file; (published loopback port, its IP)."""
        self.docker(side, "run", "-d", "--name", name, "--tmpfs", "/www:size=400m",
                    "-p", "127.0.0.1::80", IMAGE, "sh", "-c", SERVE)
        r = self.docker_quiet(side, "inspect", name)
        info = json.loads(r.stdout)[0]
        port = int(info["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        ip = next(n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values())
        wait_http("127.0.0.1", port)
        return port, ip

    def quiet_ok(self, side: str, *args: str) -> subprocess.CompletedProcess:
        r = self.docker_quiet(side, *args)
        if r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.strip()}")
        return r
