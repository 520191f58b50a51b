"""The build cache: content-addressed step keys -> the image each step made.

A key is the sha256 of a canonical JSON document: the parent (image id, or
"scratch" with the stage's config), the whole instruction after substitution
with its flags, the build args in effect, the platform, and for COPY/ADD the
checksums of the sources' contents and metadata (never their mtimes). Every
instruction, including those that only change the config (FROM scratch,
HEALTHCHECK, ONBUILD, ...), goes through a key, so a cached image can never stand
for a different config (the CVE-2024-24557 class).

COPY/ADD --link (link_key): the key leaves out the parent and the config; it is
the sources and the instruction plus the questions the copy asked of the image
below (RecordingView: resolutions, directory checks and lstat metadata of the
destination's directories) with their answers; the questions are kept per base
key (link_probes) and replayed against a new parent. RUN --mount=type=secret:
only the secret's id, target and options are in the key, never its content.

Stored in SQLite at <data-root>/builder/cache.db (WAL), so it survives daemon
restarts. A record whose image was removed is a miss (and is dropped).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable

KEY_VERSION = "dockyard-build-cache-v1"


def canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def step_key(parent: str, instruction: dict, build_args: dict[str, str],
             sources: list[str] | None = None, platform: str = "") -> str:
    """The cache key of one step (a sha256 digest)."""
    doc = {"v": KEY_VERSION, "parent": parent, "instruction": instruction,
           "args": sorted(build_args.items()), "sources": sources or [],
           "platform": platform}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def link_key(base: str, asked: list, answers: list) -> str:
    """COPY --link: the key of its layer given what it asked of the image below."""
    data = canonical({"v": KEY_VERSION, "link": base, "asked": asked, "answers": answers})
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BuildCache:
    def __init__(self, data_root: str):
        self.root = os.path.join(data_root, "builder")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(os.path.join(self.root, "cache.db"), isolation_level=None,
                                   check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS steps (key TEXT PRIMARY KEY, "
                         "image_id TEXT NOT NULL, created REAL NOT NULL, "
                         "last_used REAL NOT NULL, size INTEGER NOT NULL DEFAULT 0, "
                         "description TEXT NOT NULL DEFAULT '')")
        # COPY --link: what a copy asked of the image below (its key covers the answers)
        self._db.execute("CREATE TABLE IF NOT EXISTS link_probes (key TEXT PRIMARY KEY, "
                         "asked TEXT NOT NULL)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, key: str, exists: Callable[[str], bool]) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT image_id FROM steps WHERE key = ?",
                                   (key,)).fetchone()
            if row is None:
                return None
            if not exists(row[0]):
                self._db.execute("DELETE FROM steps WHERE key = ?", (key,))
                return None
            self._db.execute("UPDATE steps SET last_used = ? WHERE key = ?", (time.time(), key))
            return row[0]

    def put(self, key: str, image_id: str, size: int = 0, description: str = "") -> None:
        now = time.time()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?)",
                             (key, image_id, now, now, size, description[:200]))

    def get_probes(self, key: str) -> list | None:
        with self._lock:
            row = self._db.execute("SELECT asked FROM link_probes WHERE key = ?",
                                   (key,)).fetchone()
        return [tuple(x) for x in json.loads(row[0])] if row else None

    def put_probes(self, key: str, asked: list) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO link_probes VALUES (?, ?)",
                             (key, json.dumps(asked)))

    def entries(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT key, image_id, created, last_used, size, "
                                    "description FROM steps").fetchall()
        return [{"key": k, "image_id": i, "created": c, "last_used": u, "size": s,
                 "description": d} for k, i, c, u, s, d in rows]

    def prune(self, keep: Callable[[dict], bool] = lambda e: False) -> list[dict]:
        """Forget every record `keep` does not keep; returns the forgotten ones."""
        gone = [e for e in self.entries() if not keep(e)]
        with self._lock:
            self._db.executemany("DELETE FROM steps WHERE key = ?", [(e["key"],) for e in gone])
        return gone
