"""The builder through `POST /build`: the official docker CLI with DOCKER_BUILDKIT=0 and
our `dockyard build` against our daemon — instructions and the image config they
make, the cache (hits, misses, --no-cache, restarts, prune), parallel multi-stage
builds, --target, COPY --from, .dockerignore, ADD (local archives, loopback URLs),
errors with line numbers, and the safety cases (../, symlinks, git `-` refs).

One daemon per module (a private data root, exec root and socket); busybox:dyk is
imported through it. Everything built is removed; the daemon fixture checks that
no container, mount or monitor is left.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_containers import _check_nothing_left, _read_pid, checked_daemon
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

from dockyard.devtools.busybox import make_rootfs

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dyb")


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Daemon]:
    yield from checked_daemon(workdir)


@pytest.fixture(scope="module")
def docker(daemon: Daemon, workdir: Path) -> Iterator[DockerCLI]:
    cli = DockerCLI.in_workdir(daemon, workdir)
    cli.env["DOCKER_BUILDKIT"] = "0"
    yield cli
    left = cli("ps", "-aq", check=False).stdout.split()
    assert not left, "build containers left behind"


@pytest.fixture(scope="module")
def busybox(docker: DockerCLI, workdir: Path) -> str:
    root = make_rootfs(str(workdir / "rootfs"))
    out = workdir / "busybox.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    return docker("import", "-c", 'CMD ["sh"]', str(out), "busybox:dyk").stdout.strip()


def _dockyard(daemon: Daemon, *args: str, check: bool = True,
              stdin: bytes | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H",
                        f"unix://{daemon.sock}", *args], capture_output=True, input=stdin,
                       timeout=180, check=False)
    r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()  # type: ignore[assignment]
    if check and r.returncode != 0:
        raise AssertionError(f"dockyard {' '.join(args)} -> {r.returncode}\n{r.stdout}\n"
                             f"{r.stderr}")
    return r


def _context(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def _build(docker: DockerCLI, ctx: Path, *args: str, check: bool = True
           ) -> subprocess.CompletedProcess:
    return docker("build", "--force-rm", *args, str(ctx), check=check, timeout=300)


def _image_id(r: subprocess.CompletedProcess) -> str:
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("Successfully built "):
            return line.split()[-1]
    raise AssertionError(f"no image id in:\n{r.stdout}")


def _config(docker: DockerCLI, ref: str) -> dict:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", ref).stdout)


def _rmi(docker: DockerCLI, *refs: str) -> None:
    docker("rmi", "-f", *refs, check=False)


# -- the docker CLI (legacy builder API) ------------------------------------------------------

MULTI = """\
FROM busybox:dyk
ARG VERSION=1.0
ENV APP=/srv/app GREETING="hello world"
LABEL org.example.version=$VERSION maintainer="dock yard"
WORKDIR $APP
COPY hello.txt ./
COPY conf/ conf/
ADD files.tar.gz /opt/
RUN echo "v=$VERSION g=$GREETING" > built.txt && mkdir -p /var/data
EXPOSE 8080 53/udp
VOLUME ["/var/data"]
USER 1000:1000
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat built.txt"]
"""


def _targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_docker_cli_builds_a_multistep_image(docker: DockerCLI, busybox: str,
                                             workdir: Path) -> None:
    ctx = _context(workdir / "multi", {
        "Dockerfile": MULTI, "hello.txt": "hi there\n", "conf/a.conf": "a=1\n",
        "files.tar.gz": _targz({"tool/run.sh": b"#!/bin/sh\necho tool\n"})})
    r = _build(docker, ctx, "-t", "multi:1", "--build-arg", "VERSION=2.5")
    assert "Step 1/16 : FROM busybox:dyk" in r.stdout
    assert "Successfully tagged multi:1" in r.stdout
    cfg = _config(docker, "multi:1")
    assert "APP=/srv/app" in cfg["Env"] and "GREETING=hello world" in cfg["Env"]
    assert any(e.startswith("PATH=") for e in cfg["Env"])
    assert not any(e.startswith("VERSION=") for e in cfg["Env"])  # ARGs do not persist
    assert cfg["Labels"] == {"org.example.version": "2.5", "maintainer": "dock yard"}
    assert cfg["WorkingDir"] == "/srv/app" and cfg["User"] == "1000:1000"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/var/data": {}} and cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 5_000_000_000,
                                  "Retries": 2}
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat built.txt"]
    out = docker("run", "--rm", "multi:1").stdout
    assert out == "v=2.5 g=hello world\n"
    files = docker("run", "--rm", "--entrypoint", "sh", "multi:1", "-c",
                   "cat hello.txt conf/a.conf; /opt/tool/run.sh; stat -c '%u %a' hello.txt"
                   ).stdout
    assert files == "hi there\na=1\ntool\n0 644\n"
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "multi:1").stdout
    assert "|1 VERSION=2.5 /bin/sh -c echo" in history
    _rmi(docker, "multi:1")


def test_dockerfile_error_names_the_line(docker: DockerCLI, busybox: str,
                                         workdir: Path) -> None:
    ctx = _context(workdir / "bad", {"Dockerfile": "FROM busybox:dyk\nRUN true\n\n# x\n"
                                                   "ENV A=1\nLABEL a=b\nRUNN make\n"})
    r = _build(docker, ctx, check=False)
    assert r.returncode == 1
    assert "Dockerfile:7: unknown instruction: RUNN" in r.stderr
    status, _, body = http_request(docker_sock(docker), "POST", "/build",
                                   _tar_of(ctx), {"Content-Type": "application/x-tar"})
    assert status == 400 and b"Dockerfile:7: unknown instruction: RUNN" in body


def test_failing_run_reports_its_code(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "fail", {"Dockerfile": "FROM busybox:dyk\nRUN echo out; exit 3\n"})
    r = _build(docker, ctx, check=False)
    assert r.returncode == 3  # the docker CLI exits with errorDetail's code
    assert "out" in r.stdout
    assert "The command '/bin/sh -c echo out; exit 3' returned a non-zero code: 3" in r.stderr
    status, _, body = http_request(docker_sock(docker), "POST", "/build?forcerm=1",
                                   _tar_of(ctx), {"Content-Type": "application/x-tar"})
    last = json.loads(body.splitlines()[-1])
    assert status == 200 and last["errorDetail"] == {
        "code": 3, "message": "The command '/bin/sh -c echo out; exit 3' returned a "
                              "non-zero code: 3"}
    ours = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H",
                           docker.env["DOCKER_HOST"], "build", "--force-rm", str(ctx)],
                          capture_output=True, timeout=180, check=False)
    assert ours.returncode == 3 and b"returned a non-zero code: 3" in ours.stderr


def docker_sock(docker: DockerCLI) -> str:
    return docker.env["DOCKER_HOST"].removeprefix("unix://")


def _tar_of(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname=".")
    return buf.getvalue()


# -- our CLI -------------------------------------------------------------------------------------

def test_dockyard_build_flags(daemon: Daemon, docker: DockerCLI, busybox: str,
                              workdir: Path) -> None:
    ctx = _context(workdir / "ours", {
        "build/Dockerfile.dev": "FROM busybox:dyk\nARG WHO\nRUN echo $WHO > /who\n",
        "data.txt": "x"})
    iid = workdir / "iid"
    r = _dockyard(daemon, "build", "-t", "ours:a", "-t", "ours:b", "-f",
                  str(ctx / "build/Dockerfile.dev"), "--build-arg", "WHO=me", "--label",
                  "l=v", "--iidfile", str(iid), "--progress", "plain", str(ctx))
    assert "Successfully tagged ours:a" in r.stdout and "Successfully tagged ours:b" in r.stdout
    image_id = iid.read_text()
    assert image_id.startswith("sha256:")
    assert docker("run", "--rm", "ours:a", "cat", "/who").stdout == "me\n"
    assert _config(docker, "ours:b")["Labels"] == {"l": "v"}
    q = _dockyard(daemon, "build", "-q", "-f", str(ctx / "build/Dockerfile.dev"),
                  "--build-arg", "WHO=me", "--label", "l=v", str(ctx))
    assert q.stdout.strip() == image_id  # -q: only the id (and all of it cached)
    r = _dockyard(daemon, "image", "build", "-f", "-", str(ctx),
                  stdin=b"FROM busybox:dyk\nCOPY data.txt /\n")
    assert "Successfully built" in r.stdout
    piped = _dockyard(daemon, "build", "-", stdin=_tar_of(_context(workdir / "piped", {
        "Dockerfile": "FROM busybox:dyk\nCOPY f /f\n", "f": "piped\n"})))
    assert docker("run", "--rm", _image_id(piped), "cat", "/f").stdout == "piped\n"
    _rmi(docker, _image_id(piped))
    bad = _dockyard(daemon, "build", "-f", "-", str(ctx), stdin=b"FROM busybox:dyk\nBAD x\n",
                    check=False)
    assert bad.returncode == 1 and "Dockerfile" in bad.stderr and ":2: unknown instruction: BAD" \
        in bad.stderr
    _rmi(docker, "ours:a", "ours:b", _image_id(r))


# -- the cache ---------------------------------------------------------------------------------------

CACHED = """\
FROM busybox:dyk
RUN echo first > /first
COPY a.txt /a.txt
RUN cat /a.txt > /copy-a
COPY b.txt /b.txt
RUN cat /b.txt > /copy-b
"""


def test_cache_hits_and_misses(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "cache", {"Dockerfile": CACHED, "a.txt": "a1", "b.txt": "b1"})
    first = _build(docker, ctx)
    assert "Using cache" not in first.stdout or first.stdout.count("Using cache") < 5
    again = _build(docker, ctx)
    assert again.stdout.count("Using cache") == 5 and "Running in" not in again.stdout
    assert _image_id(again) == _image_id(first)
    os.utime(ctx / "a.txt", (1, 1))  # touched, not changed: still a hit
    touched = _build(docker, ctx)
    assert _image_id(touched) == _image_id(first)
    (ctx / "b.txt").write_text("b2")  # changed: only the steps from its COPY run again
    changed = _build(docker, ctx)
    steps = changed.stdout.split("Step ")[1:]
    assert [("Using cache" in s) for s in steps] == [False, True, True, True, False, False]
    assert docker("run", "--rm", _image_id(changed), "cat", "/copy-b").stdout == "b2"
    nocache = _build(docker, ctx, "--no-cache")
    assert "Using cache" not in nocache.stdout and nocache.stdout.count("Running in") == 3
    assert _image_id(nocache) != _image_id(changed)
    _rmi(docker, _image_id(nocache), _image_id(changed), _image_id(first))


def test_config_only_steps_are_keyed_by_config(docker: DockerCLI, busybox: str,
                                               workdir: Path) -> None:
    """CVE-2024-24557 class: FROM scratch + a config instruction never hits the cache of
    another config."""
    a = _build(docker, _context(workdir / "cfg-a", {
        "Dockerfile": "FROM scratch\nHEALTHCHECK CMD [\"/bin/true\"]\n"}))
    b = _build(docker, _context(workdir / "cfg-b", {
        "Dockerfile": "FROM scratch\nONBUILD RUN echo x\n"}))
    assert "Using cache" not in b.stdout and _image_id(a) != _image_id(b)
    assert _config(docker, _image_id(b))["OnBuild"] == ["RUN echo x"]
    assert not _config(docker, _image_id(b)).get("Healthcheck")
    _rmi(docker, _image_id(a), _image_id(b))


# -- multi-stage -----------------------------------------------------------------------------------------

PARALLEL = """\
FROM busybox:dyk AS one
RUN cut -d" " -f1 /proc/uptime > /start; sleep 1; cut -d" " -f1 /proc/uptime > /end
FROM busybox:dyk AS two
RUN cut -d" " -f1 /proc/uptime > /start; sleep 1; cut -d" " -f1 /proc/uptime > /end
FROM busybox:dyk AS never
RUN exit 7
FROM busybox:dyk
COPY --from=one /start /one.start
COPY --from=one /end /one.end
COPY --from=two /start /two.start
COPY --from=two /end /two.end
"""


def test_independent_stages_build_in_parallel(docker: DockerCLI, busybox: str,
                                              workdir: Path) -> None:
    ctx = _context(workdir / "parallel", {"Dockerfile": PARALLEL})
    t0 = time.monotonic()
    r = _build(docker, ctx, "--no-cache")
    elapsed = time.monotonic() - t0
    assert "exit 7" not in r.stdout  # a stage the target does not need is skipped
    image = _image_id(r)
    times = docker("run", "--rm", image, "cat", "/one.start", "/one.end", "/two.start",
                   "/two.end").stdout.split()
    s1, e1, s2, e2 = (float(t) for t in times)
    assert s1 < e2 and s2 < e1, f"stages did not overlap: {times}"  # ran at the same time
    assert elapsed < 10
    _rmi(docker, image)


def test_target_and_copy_from(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "target", {"Dockerfile": """\
FROM busybox:dyk AS base
RUN echo base > /base
FROM base AS build
RUN echo build > /build
FROM scratch AS final
COPY --from=build /build /build
COPY --from=busybox:dyk /bin/busybox /bin/busybox
COPY --from=0 /base /base
"""})
    r = _build(docker, ctx, "--target", "build", "-t", "tgt:build")
    assert "FROM scratch" not in r.stdout
    assert docker("run", "--rm", "tgt:build", "cat", "/base", "/build").stdout == "base\nbuild\n"
    r = _build(docker, ctx, "-t", "tgt:final")
    out = docker("run", "--rm", "tgt:final", "/bin/busybox", "cat", "/build", "/base").stdout
    assert out == "build\nbase\n"
    bad = _build(docker, ctx, "--target", "nope", check=False)
    assert bad.returncode != 0 and "failed to reach build target nope" in bad.stderr
    _rmi(docker, "tgt:build", "tgt:final")


def test_onbuild_triggers_run_in_child(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    _build(docker, _context(workdir / "onb-parent", {
        "Dockerfile": "FROM busybox:dyk\nONBUILD RUN echo triggered > /trig\n"}),
        "-t", "onb:parent")
    r = _build(docker, _context(workdir / "onb-child", {"Dockerfile": "FROM onb:parent\n"
                                                        "LABEL child=1\n"}), "-t", "onb:child")
    assert "Executing 1 build trigger" in r.stdout
    assert docker("run", "--rm", "onb:child", "cat", "/trig").stdout == "triggered\n"
    assert not _config(docker, "onb:child").get("OnBuild")
    _rmi(docker, "onb:child", "onb:parent")


def test_heredocs_and_run_mounts(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "heredoc", {"Dockerfile": """\
FROM busybox:dyk
ENV NAME=dockyard
COPY <<EOF /greeting
hello $NAME
EOF
RUN <<EOT
echo "line one" > /script-out
echo "line two" >> /script-out
EOT
RUN --mount=type=cache,target=/cache echo x >> /cache/log; wc -l < /cache/log > /count
RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/f > /bound
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && test ! -e /x
RUN --network=none cat /proc/net/dev | grep -c : > /ifaces
""", "data/f": "bound file\n"})
    image = _image_id(_build(docker, ctx))
    out = docker("run", "--rm", image, "cat", "/greeting", "/script-out", "/bound",
                 "/ifaces").stdout
    assert out == "hello dockyard\nline one\nline two\nbound file\n1\n"
    ls = docker("run", "--rm", image, "sh", "-c", "ls /cache /mnt/data /scratch 2>&1; true")
    assert "bound file" not in ls.stdout
    count1 = docker("run", "--rm", image, "cat", "/count").stdout.strip()
    image2 = _image_id(_build(docker, ctx, "--no-cache"))
    count2 = docker("run", "--rm", image2, "cat", "/count").stdout.strip()
    assert int(count2) == int(count1) + 1  # the cache mount outlives the build
    _rmi(docker, image, image2)


# -- .dockerignore and ADD -------------------------------------------------------------------------------

def test_dockerignore(daemon: Daemon, docker: DockerCLI, busybox: str, workdir: Path) -> None:
    files = {"Dockerfile": "FROM busybox:dyk\nCOPY . /ctx/\n",
             ".dockerignore": "*.log\n!keep.log\nsecret/\nDockerfile\n.dockerignore\n**/tmp\n",
             "a.txt": "a", "x.log": "x", "keep.log": "k", "secret/key": "s",
             "src/tmp/t": "t", "src/main.c": "m"}
    ctx = _context(workdir / "ignore", files)
    for build in (lambda: _build(docker, ctx), lambda: _dockyard(daemon, "build", str(ctx))):
        image = _image_id(build())
        found = docker("run", "--rm", image, "find", "/ctx", "-type", "f").stdout.split()
        assert sorted(found) == ["/ctx/a.txt", "/ctx/keep.log", "/ctx/src/main.c"]
        _rmi(docker, image)


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args) -> None:
        pass


def test_add_url_from_loopback_and_local_archives(docker: DockerCLI, busybox: str,
                                                  workdir: Path) -> None:
    archive = _targz({"inner/file": b"from the archive\n"})
    _Handler.payload = archive
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dl/remote.tar.gz"
        digest = "sha256:" + hashlib.sha256(archive).hexdigest()
        ctx = _context(workdir / "add", {
            "Dockerfile": f"FROM busybox:dyk\nADD --checksum={digest} {url} /remote/\n"
                          "ADD local.tar.gz /local/\nADD plain.txt /plain/\n",
            "local.tar.gz": archive, "plain.txt": "p"})
        image = _image_id(_build(docker, ctx, "--network", "host"))
        out = docker("run", "--rm", image, "sh", "-c",
                     "ls /remote; cat /local/inner/file /plain/plain.txt").stdout
        assert out == "remote.tar.gz\nfrom the archive\np"  # a URL is never extracted
        bad = _context(workdir / "add-bad", {
            "Dockerfile": f"FROM busybox:dyk\nADD --checksum=sha256:{'0' * 64} {url} /r\n"})
        r = _build(docker, bad, check=False)
        assert r.returncode != 0 and "checksum mismatch" in r.stderr
        _rmi(docker, image)
    finally:
        server.shutdown()
        server.server_close()


# -- safety --------------------------------------------------------------------------------------------------

def test_safety(daemon: Daemon, docker: DockerCLI, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "safety", {"Dockerfile": "FROM busybox:dyk\nCOPY ../x /x\n"})
    r = _build(docker, ctx, check=False)
    assert r.returncode != 0 and "outside the build context" in r.stderr
    os.symlink("/etc", ctx / "hostetc")
    (ctx / "Dockerfile").write_text("FROM busybox:dyk\nCOPY hostetc/hostname /h\n")
    r = _build(docker, ctx, check=False)  # the link is resolved inside the context only
    assert r.returncode != 0 and "not found" in r.stderr.lower()
    (ctx / "Dockerfile").write_text("FROM busybox:dyk\nCOPY hostetc /link\n")
    image = _image_id(_build(docker, ctx))  # a symlink is copied as a symlink
    assert docker("run", "--rm", image, "readlink", "/link").stdout == "/etc\n"
    _rmi(docker, image)
    evil = _targz({"../../escape": b"x"})
    _context(ctx, {"evil.tar.gz": evil, "Dockerfile": "FROM busybox:dyk\nADD evil.tar.gz /x/\n"})
    r = _build(docker, ctx, check=False)
    assert r.returncode != 0 and ".." in r.stderr
    (ctx / "Dockerfile").write_text("FROM busybox:dyk\nADD https://example.com/r.git#-u/x /x\n")
    r = _build(docker, ctx, check=False)
    assert r.returncode != 0 and "must not start with '-'" in r.stderr
    status, _, body = http_request(daemon.sock, "POST",
                                   "/build?remote=git@github.com:a/b.git%23--upload-pack=x")
    assert status == 400 and b"must not start with '-'" in body


# -- prune and restarts ---------------------------------------------------------------------------------------

def test_builder_prune(daemon: Daemon, docker: DockerCLI, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "prune", {"Dockerfile": "FROM busybox:dyk\nRUN echo p > /p\n"})
    image = _image_id(_build(docker, ctx))
    _rmi(docker, image)
    r = _dockyard(daemon, "builder", "prune", "-f")
    assert "Total reclaimed space" in r.stdout
    again = _build(docker, ctx)
    assert "Using cache" not in again.stdout
    status, _, body = http_request(daemon.sock, "POST", "/build/prune")
    assert status == 200 and "SpaceReclaimed" in json.loads(body)
    _rmi(docker, _image_id(again))


def test_cache_survives_daemon_restart(tmp_path: Path) -> None:
    d = Daemon(tmp_path, "--exec-root", str(tmp_path / "exec"))
    try:
        cli = DockerCLI(d, tmp_path)
        cli.env["DOCKER_BUILDKIT"] = "0"
        root = make_rootfs(str(tmp_path / "rootfs"))
        with tarfile.open(tmp_path / "bb.tar", "w") as tar:
            tar.add(root, arcname=".")
        cli("import", "-c", 'CMD ["sh"]', str(tmp_path / "bb.tar"), "busybox:dyk")
        ctx = _context(tmp_path / "ctx", {"Dockerfile": "FROM busybox:dyk\nRUN echo r > /r\n"})
        first = _image_id(_build(cli, ctx))
    finally:
        monitor_pid = _read_pid(tmp_path / "exec" / "monitor.pid")
        assert d.stop() == 0
    d = Daemon(tmp_path, "--exec-root", str(tmp_path / "exec"))
    try:
        again = _build(cli, ctx)
        assert "Using cache" in again.stdout and _image_id(again) == first
    finally:
        monitor_pid = _read_pid(tmp_path / "exec" / "monitor.pid")
        ids = os.listdir(os.path.join(d.data_root, "containers"))
        assert d.stop() == 0
        _check_nothing_left(tmp_path, monitor_pid, ids)


def test_proxy_args_and_unused_build_args(docker: DockerCLI, busybox: str,
                                          workdir: Path) -> None:
    ctx = _context(workdir / "proxy", {"Dockerfile": "FROM busybox:dyk\n"
                                                     "RUN echo \"$HTTP_PROXY\" > /proxy\n"})
    r = _build(docker, ctx, "--build-arg", "HTTP_PROXY=http://proxy.invalid:3128",
               "--build-arg", "UNUSED=1")
    assert "[Warning] One or more build-args ['UNUSED'] were not consumed" in r.stdout
    image = _image_id(r)
    assert docker("run", "--rm", image, "cat", "/proxy").stdout == "http://proxy.invalid:3128\n"
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert "proxy.invalid" not in history
    assert not any(e.startswith("HTTP_PROXY") for e in _config(docker, image)["Env"])
    _rmi(docker, image)


# -- the corpus, built -----------------------------------------------------------------------------------

def _corpus() -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
    from build_corpus import cases, expected

    return [n for n in cases() if expected(n).get("buildable")]


@pytest.mark.parametrize("name", _corpus())
def test_corpus_builds(name: str, docker: DockerCLI, busybox: str, workdir: Path) -> None:
    from build_corpus import CORPUS, expected

    exp = expected(name)
    ctx = _context(workdir / f"corpus-{name}", {
        "Dockerfile": (CORPUS / f"{name}.Dockerfile").read_text()})
    args = [a for k, v in (exp.get("build_args") or {}).items() for a in ("--build-arg",
                                                                        f"{k}={v}")]
    if exp.get("target"):
        args += ["--target", exp["target"]]
    image = _image_id(_build(docker, ctx, *args))
    cfg = _config(docker, image)
    stage = exp["stages"][exp["needed"][-1]]
    for key, value in stage["config"].items():
        if key == "Env":
            assert set(value) <= set(cfg["Env"]), (key, cfg["Env"])
        else:
            assert cfg.get(key) == value, (key, cfg.get(key))
    for path, content in (exp.get("tree") or {}).items():
        if content is None:
            docker("run", "--rm", "--entrypoint", "test", image, "-e", path)
        else:
            out = docker("run", "--rm", "--entrypoint", "cat", image, path).stdout
            assert out == content, path
    _rmi(docker, image)


def test_from_and_copy_from_pull_missing_images(docker: DockerCLI, busybox: str,
                                                workdir: Path) -> None:
    from test_daemon_images import Registry

    registry = Registry(workdir / "registry")
    try:
        remote = f"{registry.host}/lib/bb:1"
        docker("tag", "busybox:dyk", remote)
        docker("push", remote)
        docker("rmi", remote)
        ctx = _context(workdir / "pull", {"Dockerfile": f"FROM {remote}\n"
                                                        f"COPY --from={remote} /bin/busybox /x/\n"
                                                        "RUN /x/busybox true\n"})
        r = _build(docker, ctx, "--pull")
        assert "Status: " in r.stdout or "Pull complete" in r.stdout or "Downloaded" in r.stdout
        image = _image_id(r)
        docker("run", "--rm", image, "test", "-x", "/x/busybox")
        _rmi(docker, image, remote)
    finally:
        registry.stop()


def _git(*args: str, cwd: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.mark.skipif(not os.path.exists("/usr/bin/git"), reason="git missing")
def test_git_sources_from_a_loopback_server(daemon: Daemon, docker: DockerCLI, busybox: str,
                                           workdir: Path) -> None:
    import functools

    src = _context(workdir / "gitsrc", {"Dockerfile": "FROM busybox:dyk\nCOPY . /src/\n",
                                         "sub/x": "from git\n"})
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", ".", cwd=src)
    _git("commit", "-q", "-m", "one", cwd=src)
    serve = workdir / "gitserve"
    serve.mkdir()
    _git("clone", "-q", "--bare", str(src), str(serve / "repo.git"), cwd=workdir)
    _git("update-server-info", cwd=serve / "repo.git")  # the dumb http protocol
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(serve))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/repo.git"
        ctx = _context(workdir / "gitadd", {"Dockerfile": f"FROM busybox:dyk\n"
                                                          f"ADD {url}#main:sub /g/\n"})
        image = _image_id(_build(docker, ctx, "--network", "host"))
        assert docker("run", "--rm", image, "cat", "/g/x").stdout == "from git\n"
        _rmi(docker, image)
        status, _, body = http_request(daemon.sock, "POST", f"/build?remote={url}&t=remote:1"
                                                            "&networkmode=host")
        assert status == 200 and b"Successfully tagged remote:1" in body, body
        assert docker("run", "--rm", "remote:1", "cat", "/src/sub/x").stdout == "from git\n"
        _rmi(docker, "remote:1")
    finally:
        server.shutdown()
        server.server_close()


def test_run_steps_do_not_probe_health(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "health", {"Dockerfile": "FROM busybox:dyk\n"
                   "HEALTHCHECK --interval=100ms --start-period=1ms CMD touch /probed\n"
                   "RUN sleep 1\n"})
    image = _image_id(_build(docker, ctx))
    r = docker("run", "--rm", "--no-healthcheck", image, "test", "-e", "/probed", check=False)
    assert r.returncode == 1  # no probe ran in the RUN container (its layer would have it)
    assert _config(docker, image)["Healthcheck"]["Test"] == ["CMD-SHELL", "touch /probed"]
    _rmi(docker, image)


# -- secrets, platforms, cancellation, --cache-from, --link, prune and df ------------------------

SECRET = b"s3cret-V4lue-9f2c"


def _layer_blobs(docker: DockerCLI, image: str, workdir: Path) -> list[bytes]:
    """Every file of `docker save` of `image`, layers decompressed."""
    import gzip

    out = workdir / "saved.tar"
    docker("save", "-o", str(out), image)
    blobs = []
    with tarfile.open(out) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            data = tar.extractfile(m).read()  # type: ignore[union-attr]
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            blobs.append(data)
    out.unlink()
    return blobs


def test_run_secret_mounts(daemon: Daemon, docker: DockerCLI, busybox: str,
                           workdir: Path) -> None:
    df = ("FROM busybox:dyk\n"
          "COPY . /ctx/\n"
          "RUN --mount=type=secret,id=tok test \"$(md5sum < /run/secrets/tok)\" = "
          f"\"{hashlib.md5(SECRET).hexdigest()}  -\" && ls -ln /run/secrets/tok > /mode\n"
          "RUN --mount=type=secret,id=tok,target=/etc/tok.txt,mode=0440,uid=1000,gid=50 "
          "ls -ln /etc/tok.txt > /mode2\n"
          "RUN --mount=type=secret,id=fromenv cat /run/secrets/fromenv > /dev/null "
          "&& echo env-ok > /env-ok\n"
          "RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent\n")
    ctx = _context(workdir / "secret", {"Dockerfile": df, "plain.txt": "p\n"})
    secret_file = workdir / "secret.txt"
    secret_file.write_bytes(SECRET)
    env = {**os.environ, "MYTOK": "from-the-env"}

    def build(*extra: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H",
                            f"unix://{daemon.sock}", "build", "--progress=plain", "--force-rm",
                            *extra, str(ctx)], capture_output=True, timeout=180, check=False,
                           env=env)
        r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()  # type: ignore[assignment]
        if check:
            assert r.returncode == 0, r.stdout + r.stderr
        return r

    build("--secret", f"id=tok,src={secret_file}", "--secret", "id=fromenv,env=MYTOK",
          "-t", "secret:1")
    image = "secret:1"
    run = docker("run", "--rm", image, "sh", "-c",
                 "cat /mode /mode2 /env-ok; ls -a /ctx; ls /run/secrets 2>&1; "
                 "test -e /etc/tok.txt && echo LEFT; true").stdout
    assert "-r--------" in run and " 0 " in run  # 0400, root
    assert "-r--r-----" in run and "1000" in run and "50" in run
    assert "env-ok" in run and "plain.txt" in run
    assert ".dockyard.secrets" not in run and "LEFT" not in run
    for blob in _layer_blobs(docker, image, workdir):
        assert SECRET not in blob and b"from-the-env" not in blob
        if blob[257:262] == b"ustar":  # a layer: no mount stub, no secret channel
            with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
                names = [n.rstrip("/") for n in layer.getnames()]
            assert not any(n.startswith(("run/secrets", "etc/tok.txt")) or
                           ".dockyard.secrets" in n for n in names), names
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert SECRET.decode() not in history
    inspect = docker("image", "inspect", image).stdout
    assert "from-the-env" not in inspect
    # BuildKit's rule: the secret's content is not in the cache key
    secret_file.write_bytes(b"another value")
    again = build("--secret", f"id=tok,src={secret_file}", "--secret", "id=fromenv,env=MYTOK")
    assert again.stdout.count("Using cache") == 5, again.stdout
    # a required secret that was not sent: an error at its line
    ctx2 = _context(workdir / "secret-req", {
        "Dockerfile": "FROM busybox:dyk\nRUN echo x\n"
                      "RUN --mount=type=secret,id=nope,required true\n"})
    r = _build(docker, ctx2, check=False)
    assert r.returncode != 0 and "Dockerfile:3: secret nope not found" in r.stderr
    _rmi(docker, image)


def test_secret_channel_is_reserved(daemon: Daemon, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "secret-reserved", {"Dockerfile": "FROM busybox:dyk\n",
                                                 ".dockyard.secrets/x": "no"})
    r = _dockyard(daemon, "build", str(ctx), check=False)
    assert r.returncode != 0 and "reserved" in r.stderr


def test_platform(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    from dockyard.image import formats

    os_, arch, _ = formats.host_platform()
    host = f"{os_}/{arch}"
    other = "linux/arm64" if arch != "arm64" else "linux/amd64"
    ok = _context(workdir / "plat-ok", {"Dockerfile": (
        f"FROM --platform={host} busybox:dyk AS a\n"
        "FROM --platform=$BUILDPLATFORM busybox:dyk AS b\n"
        "FROM --platform=$TARGETPLATFORM busybox:dyk\nRUN echo ok\n")})
    image = _image_id(_build(docker, ok, "--platform", host))
    bad = _context(workdir / "plat-bad", {"Dockerfile": (
        "FROM busybox:dyk\nRUN true\n"
        f"FROM --platform={other} busybox:dyk\n")})
    r = _build(docker, bad, check=False)
    assert r.returncode != 0
    assert f"Dockerfile:3: dockyard builds for {host} only: platform '{other}'" in r.stderr
    r = _build(docker, ok, "--platform", other, check=False)
    assert r.returncode != 0 and f"dockyard builds for {host} only" in r.stderr
    _rmi(docker, image)


def test_client_going_away_cancels_the_build(daemon: Daemon, docker: DockerCLI, busybox: str,
                                             workdir: Path) -> None:
    ctx = _context(workdir / "cancel", {"Dockerfile": "FROM busybox:dyk\n"
                                                      "RUN echo begin-$((1+1)); sleep 60\n"
                                                      "RUN echo never\n"})
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "-H",
                             f"unix://{daemon.sock}", "build", "--progress=plain", "-t",
                             "cancel:1", str(ctx)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"begin-2" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert b"Running in" in seen, seen
    finally:
        proc.kill()
        proc.wait()
    t0 = time.monotonic()
    while docker("ps", "-aq").stdout.strip() and time.monotonic() - t0 < 20:
        time.sleep(0.2)
    assert not docker("ps", "-aq").stdout.strip(), "the step's container was left"
    assert time.monotonic() - t0 < 20
    assert docker("image", "inspect", "cancel:1", check=False).returncode != 0


def test_cache_from_a_loaded_image(docker: DockerCLI, busybox: str, workdir: Path,
                                   tmp_path: Path) -> None:
    df = ("FROM busybox:dyk\nRUN echo a > /a\nCOPY f.txt /f.txt\nENV X=1\n"
          "RUN echo b > /b\nCMD [\"cat\", \"/b\"]\n")
    ctx = _context(workdir / "cachefrom", {"Dockerfile": df, "f.txt": "file\n"})
    first = _image_id(_build(docker, ctx, "-t", "cf:1"))
    saved = tmp_path / "cf.tar"
    docker("save", "-o", str(saved), "busybox:dyk", "cf:1")
    _rmi(docker, "cf:1")
    d = Daemon(tmp_path, "--exec-root", str(tmp_path / "exec"))  # a fresh daemon
    try:
        cli = DockerCLI(d, tmp_path)
        cli.env["DOCKER_BUILDKIT"] = "0"
        cli("load", "-i", str(saved))
        r = _build(cli, ctx, "--cache-from", "cf:1")
        assert r.stdout.count("Using cache") == 5, r.stdout
        assert "Running in" not in r.stdout
        assert _image_id(r) == first[:12] or first.startswith(_image_id(r))
        assert cli("run", "--rm", "cf:1").stdout == "b\n"
        # a changed step misses, and everything after it
        (ctx / "f.txt").write_text("changed\n")
        r = _build(cli, ctx, "--cache-from", "cf:1")
        assert r.stdout.count("Using cache") == 1, r.stdout
        (ctx / "f.txt").write_text("file\n")
        cli("rmi", "-f", _image_id(r), "cf:1", check=False)
    finally:
        monitor_pid = _read_pid(tmp_path / "exec" / "monitor.pid")
        ids = os.listdir(os.path.join(d.data_root, "containers"))
        assert d.stop() == 0
        _check_nothing_left(tmp_path, monitor_pid, ids)


def test_copy_link_cache_ignores_the_layers_below(docker: DockerCLI, busybox: str,
                                                  workdir: Path) -> None:
    ctx = _context(workdir / "link", {"a.txt": "a\n", "Dockerfile": (
        "FROM busybox:dyk\nRUN echo one > /one\nCOPY --link a.txt /data/\n"
        "COPY a.txt /plain/\n")})
    first = _image_id(_build(docker, ctx))
    (ctx / "Dockerfile").write_text("FROM busybox:dyk\nRUN echo two > /two\n"
                                    "COPY --link a.txt /data/\nCOPY a.txt /plain/\n")
    r = _build(docker, ctx)
    steps = r.stdout.split("Step ")
    assert "Using cache" in steps[3] and "Using cache" not in steps[2]  # --link: a hit
    assert "Using cache" not in steps[4]  # a plain COPY on a new parent: a miss
    image = _image_id(r)
    out = docker("run", "--rm", image, "sh", "-c", "cat /data/a.txt /plain/a.txt /two; "
                                                   "test -e /one || echo no-one").stdout
    assert out == "a\na\ntwo\nno-one\n"
    _rmi(docker, image, first)


def test_copy_parents(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    ctx = _context(workdir / "parents", {
        "src/a/m.txt": "a\n", "src/b/m.txt": "b\n", "src/b/other.txt": "o\n",
        "base/keep/k.txt": "k\n", "Dockerfile": (
            "FROM busybox:dyk\nCOPY --parents src/*/m.txt /out/\n"
            "COPY --parents ./base/./keep/k.txt /piv/\n")})
    image = _image_id(_build(docker, ctx))
    out = docker("run", "--rm", image, "find", "/out", "/piv", "-type", "f").stdout.split()
    assert sorted(out) == ["/out/src/a/m.txt", "/out/src/b/m.txt", "/piv/keep/k.txt"]
    _rmi(docker, image)


def test_builder_prune_options_and_df(daemon: Daemon, docker: DockerCLI, busybox: str,
                                      workdir: Path) -> None:
    kept = _context(workdir / "prune-kept", {"Dockerfile": "FROM busybox:dyk\n"
                                                           "RUN echo kept > /k\n"})
    _build(docker, kept, "-t", "kept:1")
    gone = _context(workdir / "prune-gone", {"Dockerfile": "FROM busybox:dyk\n"
                                                           "RUN head -c 300000 /dev/urandom "
                                                           "> /blob\n"})
    dangling = _image_id(_build(docker, gone))  # untagged: its cache is dangling
    status, _, body = http_request(daemon.sock, "GET", "/system/df")
    cache = json.loads(body)["BuildCache"]
    assert status == 200 and any(c["Type"] == "regular" and c["Shared"] for c in cache)
    assert all({"ID", "Type", "Size", "InUse", "Shared", "CreatedAt", "LastUsedAt"} <= set(c)
               for c in cache)
    table = _dockyard(daemon, "system", "df").stdout
    assert "Build Cache" in table
    assert "CACHE TYPE" in _dockyard(daemon, "system", "df", "-v").stdout
    verbose = docker("system", "df", "-v").stdout  # the docker CLI reads our records
    assert "Build cache usage" in verbose and "regular" in verbose
    assert "Build Cache" in docker("system", "df").stdout
    r = docker("builder", "prune", "-f", "--filter", "until=24h", "--keep-storage", "10MB")
    assert "Total reclaimed space: 0B" in r.stdout
    r = _dockyard(daemon, "builder", "prune", "-f", "--filter", "until=24h")
    assert "Total reclaimed space: 0B" in r.stdout  # nothing is a day old
    r = _dockyard(daemon, "builder", "prune", "-f", "--keep-storage", "1GB")
    assert "Total reclaimed space: 0B" in r.stdout  # all of it fits
    r = _dockyard(daemon, "builder", "prune", "-f")  # the dangling cache only
    assert "Deleted build cache objects:" in r.stdout
    assert "Total reclaimed space: 0B" not in r.stdout
    assert "Using cache" in _build(docker, kept).stdout  # shared with kept:1: kept
    assert docker("image", "inspect", dangling, check=False).returncode != 0  # removed
    status, _, body = http_request(daemon.sock, "POST",
                                   "/build/prune?all=1&filters=%7B%22until%22%3A%5B%2224h"
                                   "%22%5D%7D")
    assert status == 200 and json.loads(body)["CachesDeleted"] is None
    status, _, body = http_request(daemon.sock, "POST", "/build/prune?all=1")
    doc = json.loads(body)
    assert status == 200 and doc["CachesDeleted"] and "SpaceReclaimed" in doc
    assert "Using cache" not in _build(docker, kept).stdout
    status, _, _ = http_request(daemon.sock, "POST",
                                "/build/prune?filters=%7B%22until%22%3A%5B%22soon%22%5D%7D")
    assert status == 400
    _rmi(docker, "kept:1")
