"""Validation of config.json: every error names its field."""

import json
import os

import pytest

from dockyard.errors import ConfigError
from dockyard.runtime import spec as specmod
from dockyard.runtime.defaults import default_spec


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def write(bundle, spec):
    (bundle / "config.json").write_text(json.dumps(spec))


def error_of(bundle, spec) -> ConfigError:
    write(bundle, spec)
    with pytest.raises(ConfigError) as info:
        specmod.load(str(bundle))
    return info.value


def test_default_spec_is_valid(bundle):
    write(bundle, default_spec())
    spec = specmod.load(str(bundle))
    assert specmod.rootfs_path(spec, str(bundle)) == os.path.join(str(bundle), "rootfs")


@pytest.mark.parametrize("mutate, field, words", [
    (lambda s: s["linux"]["namespaces"].append({"type": "foo"}), "linux.namespaces[5].type",
     "unknown namespace type"),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), "linux.namespaces[5].type",
     "listed twice"),
    (lambda s: s["mounts"].append({"destination": "/x", "type": "nosuchfs"}), "mounts[7].type",
     "unknown mount type"),
    (lambda s: s["mounts"].append({"destination": "rel", "type": "tmpfs"}),
     "mounts[7].destination", "absolute"),
    (lambda s: s["mounts"].append({"destination": "/x", "type": "bind"}), "mounts[7].source",
     "needs a source"),
    (lambda s: s["process"].update(args=[]), "process.args", "program"),
    (lambda s: s["process"].update(args="sh"), "process.args", "array"),
    (lambda s: s["process"].update(cwd="tmp"), "process.cwd", "absolute"),
    (lambda s: s["process"]["user"].update(uid="0"), "process.user.uid", "integer"),
    (lambda s: s["process"]["user"].update(uid=True), "process.user.uid", "integer"),
    (lambda s: s["process"].update(env=["NOEQUALS"]), "process.env[0]", "KEY=value"),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_FOO", "hard": 1, "soft": 1}),
     "process.rlimits[1].type", "unknown rlimit"),
    (lambda s: s["process"].update(oomScoreAdj=5000), "process.oomScoreAdj", "between"),
    (lambda s: s["root"].update(path="nope"), "root.path", "no such directory"),
    (lambda s: s.pop("ociVersion"), "ociVersion", "required"),
    (lambda s: s.update(hooks={"prestart": [{"path": "relative"}]}), "hooks.prestart[0].path",
     "absolute"),
    (lambda s: s["linux"].update(devices=[{"path": "/dev/x", "type": "q"}]),
     "linux.devices[0].type", "unknown device type"),
    (lambda s: s["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
     "linux.uidMappings", "user namespace"),
    (lambda s: s["linux"].update(rootfsPropagation="sideways"), "linux.rootfsPropagation",
     "unknown propagation"),
])
def test_invalid_config_names_the_field(bundle, mutate, field, words):
    spec = default_spec()
    mutate(spec)
    err = error_of(bundle, spec)
    assert err.field == field
    assert words in str(err)
    assert str(err).startswith(field)


def test_missing_and_broken_config(bundle):
    with pytest.raises(ConfigError, match="no config.json"):
        specmod.load(str(bundle))
    (bundle / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        specmod.load(str(bundle))
