"""The events filters of `docker events` (engine/events.py): docker's matching rules."""

from __future__ import annotations

import pytest

from dockyard.engine import events as ev
from dockyard.engine.events import EventBus, check_filters, matches, parse_timestamp
from dockyard.errors import InvalidArgument

CID = "ab" * 32


def _container(action: str, name: str = "web", image: str = "busybox:latest",
               **labels: str) -> dict:
    return ev.message("container", action, CID,
                      ev.container_attributes("/" + name, image, labels))


def test_message_shape() -> None:
    m = _container("die", team="a")
    assert m["Type"] == "container" and m["Action"] == "die" and m["scope"] == "local"
    assert m["Actor"] == {"ID": CID, "Attributes": {"image": "busybox:latest",
                                                    "name": "web", "team": "a"}}
    assert m["status"] == "die" and m["id"] == CID and m["from"] == "busybox:latest"
    assert m["time"] == m["timeNano"] // 10**9


def test_no_filters_match_everything() -> None:
    assert matches(_container("start"), {})


def test_container_by_id_prefix_or_name() -> None:
    m = _container("start")
    assert matches(m, {"container": [CID]})
    assert matches(m, {"container": ["abab"]})
    assert matches(m, {"container": ["web"]})
    assert matches(m, {"container": ["other", "web"]})  # any value of a key
    assert not matches(m, {"container": ["other"]})
    image_event = ev.message("image", "tag", "sha256:" + "1" * 64, {"name": "x:1"})
    assert not matches(image_event, {"container": ["web"]})


def test_event_exact_and_docker_prefix_actions() -> None:
    assert matches(_container("start"), {"event": ["start", "stop"]})
    assert not matches(_container("start"), {"event": ["stop"]})
    assert not matches(_container("restart"), {"event": ["start"]})
    health = _container("health_status: healthy")
    assert matches(health, {"event": ["health_status"]})
    assert matches(health, {"event": ["health_status: healthy"]})
    assert not matches(health, {"event": ["health_status: unhealthy"]})
    assert matches(_container("exec_create: sh -c true"), {"event": ["exec_create"]})
    assert matches(_container("exec_start: true"), {"event": ["exec_start", "die"]})


def test_type_scope_and_all_keys_together() -> None:
    m = _container("die", team="a")
    assert matches(m, {"type": ["container"], "scope": ["local"], "event": ["die"],
                       "label": ["team"]})
    assert not matches(m, {"type": ["image"]})
    assert not matches(m, {"scope": ["swarm"]})
    assert not matches(m, {"event": ["die"], "label": ["team=b"]})


def test_labels_key_or_key_value_all_required() -> None:
    m = _container("start", team="a", tier="web")
    assert matches(m, {"label": ["team"]})
    assert matches(m, {"label": ["team=a", "tier=web"]})
    assert not matches(m, {"label": ["team=a", "tier=db"]})
    assert not matches(m, {"label": ["missing"]})


def test_image_matches_image_and_container_events() -> None:
    m = _container("start", image="busybox:latest")
    assert matches(m, {"image": ["busybox:latest"]})
    assert matches(m, {"image": ["busybox"]})  # the tag stripped
    assert not matches(m, {"image": ["alpine"]})
    img = ev.message("image", "pull", "busybox:latest", {"name": "busybox"})
    assert matches(img, {"image": ["busybox"]}) and matches(img, {"image": ["busybox:latest"]})
    registry = ev.message("image", "push", "localhost:5000/a/b:1", {"name": "localhost:5000/a/b"})
    assert matches(registry, {"image": ["localhost:5000/a/b"]})


def test_network_volume_daemon_by_name_or_id() -> None:
    net = ev.message("network", "create", "n" * 64, {"name": "front", "type": "bridge"})
    assert matches(net, {"network": ["front"]}) and matches(net, {"network": ["nnn"]})
    assert not matches(net, {"network": ["back"]})
    vol = ev.message("volume", "create", "data", {"driver": "local"})
    assert matches(vol, {"volume": ["data"]}) and not matches(vol, {"volume": ["other"]})
    assert not matches(vol, {"daemon": ["x"]})


def test_check_filters() -> None:
    check_filters({"container": ["x"], "event": ["start"], "type": ["container"],
                   "scope": ["local"], "label": ["a=b"], "image": ["i"]})
    with pytest.raises(InvalidArgument, match="invalid filter 'nope'"):
        check_filters({"nope": ["x"]})
    with pytest.raises(InvalidArgument, match="type=box"):
        check_filters({"type": ["box"]})
    with pytest.raises(InvalidArgument):
        check_filters({"scope": ["planet"]})


def test_parse_timestamp() -> None:
    assert parse_timestamp("") is None and parse_timestamp("0") is None
    assert parse_timestamp("1700000000") == 1700000000 * 10**9
    assert parse_timestamp("1700000000.5") == 1700000000 * 10**9 + 500_000_000
    assert parse_timestamp("1700000000.000000001") == 1700000000 * 10**9 + 1
    for bad in ("abc", "1.x", "2024-01-01T00:00:00Z"):
        with pytest.raises(InvalidArgument):
            parse_timestamp(bad)


def test_bus_ring_and_subscribers() -> None:
    bus = EventBus()
    first = bus.emit("container", "create", CID, {"name": "a"})
    got: list[dict] = []
    past = bus.subscribe(got.append)
    assert past == [first]
    second = bus.emit("container", "start", CID, {"name": "a"})
    assert got == [second]
    bus.unsubscribe(got.append)
    bus.emit("container", "die", CID, {"name": "a"})
    assert got == [second]
    assert ev.in_window(second, first["timeNano"], None)
    assert not ev.in_window(first, second["timeNano"] + 1, None)
    assert not ev.in_window(second, None, first["timeNano"] - 1)


def test_exec_action_like_docker() -> None:
    assert ev.exec_action("exec_create", ["true"]) == "exec_create: true "
    assert ev.exec_action("exec_start", ["sh", "-c", "echo hi"]) == "exec_start: sh -c echo hi"
