"""Compose `blkio_config`, `gpus`, reserved devices and secrets/configs -> the create
body (as docker compose v2 builds it); the engine's side: HostConfig.Blkio* -> the
OCI blockIO section, DeviceRequests refused as by a dockerd without GPU drivers, and
the cgroup writes of per-device weights (runc's rules, on fake cgroup trees)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.compose import convert
from dockyard.compose.errors import ComposeError
from dockyard.compose.loader import Options, load
from dockyard.engine import spec
from dockyard.linux.cgroups.v1 import CgroupV1
from dockyard.linux.cgroups.v2 import CgroupV2


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def _load(tmp_path: Path, text: str, environ: dict | None = None):
    (tmp_path / "compose.yaml").write_text(text)
    return load(Options(workdir=str(tmp_path), environ=environ or {}))


def _host(p, name: str) -> dict:
    return convert.create_body(p, name, p.services[name], 1)["HostConfig"]


def test_blkio_config(tmp_path: Path) -> None:
    p = _load(tmp_path, """
name: blk
services:
  a:
    image: x
    blkio_config:
      weight: 300
      weight_device: [{path: /dev/sda, weight: "400"}]
      device_read_bps: [{path: /dev/sda, rate: 12mb}]
      device_write_bps: [{path: /dev/sdb, rate: 1024k}]
      device_read_iops: [{path: /dev/sda, rate: 100}]
      device_write_iops: [{path: /dev/sda, rate: "30"}]
  b:
    image: x
""")
    h = _host(p, "a")
    assert h["BlkioWeight"] == 300
    assert h["BlkioWeightDevice"] == [{"Path": "/dev/sda", "Weight": 400}]
    assert h["BlkioDeviceReadBps"] == [{"Path": "/dev/sda", "Rate": 12 << 20}]
    assert h["BlkioDeviceWriteBps"] == [{"Path": "/dev/sdb", "Rate": 1 << 20}]
    assert h["BlkioDeviceReadIOps"] == [{"Path": "/dev/sda", "Rate": 100}]
    assert h["BlkioDeviceWriteIOps"] == [{"Path": "/dev/sda", "Rate": 30}]
    assert not any(k.startswith("Blkio") for k in _host(p, "b"))


def test_gpus_and_reserved_devices(tmp_path: Path) -> None:
    p = _load(tmp_path, """
name: gpu
services:
  all:
    image: x
    gpus: all
  listed:
    image: x
    gpus:
      - driver: nvidia
        count: 2
        capabilities: [compute]
        options: ["x=y"]
      - device_ids: ["0", "1"]
  reserved:
    image: x
    gpus: all
    deploy:
      resources:
        reservations:
          devices:
            - capabilities: [gpu, utility]
              driver: nvidia
              count: all
              options: {a: 1}
            - capabilities: [tpu]
              device_ids: [t0]
  plain:
    image: x
""")
    def req(driver="", count=-1, ids=None, caps=("gpu",), opts=None):
        return {"Driver": driver, "Count": count, "DeviceIDs": ids,
                "Capabilities": [list(caps)], "Options": opts}

    assert _host(p, "all")["DeviceRequests"] == [req()]
    assert _host(p, "listed")["DeviceRequests"] == [
        req("nvidia", 2, caps=("compute", "gpu"), opts={"x": "y"}),
        req(count=0, ids=["0", "1"])]
    # reservations first, then gpus (compose's order)
    assert _host(p, "reserved")["DeviceRequests"] == [
        req("nvidia", caps=("gpu", "utility"), opts={"a": "1"}),
        req(count=0, ids=["t0"], caps=("tpu",)), req()]
    assert "DeviceRequests" not in _host(p, "plain")


def test_bad_device_count() -> None:
    with pytest.raises(ComposeError, match="the only value allowed is 'all' or a number"):
        convert._device_request({"count": "lots"}, ["gpu"], "services.a.gpus")


def test_secrets_and_configs(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("from a file")
    p = _load(tmp_path, """
name: files
services:
  a:
    image: x
    secrets: [env, file, empty]
    configs: [inline, {source: env2, target: /etc/e, mode: 0400}]
secrets:
  env: {environment: TOKEN}
  file: {file: ./f.txt}
  empty: {environment: EMPTY}
configs:
  inline: {content: "hi"}
  env2: {environment: TOKEN}
