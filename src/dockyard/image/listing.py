"""The rows of `docker images`: one per repository tag, docker's filters."""

import re
import time

from dockyard.errors import InvalidArgument
from dockyard.image import digest as dg
from dockyard.image.reference import parse
from dockyard.image.store import ImageRecord
from dockyard.units import human_size, since

FILTERS = ("dangling", "reference", "label", "before", "since")


def parse_filters(specs: list[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {spec}")
        if key not in FILTERS:
            raise InvalidArgument(f"Invalid filter '{key}'")  # docker's words
        filters.setdefault(key, []).append(value)
    return filters


def matches(image: ImageRecord, filters: dict[str, list[str]], svc) -> bool:
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"Invalid filter 'dangling=[{value}]'")
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


def _path_match(pattern: str, name: str) -> bool:
    """Go's path.Match, as docker's reference filter uses it: `*` and `?` stop at '/'."""
    regex, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            regex.append("[^/]*")
        elif c == "?":
            regex.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return False  # a bad pattern matches nothing
            body = pattern[i + 1:end]
            regex.append("[" + ("^" + re.escape(body[1:]) if body.startswith("^")
                                else re.escape(body)).replace("\\-", "-") + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            regex.append(re.escape(pattern[i]))
        else:
            regex.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(regex), name) is not None


def _repository(name: str) -> str:
    """`repo` of a familiar `repo:tag`, `repo@digest` or `repo`."""
    if "@" in name:
        return name.partition("@")[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def reference_ok(name: str, patterns: list[str]) -> bool:
    """docker's reference.FamiliarMatch: the whole name, else its repository alone."""
    repo = _repository(name)
    return any(_path_match(p, name) or _path_match(p, repo) for p in patterns)


def image_rows(svc, filter_specs: list[str], reference: str | None = None, *,
               show_all: bool = False, no_trunc: bool = False,
               show_digests: bool = False) -> list[dict]:
    """Rows as docker's CLI makes them: one per repository tag (one per tag and digest
    with `show_digests`), one per repository only a digest names, `<none>` when nothing
    names the image. Without `show_digests` a row's Digest is `<none>`, as in docker."""
    filters = parse_filters(filter_specs)
    patterns = filters.get("reference", [])
    if reference:
        patterns = patterns + [parse(reference, default_tag=False).familiar()]
    images = sorted(svc.list(), key=lambda i: i.created_unix, reverse=True)
    rows = []
    for image in images:
        if not matches(image, filters, svc):
            continue
        if not image.repo_tags and not show_all and svc.images.children(image.id):
            continue  # an intermediate image, shown with -a only
        image_id = image.id if no_trunc else dg.short_id(image.id)
        names = _names(image, patterns)
        if names is None:
            names = [("<none>", "<none>", ["<none>"])]
        for repo, tag, digests in names:
            for digest in (digests if show_digests and digests else ["<none>"]):
                rows.append(_row(image, image_id, repo, tag, digest))
    return rows


def _names(image: ImageRecord, patterns: list[str]) -> list[tuple[str, str, list[str]]] | None:
    """(repository, tag, digests) per tag, then (repository, "<none>", digests) for each
    repository only digests name; None when nothing names the image and no reference
    pattern is asked for. As in docker, a reference pattern filters digests too."""
    if not patterns and not image.repo_tags and not image.repo_digests:
        return None
    digests: dict[str, list[str]] = {}
    for ref in image.repo_digests:
        repo, _, digest = ref.partition("@")
        if not patterns or reference_ok(ref, patterns):
            digests.setdefault(repo, []).append(digest)
    out = []
    for tag in image.repo_tags:
        repo, _, name = tag.rpartition(":")
        if not patterns or reference_ok(tag, patterns):
            out.append((repo, name, digests.get(repo, [])))
    tagged = {repo for repo, _, _ in out}
    out += [(repo, "<none>", found) for repo, found in digests.items() if repo not in tagged]
    return out


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
        "VirtualSize": human_size(image.size, 4),  # units.HumanSize, as docker
    }
