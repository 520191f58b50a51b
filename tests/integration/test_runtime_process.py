"""What the container's init sees: namespaces, hostname, mounts, caps, user, env, limits.

Each test runs a busybox command with `run` in the foreground, without a
terminal, and checks its stdout.
"""

from __future__ import annotations

import os
import subprocess

import pytest

CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]


def cap_mask(names: list[str]) -> int:
    return sum(1 << CAPS.index(n) for n in names)


def status_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def run_sh(rt, script: str, configure=None, timeout: float = 30):
    b = rt.bundle(["sh", "-c", script], configure=configure)
    return rt.run_fg(b, timeout=timeout)


def test_exit_code_and_stdio_are_passed_through(rt):
    r = run_sh(rt, "echo to-out; echo to-err >&2; exit 42")
    assert r.returncode == 42
    assert r.stdout == "to-out\n"
    assert r.stderr == "to-err\n"


def test_stdin_is_passed_through(rt):
    b = rt.bundle(["sh", "-c", "read line; echo got:$line"])
    r = rt("run", "--bundle", str(b.path), b.id, input="hello stdin\n").check()
    assert r.stdout == "got:hello stdin\n"


def test_run_without_detach_removes_container(rt):
    b = rt.bundle(["true"])
    rt.run_fg(b).check()
    assert rt("state", b.id).returncode != 0
    assert b.id not in rt.ok("list", "-q").stdout.split()


def test_hostname_from_spec(rt):
    def conf(s):
        s["hostname"] = "dyt-host-7"

    host_before = os.uname().nodename
    r = run_sh(rt, "hostname; cat /proc/sys/kernel/hostname", conf).check()
    assert r.stdout.split() == ["dyt-host-7", "dyt-host-7"]
    assert os.uname().nodename == host_before


def test_init_is_pid_1(rt):
    r = run_sh(rt, "echo $$; cat /proc/1/cmdline | tr '\\0' ' '").check()
    lines = r.stdout.splitlines()
    assert lines[0] == "1"
    assert lines[1].startswith("sh -c")


def test_namespaces_differ_from_host(rt):
    kinds = ["pid", "net", "ipc", "uts", "mnt"]
    r = run_sh(rt, " ; ".join(f"readlink /proc/self/ns/{k}" for k in kinds)).check()
    inside = r.stdout.split()
    assert len(inside) == len(kinds)
    for kind, link in zip(kinds, inside):
        assert link != os.readlink(f"/proc/self/ns/{kind}"), kind


def test_network_namespace_has_only_loopback(rt):
    r = run_sh(rt, "ls /sys/class/net").check()
    assert r.stdout.split() == ["lo"]


def test_default_mounts_present(rt):
    r = run_sh(rt, "cat /proc/mounts").check()
    mounts = {}
    for line in r.stdout.splitlines():
        _src, dest, fstype, opts = line.split()[:4]
        mounts[dest] = (fstype, opts.split(","))
    assert mounts["/proc"][0] == "proc"
    assert mounts["/dev"][0] == "tmpfs"
    assert mounts["/dev/pts"][0] == "devpts"
    assert mounts["/dev/shm"][0] == "tmpfs"
    assert mounts["/dev/mqueue"][0] == "mqueue"
    assert mounts["/sys"][0] == "sysfs"
    assert "ro" in mounts["/sys"][1]
    assert "nosuid" in mounts["/dev"][1]
    # root.readonly is true in runc's default spec
    assert "ro" in mounts["/"][1]


def test_readonly_root(rt):
    r = run_sh(rt, "touch /probe")
    assert r.returncode != 0
    assert "Read-only file system" in r.stderr

    def writable(s):
        s["root"]["readonly"] = False

    r = run_sh(rt, "touch /probe && echo ok", writable).check()
    assert r.stdout == "ok\n"


def test_default_devices(rt):
    r = run_sh(
        rt,
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T' /dev/$d; done; "
        "readlink /dev/ptmx; readlink /dev/fd",
    ).check()
    lines = r.stdout.splitlines()
    expect = {
        "null": "1:3",
        "zero": "1:5",
        "full": "1:7",
        "random": "1:8",
        "urandom": "1:9",
        "tty": "5:0",
    }
    for line, (name, majmin) in zip(lines, expect.items()):
        assert line == f"/dev/{name} character special file {majmin}"
    assert lines[6] == "pts/ptmx"
    assert lines[7] == "/proc/self/fd"


