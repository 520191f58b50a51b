"""Image names on the client side: split them and spell them out like the docker CLI.

Only what a client needs to build requests and print docker's lines; the
daemon validates names (dockyard.image.reference is engine-side code).
"""

from __future__ import annotations

from dockyard.client.auth import DOCKER_HUB, registry_of


def split(name: str) -> tuple[str, str, str]:
    """`repo[:tag][@digest]` -> (repo, tag, digest); "" for the parts not given."""
    name, _, digest = name.partition("@")
    head, sep, tail = name.rpartition(":")
    if sep and "/" not in tail:
        return head, tail, digest
    return name, "", digest


def normalized(name: str, default_tag: bool = True) -> str:
    """The full name docker prints after a pull: `docker.io/library/busybox:latest`
    (without a tag for `pull --all-tags`: `default_tag` False)."""
    repo, tag, digest = split(name)
    registry = registry_of(repo)
    if registry == DOCKER_HUB:
        path = repo.split("/", 1)[1] if repo.startswith(("docker.io/", "index.docker.io/")) \
            else repo
        repo = f"{DOCKER_HUB}/{path if '/' in path else 'library/' + path}"
    if digest:
        return f"{repo}:{tag}@{digest}" if tag else f"{repo}@{digest}"
    if not tag and not default_tag:
        return repo
    return f"{repo}:{tag or 'latest'}"
