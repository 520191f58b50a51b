"""ImageService.add_layer_tar: the stored blob decompresses to exactly the layer whose
diff_id is recorded, for small layers too (the tail of the temporary copy used to stay
in a write buffer that the compressing thread, reading a second open file, never saw)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.image.service import ImageService

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layers keep owners: root")


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Trickle(io.RawIOBase):
    """A stream that hands out at most `step` bytes per read, as a pipe does."""

    def __init__(self, data: bytes, step: int = 1000):
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.step if n is None or n < 0 else min(n, self.step)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


@pytest.mark.parametrize("size", [10, 5000, 70_000, 3 << 20])
@pytest.mark.parametrize("trickle", [False, True])
def test_blob_matches_diff_id(tmp_path: Path, size: int, trickle: bool) -> None:
    svc = ImageService(str(tmp_path / "data"))
    raw = _layer({"a": os.urandom(size), "b/c": b"tail"})
    layer = svc.add_layer_tar(Trickle(raw) if trickle else io.BytesIO(raw), None)
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with svc.content.open(layer.digest) as f:
        blob = f.read()
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer.digest
    assert gzip.decompress(blob) == raw
