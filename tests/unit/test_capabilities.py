"""Capability names, masks and CapPlan; the real-effect tests run in a forked child."""

from __future__ import annotations

import builtins
import json
import os
import traceback
from collections.abc import Callable

import pytest

from dockyard.errors import ConfigError
from dockyard.linux import capabilities as caps
from dockyard.linux.capabilities import CAPS, CapPlan

RUNC_DEFAULT = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
RUNC_MASK = (1 << 29) | (1 << 5) | (1 << 10)


def run_in_child(fn: Callable[[], object]) -> object:
    """Run `fn` in a forked child; return its JSON result or fail with its traceback."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.close(rfd)
            out = {"ok": fn()}
        except BaseException:  # noqa: BLE001 - the child must always report
            out = {"error": traceback.format_exc()}
            code = 1
        try:
            os.write(wfd, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    assert chunks, f"child died without a report (status {status})"
    out = json.loads(b"".join(chunks))
    assert "error" not in out, out["error"]
    return out["ok"]


def proc_status_caps() -> dict[str, int]:
    with open("/proc/self/status") as f:
        return {
            line.split(":")[0]: int(line.split()[1], 16) for line in f if line.startswith("Cap")
        }


def can_setpcap() -> bool:
    return bool(caps.capget()[0] >> CAPS["CAP_SETPCAP"] & 1)


def test_cap_table() -> None:
    assert len(CAPS) == 41
    assert CAPS["CAP_CHOWN"] == 0
    assert CAPS["CAP_SYS_ADMIN"] == 21
    assert CAPS["CAP_AUDIT_WRITE"] == 29
    assert CAPS["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(CAPS.values()) == list(range(41))


def test_last_cap_matches_proc() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert caps.last_cap() == int(f.read())


def test_to_mask_and_names_round_trip() -> None:
    assert caps.to_mask(RUNC_DEFAULT, "x") == RUNC_MASK
    assert caps.names(RUNC_MASK) == ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
    assert caps.to_mask([], "x") == 0
    assert caps.to_mask(None, "x") == 0
    assert caps.names(0) == []
    assert caps.names(1 << 45) == ["CAP_45"]


def test_to_mask_skips_unknown_names() -> None:
    skipped: list[str] = []
    mask = caps.to_mask(["CAP_KILL", "CAP_NOT_A_CAP", "kill"], "f", skipped)
    assert mask == 1 << 5
    assert skipped == ["CAP_NOT_A_CAP", "kill"]


def test_to_mask_rejects_non_strings() -> None:
    with pytest.raises(ConfigError) as info:
        caps.to_mask(["CAP_KILL", 5], "process.capabilities.bounding")
    assert info.value.field == "process.capabilities.bounding[1]"
    with pytest.raises(ConfigError) as info:
        caps.to_mask("CAP_KILL", "process.capabilities.effective")  # type: ignore[arg-type]
    assert info.value.field == "process.capabilities.effective"


def test_plan_from_spec() -> None:
    plan = CapPlan.from_spec(
        {
            "bounding": RUNC_DEFAULT + ["CAP_BOGUS"],
            "effective": ["CAP_KILL"],
            "permitted": RUNC_DEFAULT,
            "inheritable": [],
        }
    )
    assert plan.bounding == RUNC_MASK
    assert plan.effective == 1 << 5
    assert plan.permitted == RUNC_MASK
    assert plan.inheritable == 0
    assert plan.ambient == 0
    assert plan.skipped == ["CAP_BOGUS"]


def test_plan_none_means_no_capabilities() -> None:
    plan = CapPlan.from_spec(None)
    assert (plan.bounding, plan.effective, plan.permitted, plan.ambient) == (0, 0, 0, 0)


def test_plan_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        CapPlan.from_spec({"ambient": [None]})
    assert info.value.field == "process.capabilities.ambient[0]"
    with pytest.raises(ConfigError) as info:
        CapPlan.from_spec(["CAP_KILL"])  # type: ignore[arg-type]
    assert info.value.field == "process.capabilities"


def test_capget_matches_proc_status() -> None:
    effective, permitted, inheritable = caps.capget()
    status = proc_status_caps()
    assert (effective, permitted, inheritable) == (
        status["CapEff"],
        status["CapPrm"],
        status["CapInh"],
    )


def test_apply_lowers_caps_without_root_privileges() -> None:
    """capset to a subset of what we have needs no privilege at all."""

    def child() -> dict[str, int]:
        plan = CapPlan.from_spec({"effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]})
        before = proc_status_caps()
        if not before["CapPrm"] >> 5 & 1:
            return {"skip": 1}
        plan.apply()
        return proc_status_caps()

    status = run_in_child(child)
    if "skip" in status:
        pytest.skip("CAP_KILL not permitted here")
    assert status["CapEff"] == 1 << 5
    assert status["CapPrm"] == 1 << 5
    assert status["CapInh"] == 0
    assert status["CapAmb"] == 0


@pytest.mark.skipif(not can_setpcap(), reason="needs CAP_SETPCAP (root)")
def test_runtime_sequence_drops_caps_for_real() -> None:
    spec = {name: list(RUNC_DEFAULT) for name in ("bounding", "effective", "permitted")}
    spec["inheritable"] = list(RUNC_DEFAULT)
    spec["ambient"] = ["CAP_KILL"]

    def child() -> dict:
        plan = CapPlan.from_spec(spec)
        imported: list[str] = []
        real_import = builtins.__import__

        def spy(name: str, *args: object, **kwargs: object) -> object:
            imported.append(name)
            return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

        builtins.__import__ = spy
        try:
            plan.drop_bounding()
            caps.set_keepcaps(True)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            caps.set_keepcaps(False)
            plan.apply()
        finally:
            builtins.__import__ = real_import
        status = proc_status_caps()
        status["ambient_failed"] = plan.ambient_failed
        status["imports"] = imported  # type: ignore[assignment]
        status["uid"] = os.getuid()
        return status

    status = run_in_child(child)
    assert status["uid"] == 65534
    assert status["CapBnd"] == RUNC_MASK
    assert status["CapEff"] == RUNC_MASK
    assert status["CapPrm"] == RUNC_MASK
    assert status["CapInh"] == RUNC_MASK
    assert status["CapAmb"] == 1 << 5
    assert status["ambient_failed"] == 0
    assert status["imports"] == []


@pytest.mark.skipif(not can_setpcap(), reason="needs CAP_SETPCAP (root)")
def test_ambient_without_inheritable_is_recorded_not_raised() -> None:
    """runc's default spec asks for ambient caps it does not make inheritable: runc warns."""

    def child() -> dict:
        plan = CapPlan.from_spec(
            {name: list(RUNC_DEFAULT) for name in ("bounding", "effective", "permitted", "ambient")}
        )
        plan.drop_bounding()
        plan.apply()
        status = proc_status_caps()
        status["ambient_failed"] = plan.ambient_failed
        return status

    status = run_in_child(child)
    assert status["CapBnd"] == RUNC_MASK
    assert status["CapEff"] == RUNC_MASK
    assert status["CapAmb"] == 0
    assert status["ambient_failed"] == RUNC_MASK


@pytest.mark.skipif(not can_setpcap(), reason="needs CAP_SETPCAP (root)")
def test_keepcaps_off_loses_permitted_on_setuid() -> None:
    def child() -> dict:
        caps.set_keepcaps(False)
        os.setgid(65534)
        os.setuid(65534)
        return proc_status_caps()

    status = run_in_child(child)
    assert status["CapEff"] == 0
    assert status["CapPrm"] == 0


def test_caps_unknown_to_the_kernel_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "_last_cap", 39)  # as on a kernel before 5.9
    plan = CapPlan.from_spec({"bounding": ["CAP_KILL", "CAP_CHECKPOINT_RESTORE"]})
    assert plan.bounding == 1 << 5
    assert plan.skipped == ["CAP_CHECKPOINT_RESTORE"]
