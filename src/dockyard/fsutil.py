"""Small file-system helpers shared by the stores (content, snapshots, registry)."""

import os


def fsync_dir(path: str) -> None:
    """Make a rename or create in `path` durable: fsync the directory itself."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
