"""Health check configuration and state rules (engine/health.py), as docker has them."""

from __future__ import annotations

import pytest

from dockyard.engine import health as hm
from dockyard.errors import InvalidArgument

S = 1_000_000_000


def test_parse_defaults_and_kinds() -> None:
    cfg = hm.parse_config({"Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"]})
    assert cfg is not None
    assert cfg.argv == ["/bin/sh", "-c", "curl -f http://x/ || exit 1"]
    assert (cfg.interval, cfg.timeout, cfg.retries) == (30.0, 30.0, 3)
    assert (cfg.start_period, cfg.start_interval) == (0.0, 5.0)
    cmd = hm.parse_config({"Test": ["CMD", "true", "x"], "Interval": S // 5,
                           "Timeout": 2 * S, "Retries": 1, "StartPeriod": 3 * S,
                           "StartInterval": S})
    assert cmd is not None and cmd.argv == ["true", "x"]
    assert (cmd.interval, cmd.timeout, cmd.retries, cmd.start_period,
            cmd.start_interval) == (0.2, 2.0, 1, 3.0, 1.0)
    shell = hm.parse_config({"Test": ["CMD-SHELL", "true"]}, ["/bin/bash", "-ec"])
    assert shell is not None and shell.argv == ["/bin/bash", "-ec", "true"]
    extra = hm.parse_config({"Test": ["CMD-SHELL", "exit", "1"]})  # docker appends them
    assert extra is not None and extra.argv == ["/bin/sh", "-c", "exit", "1"]


@pytest.mark.parametrize("hc", [None, {}, {"Test": []}, {"Test": ["NONE"]},
                                {"Test": ["WHAT", "x"]}, {"Test": ["CMD"]}])
def test_parse_no_probe(hc) -> None:
    assert hm.parse_config(hc) is None


def test_check_config() -> None:
    hm.check_config(None)
    hm.check_config({"Test": ["CMD", "true"], "Interval": 1_000_000, "Retries": 0})
    with pytest.raises(InvalidArgument, match="Interval in Healthcheck cannot be less than 1ms"):
        hm.check_config({"Interval": 999})
    with pytest.raises(InvalidArgument, match="StartInterval in Healthcheck"):
        hm.check_config({"StartInterval": 5})
    with pytest.raises(InvalidArgument, match="Retries in Healthcheck cannot be negative"):
        hm.check_config({"Retries": -1})
    with pytest.raises(InvalidArgument):
        hm.check_config({"Test": "true"})


def test_merge_field_by_field() -> None:
    image = {"Test": ["CMD", "img"], "Interval": 5 * S, "Timeout": 2 * S, "Retries": 4}
    assert hm.merge_config(None, image) == image
    assert hm.merge_config(None, None) is None
    assert hm.merge_config({"Interval": S}, image) == {"Test": ["CMD", "img"], "Interval": S,
                                                       "Timeout": 2 * S, "Retries": 4}
    assert hm.merge_config({"Test": ["NONE"]}, image)["Test"] == ["NONE"]
    merged: dict = {"Healthcheck": {"Test": ["CMD", "user"]}}
    hm.apply_merge(merged, {"Healthcheck": {"Test": ["CMD", "user"]}}, {"Healthcheck": image})
    assert merged["Healthcheck"] == {"Test": ["CMD", "user"], "Interval": 5 * S,
                                     "Timeout": 2 * S, "Retries": 4}
    plain: dict = {}
    hm.apply_merge(plain, {}, {})
    assert "Healthcheck" not in plain


def _result(code: int) -> dict:
    return {"Start": "s", "End": "e", "ExitCode": code, "Output": ""}


def test_record_state_machine() -> None:
    h = hm.starting()
    h = hm.record(h, _result(1), retries=2, in_start_period=True)
    assert (h["Status"], h["FailingStreak"]) == ("starting", 0)  # not counted
    h = hm.record(h, _result(1), retries=2, in_start_period=False)
    assert (h["Status"], h["FailingStreak"]) == ("starting", 1)
    h = hm.record(h, _result(0), retries=2, in_start_period=False)
    assert (h["Status"], h["FailingStreak"]) == ("healthy", 0)
    h = hm.record(h, _result(1), retries=2, in_start_period=True)  # healthy: counts
    assert (h["Status"], h["FailingStreak"]) == ("healthy", 1)
    h = hm.record(h, _result(-1), retries=2, in_start_period=False)
    assert (h["Status"], h["FailingStreak"]) == ("unhealthy", 2)
    for _ in range(5):
        h = hm.record(h, _result(0), retries=2, in_start_period=False)
    assert len(h["Log"]) == hm.MAX_LOG and h["Status"] == "healthy"


def test_next_delay_and_output() -> None:
    cfg = hm.parse_config({"Test": ["CMD", "x"], "Interval": 10 * S, "StartPeriod": 60 * S,
                           "StartInterval": S})
    assert cfg is not None
    assert hm.next_delay(cfg, 5, "starting") == 1.0
    assert hm.next_delay(cfg, 5, "healthy") == 10.0
    assert hm.next_delay(cfg, 61, "starting") == 10.0
    assert hm.limit_output(b"ok\n") == "ok\n"
    long = hm.limit_output(b"x" * 5000)
    assert len(long) == hm.MAX_OUTPUT + 3 and long.endswith("...")


@pytest.mark.parametrize("ns,text", [(30 * S, "30s"), (S + S // 2, "1.5s"),
                                     (200_000_000, "200ms"), (90 * S, "1m30s"),
                                     (7200 * S, "2h0m0s"), (1500, "1.5µs")])
def test_go_duration(ns: int, text: str) -> None:
    assert hm.go_duration(ns) == text
