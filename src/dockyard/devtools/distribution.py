"""The Distribution registry (Debian's docker-registry) as a peer on loopback.

    with DistributionRegistry(workdir) as reg:
        push to reg.host ("127.0.0.1:PORT"); reg.reset() empties it

Used by tests and benchmarks; it never listens beyond 127.0.0.1.
"""

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from typing import Self

BINARY = "/usr/bin/docker-registry"
CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DistributionRegistry:
    def __init__(self, workdir: str, port: int | None = None):
        self.workdir = workdir
        self.port = port or free_port()
        self.storage = os.path.join(workdir, "storage")
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        if not os.access(BINARY, os.X_OK):
            raise FileNotFoundError(f"{BINARY} missing (apt-get install docker-registry)")
        os.makedirs(self.workdir, exist_ok=True)
        config = os.path.join(self.workdir, "config.yml")
        with open(config, "w") as f:
            f.write(CONFIG.format(root=self.storage, port=self.port))
        self.proc = subprocess.Popen([BINARY, "serve", config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def reset(self) -> None:
        """An empty registry on the same port."""
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
