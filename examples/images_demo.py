"""The images part of the demo: our own registry, import, push, pull, save, load.

Starts a private `dockyard daemon` (socket, data root and exec root in a temp
dir) and `dockyard registry serve` on a free loopback port, and drives the
`dockyard` CLI (`-H unix://...`, the daemon does the work) against them,
printing each step. Both are stopped at the end, whatever happens.
"""

import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

from dockyard.devtools.busybox import make_rootfs
from dockyard.devtools.daemon import DockyardDaemon

BIN = os.path.dirname(sys.executable)
DOCKYARD = os.path.join(BIN, "dockyard")


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def dockyard(env: dict, *args: str) -> None:
    print("$ dockyard " + " ".join(args), flush=True)
    subprocess.run([DOCKYARD, "-H", env["DOCKYARD_HOST"], *args], env=env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dockyard-demo-images-") as tmp:
        daemon = DockyardDaemon(os.path.join(tmp, "daemon")).start()
        env = {**os.environ, "DOCKYARD_HOST": daemon.host,
               "DOCKER_CONFIG": os.path.join(tmp, "docker-config")}
        port = free_port()
        registry = subprocess.Popen([DOCKYARD, "registry", "serve", "--addr",
                                     f"127.0.0.1:{port}", "--root", os.path.join(tmp, "reg")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            step(f"a private dockyard daemon on {daemon.host}")
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            step(f"a registry of our own on 127.0.0.1:{port}")
            rootfs = make_rootfs(os.path.join(tmp, "rootfs"))
            tar_path = os.path.join(tmp, "busybox.tar")
            with tarfile.open(tar_path, "w") as tar:
                for name in sorted(os.listdir(rootfs)):
                    tar.add(os.path.join(rootfs, name), arcname=name)
            name = f"127.0.0.1:{port}/demo/busybox:1.0"
            step("import a rootfs tarball as an image, tag it for the registry")
            dockyard(env, "import", "-c", 'CMD ["sh"]', tar_path, "busybox:demo")
            dockyard(env, "tag", "busybox:demo", name)
            dockyard(env, "images")
            step("push it, forget it, pull it back: the same image ID")
            dockyard(env, "push", name)
            dockyard(env, "rmi", name, "busybox:demo")
            dockyard(env, "pull", name)
            dockyard(env, "images", "--digests")
            step("save and load (docker's archive format)")
            archive = os.path.join(tmp, "busybox-save.tar")
            dockyard(env, "save", "-o", archive, name)
            dockyard(env, "rmi", name)
            dockyard(env, "load", "-i", archive)
            dockyard(env, "history", name)
        finally:
            registry.terminate()
            registry.wait()
            problems = daemon.stop()
            if problems:
                print("daemon clean-up: " + "; ".join(problems), file=sys.stderr)


if __name__ == "__main__":
    main()
