"""The main demo (for now): a busybox container through `dockyard-runtime`.

Builds an OCI bundle from Debian's busybox-static, then walks a container
through runc's lifecycle — create, state, start, exec, kill, delete — and
runs one in the foreground, printing what each step did. Later issues grow
this into the full counter-app demo.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from dockyard.devtools.busybox import make_bundle

RUNTIME = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def runtime(root: str, *args: str, check: bool = True, detached_stdio: str = "",
            quiet: bool = False) -> subprocess.CompletedProcess:
    """Run one command; `detached_stdio` is a file for a container's stdio (create keeps
    its stdio open in the container, so it must not be a pipe we wait on)."""
    cmd = [RUNTIME, "--root", root, *args]
    print("$ dockyard-runtime " + " ".join(args), flush=True)
    if detached_stdio:
        with open(detached_stdio, "a") as out:
            result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False,
                                    text=True)
    else:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.stdout and not quiet:
        print(result.stdout, end="" if result.stdout.endswith("\n") else "\n")
    if result.stderr:
        print(result.stderr, end="", file=sys.stderr)
    if check and result.returncode != 0:
        sys.exit(f"demo: step failed with exit status {result.returncode}")
    return result


def status(root: str, cid: str) -> str:
    state = json.loads(runtime(root, "state", cid, quiet=True).stdout)
    print(f"  -> status {state['status']}, pid {state['pid']}")
    return state["status"]


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("demo: run as root (make demo)")
    with tempfile.TemporaryDirectory(prefix="dockyard-demo-") as tmp:
        root = os.path.join(tmp, "state")
        bundle = os.path.join(tmp, "bundle")
        step("build an OCI bundle: busybox rootfs + config.json")
        make_bundle(bundle, ["sh", "-c", "echo started; sleep 1000"])
        print(f"bundle at {bundle}: {len(os.listdir(os.path.join(bundle, 'rootfs', 'bin')))} "
              "busybox applets")

        step("run a container in the foreground: who am I, what do I see?")
        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
        spec["process"]["args"] = ["sh", "-c", (
            "echo hostname=$(hostname) pid=$$ $(id); "
            "grep -E '^Cap(Eff|Bnd)' /proc/self/status; "
            "echo mounts: $(cut -d' ' -f2 /proc/mounts | sort -u | tr '\\n' ' '); "
            "echo root is read-only: $(touch /x 2>&1 | grep -c 'Read-only')")]
        fg = os.path.join(tmp, "fg")
        os.makedirs(fg)
        os.rename(os.path.join(bundle, "rootfs"), os.path.join(fg, "rootfs"))
        with open(os.path.join(fg, "config.json"), "w") as f:
            json.dump(spec, f)
        t0 = time.perf_counter()
        runtime(root, "run", "--bundle", fg, "demo-fg")
        print(f"(create + start + wait + delete took {1000 * (time.perf_counter() - t0):.0f} ms)")
        os.rename(os.path.join(fg, "rootfs"), os.path.join(bundle, "rootfs"))

        step("the lifecycle: create -> created, start -> running, kill -> stopped, delete")
        log = os.path.join(tmp, "container.log")
        runtime(root, "create", "--bundle", bundle, "demo", detached_stdio=log)
        status(root, "demo")
        runtime(root, "start", "demo")
        time.sleep(0.2)
        with open(log) as f:
            print("the container wrote:", f.read().strip())
        status(root, "demo")
        runtime(root, "exec", "demo", "ps")
        runtime(root, "list")
        runtime(root, "kill", "demo", "KILL")
        for _ in range(100):
            if status(root, "demo") == "stopped":
                break
            time.sleep(0.05)
        runtime(root, "delete", "demo")
        print("containers left:", runtime(root, "list", "-q").stdout.split() or "none")


if __name__ == "__main__":
    main()
