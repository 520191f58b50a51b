"""The Debian mirror this machine's apt already uses, read from its sources.

Bootstrap never picks a network address of its own: debootstrap fetches from the
URI that /etc/apt/sources.list or /etc/apt/sources.list.d/*.list|*.sources name
for the suite (one-line and deb822 formats), and the images' own apt sources
point at the same URIs (the main archive and the security archive).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from dockyard.errors import DockyardError

APT_DIR = "/etc/apt"


@dataclass
class Source:
    uri: str
    suites: list[str]
    components: list[str]
    signed_by: str = ""
    options: dict[str, str] = field(default_factory=dict)


def _one_line(path: str) -> list[Source]:
    """`deb [opt=val ...] URI SUITE COMPONENT...` lines."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            rest = line[4:].strip()
            opts: dict[str, str] = {}
            if rest.startswith("["):
                inner, _, rest = rest[1:].partition("]")
                for tok in inner.split():
                    k, _, v = tok.partition("=")
                    opts[k] = v
            parts = rest.split()
            if len(parts) >= 2:
                out.append(Source(parts[0], [parts[1]], parts[2:], opts.get("signed-by", ""),
                                  opts))
    return out


def _deb822(path: str) -> list[Source]:
    out = []
    with open(path) as f:
        stanzas = f.read().split("\n\n")
    for stanza in stanzas:
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or \
                fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(Source(uri, fields.get("suites", "").split(),
                              fields.get("components", "").split(),
                              fields.get("signed-by", "")))
    return out


def apt_sources(apt_dir: str = APT_DIR) -> list[Source]:
    """Every enabled `deb` source of the machine's apt configuration, in apt's order."""
    sources: list[Source] = []
    main = os.path.join(apt_dir, "sources.list")
    if os.path.isfile(main):
        sources += _one_line(main)
    for path in sorted(glob.glob(os.path.join(apt_dir, "sources.list.d", "*"))):
        if path.endswith(".list"):
            sources += _one_line(path)
        elif path.endswith(".sources"):
            sources += _deb822(path)
    return sources


def debian_mirror(suite: str, apt_dir: str = APT_DIR) -> str:
    """The URI apt uses for `suite`'s main component (e.g. http://deb.debian.org/debian)."""
    for src in apt_sources(apt_dir):
        if suite in src.suites and (not src.components or "main" in src.components):
            return src.uri.rstrip("/")
    raise DockyardError(f"no apt source for debian {suite} (main) in {apt_dir}/sources.list"
                        f"(.d): bootstrap uses the mirror apt uses and knows no other")


def image_sources(suite: str, apt_dir: str = APT_DIR) -> str:
    """The deb822 sources file for the images (/etc/apt/sources.list.d/debian.sources),
    as the official images have it: suite, suite-updates and suite-security, at the
    URIs the machine's apt uses for them."""
    mirror = debian_mirror(suite, apt_dir)
    security = ""
    for src in apt_sources(apt_dir):
        if f"{suite}-security" in src.suites:
            security = src.uri.rstrip("/")
            break
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    text = (f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\n"
            f"Components: main\nSigned-By: {keyring}\n")
    if security:
        text += (f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\n"
                 f"Components: main\nSigned-By: {keyring}\n")
    return text
