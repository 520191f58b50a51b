"""Content digests: `<algorithm>:<hex>` strings as used by OCI and Docker.

Only the algorithms in ALGORITHMS are accepted; hex must be lower case and of
the algorithm's exact length (go-digest's rules).
"""

from __future__ import annotations

import hashlib
import re

from dockyard.errors import InvalidArgument

ALGORITHMS = {"sha256": 64, "sha512": 128}  # hex lengths

_HEX = re.compile(r"^[a-f0-9]+$")
_ALGO = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$")


def validate(digest: str, field: str = "digest") -> str:
    """Return `digest` if it is a well-formed, supported digest; else InvalidArgument."""
    if not isinstance(digest, str):
        raise InvalidArgument(f"invalid {field}: expected a string, got {type(digest).__name__}")
    algo, sep, hexpart = digest.partition(":")
    if not sep or not algo or not hexpart:
        raise InvalidArgument(f"invalid {field} {digest!r}: invalid checksum digest format")
    if algo not in ALGORITHMS:
        if not _ALGO.match(algo):
            raise InvalidArgument(f"invalid {field} {digest!r}: invalid checksum digest format")
        raise InvalidArgument(f"invalid {field} {digest!r}: unsupported digest algorithm")
    if len(hexpart) != ALGORITHMS[algo]:
        raise InvalidArgument(f"invalid {field} {digest!r}: invalid checksum digest length")
    if not _HEX.match(hexpart):
        raise InvalidArgument(f"invalid {field} {digest!r}: invalid checksum digest format")
    return digest


def is_valid(digest: str) -> bool:
    """True when `digest` passes validate()."""
    try:
        validate(digest)
    except InvalidArgument:
        return False
    return True


def split(digest: str) -> tuple[str, str]:
    """(algorithm, hex) of a valid digest."""
    validate(digest)
    algo, _, hexpart = digest.partition(":")
    return algo, hexpart


def hasher(algo: str = "sha256") -> hashlib._Hash:
    """A fresh hashlib object for a supported algorithm."""
    if algo not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm: {algo}")
    return hashlib.new(algo)


def of_bytes(data: bytes, algo: str = "sha256") -> str:
    """The digest of `data`."""
    h = hasher(algo)
    h.update(data)
    return f"{algo}:{h.hexdigest()}"


def short_id(digest_or_id: str) -> str:
    """The 12 hex characters docker shows for an ID (`sha256:` prefix dropped)."""
    _, sep, hexpart = digest_or_id.partition(":")
    if not sep:
        hexpart = digest_or_id
    return hexpart[:12]