""", environ={"TOKEN": "t", "EMPTY": ""})
    svc = p.services["a"]
    assert _host(p, "a")["Binds"] == [f"{tmp_path}/f.txt:/run/secrets/file:ro"]
    # an empty value is not copied at all, as docker compose does
    assert convert.injected_files(p, svc, "services.a") == [
        ("/run/secrets/env", b"t", 0o444), ("/inline", b"hi", 0o444), ("/etc/e", b"t", 0o400)]


@pytest.mark.parametrize("text, message", [
    ("secrets: [s]\nsecrets:\n  s: {external: true}\n", "unsupported external secret s"),
    ("configs: [c]\nconfigs:\n  c: {external: true, name: shared}\n",
     "unsupported external config shared"),
    ("secrets: [s]\nsecrets:\n  s: {file: ./x, driver: vault}\n",
     "Docker Compose does not support secrets.*.driver"),
    ("configs: [c]\nconfigs:\n  c: {file: ./x, template_driver: golang}\n",
     "Docker Compose does not support configs.*.template_driver"),
])
def test_refused_at_create(tmp_path: Path, text: str, message: str) -> None:
    p = _load(tmp_path, "name: r\nservices:\n  a:\n    image: x\n    " + text)
    with pytest.raises(ComposeError) as e:
        _host(p, "a")
    assert str(e.value) == message


@pytest.mark.parametrize("text, message", [
    ("secrets: [s]\nsecrets:\n  s: {environment: NOPE}\n",
     'environment variable "NOPE" required by secret "r_s" is not set'),
    ("read_only: true\n    configs: [c]\nconfigs:\n  c: {content: x, name: named}\n",
     ('cannot create config "named" in read-only service a: `file` is the sole supported '
      "option")),
])
def test_refused_when_copied_in(tmp_path: Path, text: str, message: str) -> None:
    p = _load(tmp_path, "name: r\nservices:\n  a:\n    image: x\n    " + text)
    with pytest.raises(ComposeError) as e:
        convert.injected_files(p, p.services["a"], "services.a")
    assert str(e.value) == message


# -- the engine ------------------------------------------------------------------------------

def test_block_io_spec() -> None:
    null = os.stat("/dev/null").st_rdev  # any file's st_rdev is taken, as dockerd does
    major, minor = os.major(null), os.minor(null)
    hc = {"BlkioWeight": 300, "BlkioWeightDevice": [{"Path": "/dev/null", "Weight": 400}],
          "BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1024}],
          "BlkioDeviceWriteIOps": [{"Path": "/dev/null", "Rate": 30}],
          "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": None}
    assert spec.resources(hc)["blockIO"] == {
        "weight": 300, "weightDevice": [{"major": major, "minor": minor, "weight": 400}],
        "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1024}],
        "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 30}]}
    missing = {"BlkioDeviceReadBps": [{"Path": "/dev/dyk-none", "Rate": 1}]}
    with pytest.raises(spec.StartError) as e:
        spec.resources(missing)
    assert str(e.value) == "stat /dev/dyk-none: no such file or directory"
    assert e.value.status == 500
    assert "blockIO" not in spec.resources(missing, block_devices=False)


@pytest.mark.parametrize("request_, message", [
    ({"Driver": "", "Count": -1, "Capabilities": [["gpu"]]},
     'could not select device driver "" with capabilities: [[gpu]]'),
    ({"Driver": "nvidia", "Capabilities": [["compute", "gpu"], ["tpu"]]},
     'could not select device driver "nvidia" with capabilities: [[compute gpu] [tpu]]'),
    ({"Driver": "cdi", "DeviceIDs": ["vendor.com/gpu=0"], "Capabilities": None},
     'could not select device driver "cdi" with capabilities: []'),
])
def test_device_requests_refused(request_: dict, message: str) -> None:
    spec.check_device_requests({})
    with pytest.raises(spec.StartError) as e:
        spec.check_device_requests({"DeviceRequests": [request_]})
    assert str(e.value) == message and e.value.status == 500


def test_per_device_weights_follow_runc(tmp_path: Path) -> None:
    wd = {"weightDevice": [{"major": 7, "minor": 0, "weight": 400}]}
    # v2 with BFQ taking per-device weights: written raw to io.bfq.weight
    (tmp_path / "io.bfq.weight").write_text("default 100\n")
    CgroupV2("/", root=str(tmp_path)).apply({"blockIO": wd})
    assert (tmp_path / "io.bfq.weight").read_text() == "7:0 400"
    # without BFQ (io.weight only): skipped, as runc skips them
    (tmp_path / "io.bfq.weight").unlink()
    (tmp_path / "io.weight").write_text("default 100\n")
    CgroupV2("/", root=str(tmp_path)).apply({"blockIO": wd})
    assert (tmp_path / "io.weight").read_text() == "default 100\n"
    # v1: CFQ's blkio.weight_device where it exists, else BFQ's
    v1 = tmp_path / "v1"
    v1.mkdir()
    for name in ("blkio.weight", "blkio.weight_device", "blkio.bfq.weight",
                 "blkio.bfq.weight_device"):
        (v1 / name).write_text("")
    CgroupV1("/", mounts={"blkio": (str(v1), "/")}).apply({"blockIO": {**wd, "weight": 300}})
    assert (v1 / "blkio.weight").read_text() == "300"
    assert (v1 / "blkio.weight_device").read_text() == "7:0 400"
    assert (v1 / "blkio.bfq.weight").read_text() == ""
