"""Escape classes the runtime must close, checked from inside real containers."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from dockyard.devtools.busybox import make_bundle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
RUNTIME = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")


@pytest.fixture
def run(tmp_path):
    root = str(tmp_path / "state")
    made = []

    def run_container(args, mutate=None, pass_fds=(), extra=(), files=None, preexec=None):
        bundle = str(tmp_path / f"b{len(made)}")
        if not made:
            make_bundle(bundle, args)
        else:
            make_bundle(bundle, args, rootfs_src=os.path.join(made[0], "rootfs"))
        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
        spec["linux"]["cgroupsPath"] = f"/dockyard-test/{uuid.uuid4().hex[:12]}"
        if mutate:
            mutate(spec)
        for path, (content, mode) in (files or {}).items():
            target = os.path.join(bundle, "rootfs", path.lstrip("/"))
            with open(target, "w") as f:
                f.write(content)
            os.chmod(target, mode)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        made.append(bundle)
        cid = f"sec-{uuid.uuid4().hex[:8]}"
        return subprocess.run([RUNTIME, "--root", root, "run", "--bundle", bundle, *extra, cid],
                              capture_output=True, text=True, timeout=60, pass_fds=pass_fds,
                              check=False, preexec_fn=preexec)

    yield run_container
    assert not os.listdir(root) if os.path.isdir(root) else True


def test_only_stdio_fds_reach_the_container(run, tmp_path):
    leaked = os.open(str(tmp_path), os.O_RDONLY)
    os.set_inheritable(leaked, True)  # a careless runtime would hand it on
    try:
        result = run(["ls", "/proc/self/fd"], pass_fds=(leaked,))
    finally:
        os.close(leaked)
    assert leaked > 3
    assert result.returncode == 0, result.stderr
    # 0-2, and the fd ls opened to read the directory
    assert set(result.stdout.split()) == {"0", "1", "2", "3"}


def test_preserve_fds_are_kept(run, tmp_path):
    # --preserve-fds 1 hands fd 3 on: make it a pipe holding a message
    r, w = os.pipe()
    try:
        result = _run_with_fd3(run, r, w)
    finally:
        os.close(r)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "through fd 3\n"


def _run_with_fd3(run, r, w):
    os.write(w, b"through fd 3\n")
    os.close(w)
    saved = os.dup(3) if _is_open(3) else None
    os.dup2(r, 3, inheritable=True)
    try:
        return run(["sh", "-c", "cat <&3"], pass_fds=(3,), extra=("--preserve-fds", "1"))
    finally:
        if saved is not None:
            os.dup2(saved, 3)
            os.close(saved)
        else:
            os.close(3)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_cwd_through_a_leaked_fd_is_refused(run):
    def mutate(spec):
        spec["process"]["cwd"] = "/proc/self/fd/7"
    result = run(["pwd"], mutate=mutate)
    assert result.returncode != 0
    assert "cwd" in result.stderr or "working directory" in result.stderr


def test_the_runtimes_own_interpreter_cannot_be_run(run):
    result = run(["/proc/self/exe", "-c", "print('escaped')"])
    assert result.returncode != 0
    assert "escaped" not in result.stdout
    assert "refusing to run the runtime's own binary" in result.stderr


def test_a_script_with_the_interpreter_as_shebang_is_refused(run):
    script = {"/x": ("#!/proc/self/exe\nprint('escaped')\n", 0o755)}
    result = run(["/x"], files=script)
    assert result.returncode != 0
    assert "escaped" not in result.stdout
    assert "refusing to run the runtime's own binary" in result.stderr


def test_masked_path_source_must_be_the_null_device(tmp_path):
    """A /dev/null that is not the null device is never bind-mounted over masked paths."""
    fake = tmp_path / "not-null"
    fake.write_text("host secret")
    target = tmp_path / "masked"
    target.write_text("visible")
    code = f"""
import os
from dockyard.linux import mount as m, namespaces as ns
from dockyard.runtime import rootfs
ns.unshare(ns.CLONE_NEWNS)
m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
rootfs.mask_paths([{str(target)!r}])
print("real null:", open({str(target)!r}).read() == "")
m.umount({str(target)!r})
m.mount({str(fake)!r}, "/dev/null", None, m.MS_BIND)
try:
    rootfs.mask_paths([{str(target)!r}])
    print("masked with a fake null")
except OSError as e:
    print("refused:", e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "real null: True"
    assert lines[1].startswith("refused:") and "not the null device" in lines[1]


def test_no_imports_after_entering_the_root(tmp_path):
    """block_imports makes a late import fail instead of reading the container's files."""
    code = (
        "import sys\n"
        "from dockyard.runtime.process import block_imports\n"
        "block_imports()\n"
        "try:\n"
        "    import xml.dom\n"
        "except ImportError:\n"
        "    print('blocked')\n"
        "import os\n"
        "print('loaded modules still work', bool(os.getpid()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.split("\n")[:2] == ["blocked", "loaded modules still work True"]


def test_signals_ignored_by_the_runtimes_parent_are_not_passed_on(run):
    import signal

    def ignore_some():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    result = run(["grep", "^SigIgn", "/proc/self/status"], preexec=ignore_some)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SigIgn:", "0000000000000000"]
