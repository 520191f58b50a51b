"""Small file-system helpers shared by the stores (content, snapshots, registry)."""

import os
import shutil
import threading


def fsync_dir(path: str) -> None:
    """Make a rename or create in `path` durable: fsync the directory itself."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_later(path: str) -> None:
    """Delete a tree that is already out of sight (renamed into a trash directory) in a
    background thread: removals answer without waiting for the disk. What a crash
    leaves behind is emptied at the next start by the trash's owner."""
    threading.Thread(target=shutil.rmtree, args=(path,), kwargs={"ignore_errors": True},
                     name="remove-later", daemon=True).start()
