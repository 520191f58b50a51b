"""`spec` and `features` output, checked against runc and the OCI schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.runtime.defaults import default_spec, features

SCHEMA_DIR = Path(__file__).resolve().parents[2].parent / "shared/specs/oci-runtime"
RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def cgroup2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def runc_spec(tmp_path: Path, *args: str) -> dict:
    assert RUNC
    subprocess.run([RUNC, "spec", *args], cwd=tmp_path, check=True, capture_output=True)
    return json.loads((tmp_path / "config.json").read_text())


def test_default_spec_shape() -> None:
    spec = default_spec()
    assert spec["ociVersion"] == "1.0.2-dev"
    assert spec["hostname"] == "dockyard"
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    process = spec["process"]
    assert process["terminal"] is True
    assert process["args"] == ["sh"]
    assert process["noNewPrivileges"] is True
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    for name in ("bounding", "effective", "permitted", "ambient"):
        assert process["capabilities"][name] == DEFAULT_CAPS
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
    ]  # fmt: skip
    types = [ns["type"] for ns in spec["linux"]["namespaces"]]
    assert types[:5] == ["pid", "network", "ipc", "uts", "mount"]
    assert ("cgroup" in types) == cgroup2()
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert spec["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}


def test_rootless_spec() -> None:
    spec = default_spec(rootless=True)
    linux = spec["linux"]
    types = [ns["type"] for ns in linux["namespaces"]]
    assert "network" not in types and types[-1] == "user"
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    sys_mount = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert sys_mount == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }
    for mount in spec["mounts"]:
        assert not any(o.startswith(("uid=", "gid=")) for o in mount.get("options", []))


def test_spec_is_fresh_each_call() -> None:
    a = default_spec()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"][1]["options"].clear()
    assert default_spec() == default_spec()
    assert "CAP_SYS_ADMIN" not in default_spec()["process"]["capabilities"]["bounding"]


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
@pytest.mark.parametrize("rootless", [False, True])
def test_same_as_runc_spec(tmp_path: Path, rootless: bool) -> None:
    theirs = runc_spec(tmp_path, *(["--rootless"] if rootless else []))
    theirs["hostname"] = "dockyard"
    ours = default_spec(rootless=rootless)
    # newer runc dropped ambient capabilities and masks a few more paths
    if "ambient" not in theirs["process"]["capabilities"]:
        del ours["process"]["capabilities"]["ambient"]
    theirs["linux"]["maskedPaths"] = ours["linux"]["maskedPaths"]
    theirs["ociVersion"] = ours["ociVersion"]
    assert ours == theirs


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_validates_against_oci_schema(rootless: bool) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    from referencing.jsonschema import DRAFT4

    if not (SCHEMA_DIR / "config-schema.json").exists():
        pytest.skip(f"no OCI schema in {SCHEMA_DIR}")
    resources = []
    for path in SCHEMA_DIR.glob("*.json"):
        contents = json.loads(path.read_text())
        resources.append((path.name, DRAFT4.create_resource(contents)))
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((SCHEMA_DIR / "config-schema.json").read_text())
    validator = jsonschema.Draft4Validator(schema, registry=registry)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(
        default_spec(rootless=rootless)
    )]  # fmt: skip
    assert errors == []
    # and the schema does catch a broken spec
    bad = default_spec()
    bad["process"]["rlimits"][0]["hard"] = "lots"
    assert list(validator.iter_errors(bad))


def test_features_shape() -> None:
    feats = features()
    json.dumps(feats)  # serialisable
    assert feats["ociVersionMin"] == "1.0.0"
    assert feats["ociVersionMax"] == "1.0.2-dev"
    assert feats["hooks"] == [
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
    ]  # fmt: skip
    assert {"bind", "rbind", "ro", "nosuid", "rprivate", "defaults"} <= set(feats["mountOptions"])
    linux = feats["linux"]
    assert {"cgroup", "ipc", "mount", "network", "pid", "user", "uts"} <= set(linux["namespaces"])
    assert linux["capabilities"][0] == "CAP_CHOWN"
    assert linux["capabilities"][-1] == "CAP_CHECKPOINT_RESTORE"
    assert linux["apparmor"] == {"enabled": False}
    assert linux["selinux"] == {"enabled": False}
    assert set(linux["cgroup"]) == {"v1", "v2", "systemd", "systemdUser"}
    sc = linux["seccomp"]
    if sc["enabled"]:
        assert "SCMP_ACT_NOTIFY" not in sc["actions"]
        assert "SCMP_ACT_ERRNO" in sc["actions"]
        assert len(sc["operators"]) == 7
        assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"} <= set(sc["archs"])
        assert "io.github.seccomp.libseccomp.version" in feats["annotations"]


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_features_keys_like_runc() -> None:
    out = subprocess.run([RUNC, "features"], check=True, capture_output=True, text=True)
    theirs = json.loads(out.stdout)
    ours = features()
    assert set(ours) <= set(theirs)
    assert set(ours["linux"]) <= set(theirs["linux"])
    assert set(ours["linux"]["seccomp"]) == set(theirs["linux"]["seccomp"])
    assert set(ours["linux"]["seccomp"]["operators"]) == set(
        theirs["linux"]["seccomp"]["operators"]
    )
    assert set(ours["linux"]["capabilities"]) == set(theirs["linux"]["capabilities"])
