"""Digest strings: validation, splitting, hashing, short IDs."""

import hashlib

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image import digest as dg

H256 = hashlib.sha256(b"hello").hexdigest()
H512 = hashlib.sha512(b"hello").hexdigest()


def test_valid_sha256_and_sha512():
    assert dg.validate(f"sha256:{H256}") == f"sha256:{H256}"
    assert dg.validate(f"sha512:{H512}") == f"sha512:{H512}"
    assert dg.split(f"sha512:{H512}") == ("sha512", H512)


@pytest.mark.parametrize("bad, words", [
    ("", "format"),
    ("sha256", "format"),
    ("sha256:", "format"),
    (":" + H256, "format"),
    ("sha256:" + H256[:-1], "length"),
    ("sha256:" + H256 + "0", "length"),
    ("sha256:" + H256.upper(), "format"),
    ("sha256:" + "g" * 64, "format"),
    ("md5:" + "0" * 32, "unsupported"),
    ("sha384:" + "0" * 96, "unsupported"),
    ("SHA256:" + H256, "format"),
    ("sha512:" + H256, "length"),
])
def test_invalid(bad, words):
    with pytest.raises(InvalidArgument, match=words) as e:
        dg.validate(bad)
    assert "invalid digest" in str(e.value)
    assert not dg.is_valid(bad)


def test_field_is_named():
    with pytest.raises(InvalidArgument, match="invalid layer digest"):
        dg.validate("nope", "layer digest")


def test_non_string():
    with pytest.raises(InvalidArgument):
        dg.validate(None)  # type: ignore[arg-type]


def test_of_bytes_and_hasher():
    assert dg.of_bytes(b"hello") == f"sha256:{H256}"
    assert dg.of_bytes(b"hello", "sha512") == f"sha512:{H512}"
    h = dg.hasher("sha512")
    h.update(b"hel")
    h.update(b"lo")
    assert h.hexdigest() == H512
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm"):
        dg.hasher("md5")


def test_short_id():
    assert dg.short_id(f"sha256:{H256}") == H256[:12]
    assert dg.short_id(H256) == H256[:12]
    assert len(dg.short_id(f"sha256:{H256}")) == 12
