"""docker's reference matching and Go's JSON escaping, as `docker images` uses them."""

import pytest

from dockyard.cli.formatter import Template, human_size
from dockyard.image.listing import _path_match, reference_ok


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("busy*", "busybox", True),
    ("*", "a/b", False),          # Go's path.Match: * stops at '/'
    ("*/*", "a/b", True),
    ("b[a-z]x", "bcx", True),
    ("b[^a]x", "bax", False),
    ("a?c", "abc", True),
    ("a.c", "abc", False),        # no regex leaks through
    ("localhost:5000/x:*", "localhost:5000/x:1", True),
    ("[", "[", False),            # a bad pattern matches nothing
])
def test_path_match(pattern: str, name: str, matches: bool) -> None:
    assert _path_match(pattern, name) is matches


def test_reference_ok_tries_the_name_then_its_repository() -> None:
    assert reference_ok("busybox:1", ["busybox"])
    assert reference_ok("busybox:1", ["busybox:1"])
    assert not reference_ok("busybox:1", ["busybox:2"])
    assert reference_ok("localhost:5000/x@sha256:ab", ["localhost:5000/x"])
    assert not reference_ok("localhost:5000/x@sha256:ab", ["localhost:5000/x:1"])
    assert reference_ok("localhost:5000/x", ["localhost:5000/*"])


def test_json_is_escaped_like_go() -> None:
    out = Template("{{json .}}").render({"a": "<none>", "b": "x&y", "c": "é\u2028"})
    assert out == '{"a":"\\u003cnone\\u003e","b":"x\\u0026y","c":"é\\u2028"}'


def test_human_size_precision() -> None:
    assert human_size(1984230) == "1.98MB"
    assert human_size(1984230, 4) == "1.984MB"
