"""User namespaces, joining namespaces by path, sysctls and hooks, from inside containers."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from dockyard.devtools.busybox import make_bundle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
RUNTIME = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    bundle = tmp_path_factory.mktemp("base")
    make_bundle(str(bundle), ["true"])
    return str(bundle / "rootfs")


@pytest.fixture
def container(tmp_path, rootfs):
    root = str(tmp_path / "state")
    # bundles where a container's mapped root (an unprivileged host uid) can reach them
    shared = tempfile.mkdtemp(prefix="dockyard-test-")
    os.chmod(shared, 0o755)

    def run(args, mutate=None, command="run"):
        bundle = os.path.join(shared, f"b-{uuid.uuid4().hex[:6]}")
        make_bundle(bundle, args, rootfs_src=rootfs)
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["linux"]["cgroupsPath"] = f"/dockyard-test/{uuid.uuid4().hex[:12]}"
        if mutate:
            mutate(spec)
        with open(path, "w") as f:
            json.dump(spec, f)
        cid = f"ns-{uuid.uuid4().hex[:8]}"
        result = subprocess.run([RUNTIME, "--root", root, command, "--bundle", bundle, cid],
                                capture_output=True, text=True, timeout=60, check=False)
        return cid, result

    run.root = root
    yield run
    if os.path.isdir(root):
        for cid in os.listdir(root):
            subprocess.run([RUNTIME, "--root", root, "delete", "--force", cid],
                           capture_output=True, check=False)
    shutil.rmtree(shared)


def test_user_namespace_with_mappings(container):
    def mutate(spec):
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    _, result = container(["sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %u /bin"],
                          mutate)
    assert result.returncode == 0, result.stderr
    uid, mapping, owner = result.stdout.strip().split("\n")
    assert uid == "0"
    assert mapping.split() == ["0", "100000", "65536"]
    assert owner == "65534"  # host root's files are unmapped inside: nobody


def test_join_network_namespace_by_path(container):
    name = f"dyk-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "dyk0", "type", "veth", "peer", "name",
                        "dyk1"], check=True)

        def mutate(spec):
            spec["linux"]["namespaces"] = [
                ns if ns["type"] != "network" else {"type": "network",
                                                    "path": f"/var/run/netns/{name}"}
                for ns in spec["linux"]["namespaces"]]
        _, result = container(["ls", "/sys/class/net"], mutate)
        assert result.returncode == 0, result.stderr
        assert "dyk0" in result.stdout.split()
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_sysctl_in_new_network_namespace(container):
    def mutate(spec):
        spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    _, result = container(["cat", "/proc/sys/net/ipv4/ip_forward"], mutate)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_value = f.read().strip()
    assert host_value in ("0", "1")  # untouched: the write went to the container's netns


def test_hooks_get_the_state_on_stdin(container, tmp_path):
    out = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$1 $(cat)\" >> {out}\n")
    hook.chmod(0o755)

    def mutate(spec):
        spec["hooks"] = {kind: [{"path": str(hook), "args": ["hook.sh", kind]}]
                         for kind in ("prestart", "createRuntime", "createContainer",
                                      "poststart", "poststop")}
    cid, result = container(["true"], mutate)
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    kinds = [line.split(" ", 1)[0] for line in lines]
    assert kinds == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    states = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert states[0]["id"] == cid and states[0]["status"] == "creating"
    assert states[0]["pid"] > 1  # the host's view of the init
    assert states[2]["pid"] == states[0]["pid"]  # createContainer runs inside, same state
    assert states[4]["status"] == "stopped"


def test_failing_prestart_hook_aborts_create_and_cleans_up(container, tmp_path):
    def mutate(spec):
        spec["hooks"] = {"prestart": [{"path": "/bin/false"}]}
        spec["linux"]["cgroupsPath"] = "/dockyard-test/failing-hook"
    cid, result = container(["true"], mutate, command="create")
    assert result.returncode == 1
    assert "prestart hook /bin/false failed" in result.stderr
    assert not os.path.exists(os.path.join(container.root, cid))
    assert not os.path.exists("/sys/fs/cgroup/memory/dockyard-test/failing-hook")
