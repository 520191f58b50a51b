"""The daemon going away and coming back, driven by the official docker CLI:

- live-restore: SIGKILL the daemon while containers run; they keep running (and
  one exits meanwhile); a new daemon adopts them: ps, logs, exec, stop, wait, and the
  exit code of the one that exited while nobody watched;
- without live-restore: SIGTERM stops the containers; at the next start nothing is
  lost (names, labels, exit codes) and `--restart always` containers run again;
- a TCP listener with --tlsverify serves a client with a certificate from the CA and
  refuses one without.

Each test has its own data root, exec root and socket; everything is removed at the end.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from test_daemon_containers import _check_nothing_left, _read_pid, _wait_for
from test_daemon_images import DOCKER, Daemon, DockerCLI

from dockyard.devtools.busybox import make_rootfs

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

LOOP = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done"


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("dyr-rootfs")
    root = make_rootfs(str(work / "rootfs"))
    out = work / "busybox.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    return out


def _cli(d: Daemon, root: Path) -> DockerCLI:
    config = root / "docker-config"
    config.mkdir(exist_ok=True)
    return DockerCLI(d, config)


def _state(docker: DockerCLI, name: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _sigkill(d: Daemon) -> None:
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.log.close()


def _finish(d: Daemon, docker: DockerCLI, root: Path) -> None:
    """Remove every container, stop the daemon, and check nothing is left behind."""
    ids = docker("ps", "-aq").stdout.split()
    if ids:
        docker("rm", "-f", *ids)
    monitor = _read_pid(root / "exec" / "monitor.pid")
    all_ids = os.listdir(os.path.join(d.data_root, "containers"))
    assert d.stop() == 0, d.logs()
    _check_nothing_left(root, monitor, all_ids)


def test_live_restore_adopts_containers_after_sigkill(tmp_path: Path, rootfs_tar: Path) -> None:
    args = ("--exec-root", str(tmp_path / "exec"), "--live-restore")
    d = Daemon(tmp_path, *args)
    docker = _cli(d, tmp_path)
    try:
        assert docker("info", "--format", "{{.LiveRestoreEnabled}}").stdout.strip() == "true"
        docker("import", "-c", 'CMD ["sh"]', str(rootfs_tar), "busybox:dyk")
        docker("run", "-d", "--name", "web", "-l", "tier=front", "busybox:dyk", "sh", "-c",
               LOOP)
        docker("run", "-d", "--name", "brief", "busybox:dyk", "sh", "-c", "sleep 1; exit 7")
        pid = _state(docker, "web")["Pid"]
        assert _alive(pid)

        _sigkill(d)
        assert _alive(pid), "the container died with the daemon despite live-restore"
        time.sleep(1.5)  # `brief` exits while no daemon runs; `web` keeps logging

        d = Daemon(tmp_path, *args)
        state = _state(docker, "web")
        assert state["Running"] and state["Pid"] == pid
        brief = _state(docker, "brief")
        assert not brief["Running"] and brief["ExitCode"] == 7
        assert docker("ps", "--filter", "label=tier=front", "--format", "{{.Names}}"
                      ).stdout.split() == ["web"]
        lines = docker("logs", "web").stdout.splitlines()
        assert len(lines) >= 15, "logs written while the daemon was away are missing"
        assert docker("exec", "web", "echo", "adopted").stdout.strip() == "adopted"

        waiter = subprocess.Popen([DOCKER, "wait", "web"], env=docker.env,
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        docker("stop", "-t", "1", "web")
        out, _ = waiter.communicate(timeout=20)
        assert out.strip() == str(_state(docker, "web")["ExitCode"])
        assert _state(docker, "web")["ExitCode"] in (137, 143)
        assert not _alive(pid)
    finally:
        _finish(d, docker, tmp_path)


def test_restart_without_live_restore_keeps_state(tmp_path: Path, rootfs_tar: Path) -> None:
    args = ("--exec-root", str(tmp_path / "exec"))
    d = Daemon(tmp_path, *args)
    docker = _cli(d, tmp_path)
    try:
        docker("import", "-c", 'CMD ["sh"]', str(rootfs_tar), "busybox:dyk")
        docker("run", "-d", "--name", "always", "--restart", "always", "busybox:dyk", "sh",
               "-c", LOOP)
        docker("run", "-d", "--name", "plain", "-l", "keep=me", "busybox:dyk", "sh", "-c",
               LOOP)
        docker("run", "--name", "done", "busybox:dyk", "sh", "-c", "exit 3", check=False)
        pids = [_state(docker, n)["Pid"] for n in ("always", "plain")]

        assert d.stop() == 0, d.logs()  # SIGTERM: containers are stopped
        _wait_for(lambda: not any(_alive(p) for p in pids))

        d = Daemon(tmp_path, *args)
        names = docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert sorted(names) == ["always", "done", "plain"]
        _wait_for(lambda: _state(docker, "always")["Running"])
        assert _state(docker, "always")["Pid"] not in pids
        plain = _state(docker, "plain")
        assert not plain["Running"] and plain["ExitCode"] in (137, 143)
        assert docker("inspect", "--format", "{{index .Config.Labels \"keep\"}}", "plain"
                      ).stdout.strip() == "me"
        assert _state(docker, "done")["ExitCode"] == 3
        docker("start", "plain")
        assert _state(docker, "plain")["Running"]
    finally:
        _finish(d, docker, tmp_path)


# -- TCP with TLS -----------------------------------------------------------------------------

def _write_pki(root: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def make(subject: str, issuer_key, issuer_name, *, ca: bool = False, usage=None,
             san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(issuer_name or name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        return key, cert

    ca_key, ca_cert = make("dockyard test CA", None, None, ca=True)
    srv_key, srv_cert = make("127.0.0.1", ca_key, ca_cert.subject,
                             usage=ExtendedKeyUsageOID.SERVER_AUTH,
                             san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cli_key, cli_cert = make("client", ca_key, ca_cert.subject,
                             usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    paths = {}
    for name, obj in (("ca.pem", ca_cert), ("server-cert.pem", srv_cert),
                      ("cert.pem", cli_cert)):
        paths[name] = root / name
        paths[name].write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    for name, key in (("server-key.pem", srv_key), ("key.pem", cli_key)):
        paths[name] = root / name
        paths[name].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_with_tlsverify(tmp_path: Path) -> None:
    pki = _write_pki(tmp_path)
    port = _free_port()
    d = Daemon(tmp_path, "--exec-root", str(tmp_path / "exec"), "-H",
               f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(pki["ca.pem"]),
               "--tlscert", str(pki["server-cert.pem"]), "--tlskey", str(pki["server-key.pem"]))
    try:
        client_dir = tmp_path / "client"
        client_dir.mkdir()
        for name in ("ca.pem", "cert.pem", "key.pem"):
            (client_dir / name).write_bytes(pki[name].read_bytes())
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=f"tcp://127.0.0.1:{port}", DOCKER_CONFIG=str(tmp_path))
        ok = subprocess.run([DOCKER, "--tlsverify", "--tlscacert", str(client_dir / "ca.pem"),
                             "--tlscert", str(client_dir / "cert.pem"), "--tlskey",
                             str(client_dir / "key.pem"), "version", "--format",
                             "{{.Server.Os}}"], env=env, capture_output=True, text=True,
                            timeout=30, check=False)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "linux"

        import ssl
        ctx = ssl.create_default_context(cafile=str(pki["ca.pem"]))  # no client certificate
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)), \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            if not tls.recv(100):  # TLS 1.3 reports the refusal on the first read
                raise ConnectionResetError("closed without an answer")
    finally:
        assert d.stop() == 0, d.logs()
