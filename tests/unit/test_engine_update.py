"""`docker update`'s HostConfig merge (dockyard.engine.update): which fields change,
dockerd's refusals, and the cgroup resources handed to the runtime."""

from __future__ import annotations

import pytest

from dockyard.engine import config as cfgmod
from dockyard.engine.update import merge
from dockyard.errors import InvalidArgument

MB = 1 << 20


def _hc(**kw) -> dict:
    return cfgmod.check_host_config(kw)


def test_only_set_fields_change() -> None:
    hc, res = merge(_hc(Memory=64 * MB, CpuShares=512), {"Memory": 100 * MB, "CpuShares": 0})
    assert hc["Memory"] == 100 * MB and hc["CpuShares"] == 512
    assert res == {"memory": {"limit": 100 * MB, "swap": 128 * MB}}


def test_pids_limit_zero_and_minus_one_mean_unlimited() -> None:
    for value in (0, -1):
        hc, res = merge(_hc(PidsLimit=10), {"PidsLimit": value})
        assert hc["PidsLimit"] == value and res == {"pids": {"limit": -1}}


def test_restart_policy_only_has_no_resources() -> None:
    hc, res = merge(_hc(), {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert res == {}


@pytest.mark.parametrize(("before", "body", "message"), [
    ({}, {"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 * MB}, {"Memory": 200 * MB}, "update the memoryswap at the same time"),
    ({"Memory": 64 * MB}, {"MemorySwap": 32 * MB}, "Minimum memoryswap limit should be larger"),
    ({"AutoRemove": True}, {"RestartPolicy": {"Name": "always"}}, "AutoRemove is enabled"),
    ({}, {"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy"),
    ({"NanoCpus": 10**9}, {"CpuQuota": 50000}, "CPU Quota cannot be updated as NanoCPUs"),
    ({}, {"Memory": "64m"}, "Memory must be an integer"),
    ({}, {"CpusetCpus": 1}, "CpusetCpus must be a string"),
])
def test_refusals(before: dict, body: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        merge(_hc(**before), body)


def test_input_is_not_modified() -> None:
    before = _hc(Memory=64 * MB)
    snapshot = repr(before)
    merge(before, {"Memory": 100 * MB, "RestartPolicy": {"Name": "always"}})
    assert repr(before) == snapshot