def test_capabilities_match_spec(rt):
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE"]

    def conf(s):
        s["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}

    r = run_sh(rt, "grep ^Cap /proc/self/status", conf).check()
    st = status_fields(r.stdout)
    mask = cap_mask(caps)
    assert int(st["CapBnd"], 16) == mask
    assert int(st["CapPrm"], 16) == mask
    assert int(st["CapEff"], 16) == mask
    assert int(st["CapInh"], 16) == 0
    assert int(st["CapAmb"], 16) == 0


def test_non_root_user_without_ambient_has_no_effective_caps(rt):
    caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]

    def conf(s):
        s["process"]["user"] = {"uid": 1000, "gid": 1000}
        s["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}

    r = run_sh(rt, "grep ^Cap /proc/self/status", conf).check()
    st = status_fields(r.stdout)
    assert int(st["CapBnd"], 16) == cap_mask(caps)
    assert int(st["CapEff"], 16) == 0
    assert int(st["CapPrm"], 16) == 0
    assert int(st["CapAmb"], 16) == 0


def test_ambient_capabilities_for_non_root_user(rt):
    bnd = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"]
    amb = ["CAP_NET_BIND_SERVICE"]

    def conf(s):
        s["process"]["user"] = {"uid": 1000, "gid": 1000}
        s["process"]["capabilities"] = {
            "bounding": bnd,
            "effective": amb,
            "permitted": amb,
            "inheritable": amb,
            "ambient": amb,
        }

    r = run_sh(rt, "grep ^Cap /proc/self/status", conf).check()
    st = status_fields(r.stdout)
    assert int(st["CapBnd"], 16) == cap_mask(bnd)
    assert int(st["CapAmb"], 16) == cap_mask(amb)
    assert int(st["CapInh"], 16) == cap_mask(amb)
    assert int(st["CapPrm"], 16) == cap_mask(amb)
    assert int(st["CapEff"], 16) == cap_mask(amb)


def test_dropped_capability_is_enforced(rt):
    # Without CAP_CHOWN, root cannot chown a file it does not own... but it owns it;
    # chown to another uid needs CAP_CHOWN regardless.
    def conf(s):
        s["root"]["readonly"] = False
        caps = ["CAP_KILL"]
        s["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}

    r = run_sh(rt, "touch /tmp/f && chown 1000 /tmp/f", conf)
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr


def test_masked_paths(rt):
    files = [
        p
        for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug")
        if os.path.exists(p)
    ]
    dirs = [
        p for p in ("/proc/acpi", "/proc/scsi", "/sys/firmware", "/proc/asound") if os.path.isdir(p)
    ]
    if not files or not dirs:
        pytest.skip("host has none of the usual maskable proc/sys paths")
    f, d = files[0], dirs[0]

    def conf(s):
        s["linux"]["maskedPaths"] = [f, d]

    script = (
        f"stat -c '%F %t:%T' {f}; wc -c < {f}; ls -A {d} | wc -l; "
        f"touch {d}/x 2>&1 || echo write-refused; grep ' {d} ' /proc/mounts"
    )
    r = run_sh(rt, script, conf).check()
    lines = r.stdout.splitlines()
    assert lines[0] == "character special file 1:3"  # /dev/null bound over the file
    assert lines[1].strip() == "0"
    assert lines[2].strip() == "0"
    assert "write-refused" in r.stdout
    fstype, opts = lines[-1].split()[2:4]
    assert fstype == "tmpfs"
    assert "ro" in opts.split(",")


def test_readonly_paths(rt):
    r = run_sh(rt, "grep ' /proc/sys ' /proc/mounts; echo x > /proc/sys/kernel/hostname")
    assert r.returncode != 0
    assert "ro" in r.stdout.split()[3].split(",")
    assert "Read-only file system" in r.stderr

    def no_ro(s):
        s["linux"]["readonlyPaths"] = [p for p in s["linux"]["readonlyPaths"] if p != "/proc/sys"]

    r = run_sh(rt, "echo changed > /proc/sys/kernel/hostname && hostname", no_ro).check()
    assert r.stdout == "changed\n"


def test_rlimits(rt):
    def conf(s):
        s["process"]["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "soft": 555, "hard": 777},
            {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
        ]

    r = run_sh(rt, "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu", conf).check()
    assert r.stdout.split() == ["555", "777", "300", "400"]


def test_user_and_groups(rt):
    def conf(s):
        s["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}

    r = run_sh(rt, "id; grep -E '^(Uid|Gid|Groups)' /proc/self/status", conf).check()
    lines = r.stdout.splitlines()
    assert lines[0] == "uid=1000 gid=1000 groups=10,20"
    st = status_fields("\n".join(lines[1:]))
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1000"] * 4
    assert st["Groups"].split() == ["10", "20"]


def test_root_user_has_no_supplementary_groups_by_default(rt):
    r = run_sh(rt, "grep ^Groups /proc/self/status; id -u").check()
    assert status_fields(r.stdout)["Groups"] == ""
    assert r.stdout.splitlines()[1] == "0"


def test_no_signal_ignored_or_blocked(rt):
    """The runtime's own dispositions (CPython ignores SIGPIPE) must not leak in."""
    r = run_sh(rt, "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -c 2", None).check()
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SigBlk:", "0000000000000000"]
    assert lines[1].split() == ["SigIgn:", "0000000000000000"]
    assert "Broken pipe" not in r.stderr  # `yes` dies of SIGPIPE quietly


def test_env(rt, monkeypatch):
    monkeypatch.setenv("DYT_HOST_ONLY", "leak")

    def conf(s):
        s["process"]["env"] = ["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY="]

    r = run_sh(rt, "env", conf).check()
    env = r.stdout.splitlines()
    assert "FOO=bar baz" in env
    assert "EMPTY=" in env
    assert "PATH=/bin:/usr/bin" in env
    assert not any(e.startswith("DYT_HOST_ONLY=") for e in env)


def test_home_defaults_from_passwd(rt):
    def as_root(s):
        s["process"]["env"] = ["PATH=/bin"]

    def as_nobody(s):
        s["process"]["env"] = ["PATH=/bin"]
        s["process"]["user"] = {"uid": 65534, "gid": 65534}

    def with_home(s):
        s["process"]["env"] = ["PATH=/bin", "HOME=/srv"]

    assert run_sh(rt, "echo $HOME", as_root).check().stdout.strip() == "/root"
    assert run_sh(rt, "echo $HOME", as_nobody).check().stdout.strip() == "/"
    assert run_sh(rt, "echo $HOME", with_home).check().stdout.strip() == "/srv"


def test_cwd(rt):
    def conf(s):
        s["process"]["cwd"] = "/var"

    r = run_sh(rt, "pwd", conf).check()
    assert r.stdout == "/var\n"


def test_no_new_privileges_flag(rt):
    for flag, want in ((True, "1"), (False, "0")):

        def conf(s, flag=flag):
            s["process"]["noNewPrivileges"] = flag

        r = run_sh(rt, "grep ^NoNewPrivs /proc/self/status", conf).check()
        assert status_fields(r.stdout)["NoNewPrivs"] == want


def test_no_pivot(rt):
    b = rt.bundle(["sh", "-c", "echo $$; ls /bin/busybox"])
    r = rt("run", "--no-pivot", "--bundle", str(b.path), b.id).check()
    assert r.stdout.split() == ["1", "/bin/busybox"]


def test_preserve_fds(rt):
    b = rt.bundle(["sh", "-c", "echo via-fd3 >&3"])
    out = rt.workdir / "fd3.out"
    # The runtime must get the file as fd 3: open it in a shell wrapper.
    argv = [
        rt.binary,
        "--root",
        str(rt.root),
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        str(b.path),
        b.id,
    ]
    proc = subprocess.run(
        ["sh", "-c", 'exec "$@" 3>"$OUT"', "sh", *argv],
        check=False,
        env={**os.environ, "OUT": str(out)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "via-fd3\n"
