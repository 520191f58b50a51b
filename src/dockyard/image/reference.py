"""Image references, parsed and normalised the way Docker does.

The grammar is distribution/reference's:

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component [ "/" path-component ]*
    domain     := host [ ":" port ]   (a DNS name or a bracketed IPv6 address)
    path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [\\w][\\w.-]{0,127}

Normalisation (ParseNormalizedNamed): a first component is a registry domain
only if it contains "." or ":" or is "localhost" (or has upper case);
otherwise the domain is docker.io, and a single-component docker.io path gets
"library/". index.docker.io becomes docker.io. The familiar form drops what
normalisation added (`docker.io/library/busybox` -> `busybox`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from dockyard.errors import InvalidArgument
from dockyard.image import digest as dg

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = f"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = f"(?:{_DOMAIN_COMPONENT}(?:\\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = f"{_HOST}(?::[0-9]+)?"
_REMOTE = f"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = f"(?:{_DOMAIN}/)?{_REMOTE}"
TAG_PATTERN = r"[\w][\w.-]{0,127}"
DIGEST_PATTERN = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

REFERENCE_RE = re.compile(f"({_NAME})(?::({TAG_PATTERN}))?(?:@({DIGEST_PATTERN}))?", re.ASCII)
NAME_RE = re.compile(f"(?:({_DOMAIN})/)?({_REMOTE})", re.ASCII)
TAG_RE = re.compile(TAG_PATTERN, re.ASCII)
DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_ID_RE = re.compile(r"[a-f0-9]{64}")
_ID_PREFIX_RE = re.compile(r"(?:sha256:)?[a-f0-9]{1,64}")

_INVALID = "invalid reference format"


@dataclass(frozen=True)
class Reference:
    """A normalised reference: domain and path always set, tag and digest optional."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The canonical repository name, `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short repository name docker shows, `busybox`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            rest = self.path[len(OFFICIAL_REPO_PREFIX):]
            if "/" not in rest:
                return rest
        return self.path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar(self) -> str:
        """`busybox:latest`, `busybox@sha256:...`, `localhost:5000/a/b:t`."""
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.name + self._suffix()

    @property
    def repository(self) -> Reference:
        """The same name without tag and digest."""
        return Reference(self.domain, self.path)

    def with_tag(self, tag: str) -> Reference:
        return dataclasses.replace(self, tag=validate_tag(tag))

    def with_digest(self, digest: str) -> Reference:
        try:
            dg.validate(digest)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid digest format: {digest}") from e
        return dataclasses.replace(self, digest=digest)


def validate_tag(tag: str) -> str:
    """Return `tag` if it is a valid tag, else InvalidArgument("invalid tag format")."""
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise InvalidArgument(f"invalid tag format: {tag!r}")
    return tag


def split_docker_domain(name: str) -> tuple[str, str]:
    """(domain, remainder) as docker splits a name before parsing it."""
    first, slash, rest = name.partition("/")
    if not slash or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _parse_full(text: str) -> Reference:
    """distribution's reference.Parse on an already-normalised string."""
    m = REFERENCE_RE.fullmatch(text)
    if m is None:
        if not text:
            raise InvalidArgument(f"{_INVALID}: repository name must have at least one component")
        if REFERENCE_RE.fullmatch(text.lower()):
            raise InvalidArgument(f"{_INVALID}: repository name must be lowercase")
        raise InvalidArgument(_INVALID)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"{_INVALID}: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    nm = NAME_RE.fullmatch(name)
    if nm is None or not nm.group(1):
        raise InvalidArgument(_INVALID)
    if digest is not None:
        try:
            dg.validate(digest)
        except InvalidArgument as e:
            reason = str(e).rsplit(": ", 1)[-1]  # go-digest's words: "invalid checksum ..."
            raise InvalidArgument(f"{_INVALID}: {reason}") from None
    return Reference(nm.group(1), nm.group(2), tag, digest)


def parse(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalise a reference as docker does (ParseNormalizedNamed).

    With `default_tag`, a reference with neither tag nor digest gets `latest`.
    """
    if not isinstance(text, str):
        raise InvalidArgument(_INVALID)
    if _ID_RE.fullmatch(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = split_docker_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidArgument(f"{_INVALID}: repository name ({remote}) must be lowercase")
    ref = _parse_full(f"{domain}/{remainder}")
    if default_tag and ref.tag is None and ref.digest is None:
        ref = dataclasses.replace(ref, tag=DEFAULT_TAG)
    return ref


def parse_repository(text: str) -> Reference:
    """A repository name alone (no tag, no digest), e.g. for `docker images NAME`."""
    ref = parse(text, default_tag=False)
    if ref.tag is not None or ref.digest is not None:
        raise InvalidArgument(f"invalid repository name: {text} (a tag or digest is not allowed)")
    return ref


def is_id_prefix(text: str) -> bool:
    """True when `text` could be a (possibly short, possibly `sha256:`-prefixed) image ID."""
    return isinstance(text, str) and _ID_PREFIX_RE.fullmatch(text) is not None
