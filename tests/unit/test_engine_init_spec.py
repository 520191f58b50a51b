"""--init in the engine's OCI spec: docker's /sbin/docker-init bind mount and argv, the
daemon default for a null HostConfig.Init, and a clear error without the binary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.engine import spec as specmod
from dockyard.engine.model import Container
from dockyard.errors import SystemError_


def _container(tmp_path: Path, init: bool | None) -> Container:
    return Container(id="c" * 64, name="/x", image="sha256:" + "0" * 64, image_name="x",
                     config={"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["true"]},
                     host_config={"Init": init}, path=str(tmp_path))


def _fake_init(tmp_path: Path) -> str:
    path = tmp_path / "dockyard-init"
    path.write_bytes(b"\x7fELF")
    path.chmod(0o755)
    return str(path)


def test_init_wraps_the_command(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    init = _fake_init(tmp_path)
    spec = specmod.build(_container(tmp_path, True), str(tmp_path / "rootfs"),
                         init_path=init)
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "/bin/sh", "-c", "true"]
    assert {"destination": "/sbin/docker-init", "type": "bind", "source": init,
            "options": ["bind", "ro"]} in spec["mounts"]


@pytest.mark.parametrize("init, default, wrapped", [
    (None, True, True), (None, False, False), (False, True, False), (True, False, True)])
def test_daemon_default_applies_to_null_only(tmp_path: Path, init, default, wrapped) -> None:
    (tmp_path / "rootfs").mkdir()
    spec = specmod.build(_container(tmp_path, init), str(tmp_path / "rootfs"),
                         init_default=default, init_path=_fake_init(tmp_path))
    assert (spec["process"]["args"][0] == "/sbin/docker-init") is wrapped


def test_missing_init_binary_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    missing = str(tmp_path / "nope")
    with pytest.raises(SystemError_, match="docker-init binary not found: " + missing):
        specmod.build(_container(tmp_path, True), str(tmp_path / "rootfs"),
                      init_path=missing)


def test_setup_builds_the_init_in_the_venv() -> None:
    assert os.path.basename(specmod.DEFAULT_INIT) == "dockyard-init"
    assert os.path.dirname(specmod.DEFAULT_INIT).endswith("libexec")
