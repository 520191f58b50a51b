"""The rows of `docker images`: one per repository tag, docker's filters."""

import fnmatch
import time

from dockyard.cli.formatter import human_size, since
from dockyard.errors import InvalidArgument
from dockyard.image import digest as dg
from dockyard.image.reference import parse
from dockyard.image.store import ImageRecord

FILTERS = ("dangling", "reference", "label", "before", "since")


def parse_filters(specs: list[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {spec}")
        if key not in FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        filters.setdefault(key, []).append(value)
    return filters


def _matches(image: ImageRecord, filters: dict[str, list[str]], svc) -> bool:
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
        if (value.lower() in ("true", "1")) != (not image.repo_tags):
            return False
    for value in filters.get("label", []):
        key, eq, want = value.partition("=")
        labels = image.labels
        if key not in labels or (eq and labels[key] != want):
            return False
    for value in filters.get("before", []):
        if image.created_unix >= svc.get(value).created_unix:
            return False
    for value in filters.get("since", []):
        if image.created_unix <= svc.get(value).created_unix:
            return False
    return True


def _reference_ok(tag: str, patterns: list[str]) -> bool:
    repo = tag.rsplit(":", 1)[0]
    return any(fnmatch.fnmatchcase(tag, p) or fnmatch.fnmatchcase(repo, p) for p in patterns)


def image_rows(svc, filter_specs: list[str], reference: str | None = None, *,
               show_all: bool = False, no_trunc: bool = False) -> list[dict]:
    filters = parse_filters(filter_specs)
    patterns = filters.get("reference", [])
    if reference:
        patterns = patterns + [parse(reference, default_tag=False).familiar()]
    images = sorted(svc.list(), key=lambda i: i.created_unix, reverse=True)
    rows = []
    for image in images:
        if not _matches(image, filters, svc):
            continue
        if not image.repo_tags and not show_all and svc.images.children(image.id):
            continue  # an intermediate image, shown with -a only
        image_id = image.id if no_trunc else dg.short_id(image.id)
        digests = {d.split("@", 1)[0]: d.split("@", 1)[1] for d in image.repo_digests}
        tags = image.repo_tags or ([] if patterns else ["<none>:<none>"])
        for tag in tags:
            if patterns and not _reference_ok(tag, patterns):
                continue
            repo, _, name = tag.rpartition(":")
            rows.append(_row(image, image_id, repo, name, digests.get(repo, "<none>")))
        if not image.repo_tags and not patterns and image.repo_digests and not tags:
            pass
    return rows


def _row(image: ImageRecord, image_id: str, repo: str, tag: str, digest: str) -> dict:
    created = image.created_unix
    return {
        "Containers": "N/A",
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
        "CreatedSince": since(created),
        "Digest": digest,
        "ID": image_id,
        "Repository": repo,
        "SharedSize": "N/A",
        "Size": human_size(image.size),
        "Tag": tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(image.size),
    }
