"""The runtime's re-free JSON gives exactly what json gives."""

import json

import pytest

from dockyard.runtime import jsonio
from dockyard.runtime.defaults import default_spec

DOCS = [
    default_spec(),
    {"a": [1, 2.5, -3e2, True, False, None, "é\u00e9\n\"q\"", {}], "": []},
    [],
    "text",
    12,
]


@pytest.mark.parametrize("doc", DOCS)
def test_round_trip_matches_json(doc):
    assert jsonio.dumps(doc) == json.dumps(doc)
    assert jsonio.loads(json.dumps(doc, indent=2)) == doc
    assert jsonio.loads(("\n  " + json.dumps(doc) + " \n").encode()) == doc


@pytest.mark.parametrize("bad", ['{"a": 1} x', "{", "", "nul", '{"a": 01}', "[1,]"])
def test_invalid_json_raises_like_json(bad):
    with pytest.raises(ValueError) as ours:
        jsonio.loads(bad)
    with pytest.raises(ValueError) as theirs:
        json.loads(bad)
    assert str(ours.value) == str(theirs.value)


def test_unserializable_is_a_type_error():
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        jsonio.dumps({"x": {1, 2}})
