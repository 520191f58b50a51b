"""The container store: SQLite (WAL) under <data-root>/containers.db.

One row per container (its record as JSON) with the name in its own unique
column, so a name conflict is decided by SQLite inside the same transaction
that adds or renames the container. Every change is one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading

from dockyard.engine.model import Container
from dockyard.errors import Conflict, InvalidArgument, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    data TEXT NOT NULL
);
"""


def name_conflict(name: str, owner: str) -> Conflict:
    return Conflict(f'Conflict. The container name "{name}" is already in use by container '
                    f'"{owner}". You have to remove (or rename) that container to be able to '
                    "reuse that name.")


class ContainerStore:
    def __init__(self, data_root: str):
        os.makedirs(data_root, exist_ok=True)
        self.path = os.path.join(data_root, "containers.db")
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _owner_of(self, name: str) -> str | None:
        row = self._db.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def add(self, c: Container) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                owner = self._owner_of(c.name)
                if owner is not None:
                    raise name_conflict(c.name, owner)
                self._db.execute("INSERT INTO containers (id, name, created, data) "
                                 "VALUES (?, ?, ?, ?)",
                                 (c.id, c.name, c.created, json.dumps(c.to_record())))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def save(self, c: Container) -> None:
        """Write the container's record (its name is changed by rename only)."""
        with self._lock:
            cur = self._db.execute("UPDATE containers SET data = ? WHERE id = ?",
                                   (json.dumps(c.to_record()), c.id))
            if cur.rowcount == 0:
                raise NotFound(f"No such container: {c.id}")

    def rename(self, c: Container, new_name: str) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                owner = self._owner_of(new_name)
                if owner is not None and owner != c.id:
                    raise name_conflict(new_name, owner)
                old = c.name
                c.name = new_name
                try:
                    self._db.execute("UPDATE containers SET name = ?, data = ? WHERE id = ?",
                                     (new_name, json.dumps(c.to_record()), c.id))
                except BaseException:
                    c.name = old
                    raise
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete(self, container_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM containers WHERE id = ?", (container_id,))

    def get(self, ref: str) -> Container:
        """By full id, name ("x" or "/x"), or unique id prefix (docker's order)."""
        if not ref:
            raise NotFound("No such container: ")
        with self._lock:
            row = self._db.execute("SELECT data FROM containers WHERE id = ?", (ref,)).fetchone()
            if row is None:
                name = ref if ref.startswith("/") else "/" + ref
                row = self._db.execute("SELECT data FROM containers WHERE name = ?",
                                       (name,)).fetchone()
            if row is None and all(ch in "0123456789abcdef" for ch in ref):
                rows = self._db.execute(
                    "SELECT data FROM containers WHERE id >= ? AND id < ? LIMIT 2",
                    (ref, ref + "g")).fetchall()
                if len(rows) > 1:
                    raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
                row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No such container: {ref}")
        return Container.from_record(json.loads(row[0]))

    def list(self) -> list[Container]:
        """Every container, newest first (docker ps's order)."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM containers ORDER BY created DESC, id"
                                    ).fetchall()
        return [Container.from_record(json.loads(r[0])) for r in rows]
