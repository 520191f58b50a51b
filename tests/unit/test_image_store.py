"""Image metadata in SQLite: add, names, resolve, delete, blobs for gc."""

import hashlib
import sqlite3

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard.image import formats
from dockyard.image.content import ContentStore
from dockyard.image.reference import parse
from dockyard.image.store import ImageStore, LayerRecord

MANIFEST = "sha256:" + "e" * 64


def diff(n):
    return "sha256:" + hashlib.sha256(f"layer{n}".encode()).hexdigest()


def blob(n):
    return "sha256:" + hashlib.sha256(f"blob{n}".encode()).hexdigest()


def make_config(layers, created="2024-01-01T00:00:00Z", labels=None, cmd="sh"):
    cfg = formats.new_config(layers, config={"Cmd": [cmd], "Labels": labels},
                             created=created, architecture="amd64")
    return formats.encode_config(cfg)


def records(n_layers, with_blobs=True):
    return [LayerRecord(diff(i), blob(i) if with_blobs else None,
                        formats.DOCKER_LAYER_GZIP if with_blobs else None,
                        100 + i if with_blobs else None, 1000 + i) for i in range(n_layers)]


@pytest.fixture
def stores(tmp_path):
    content = ContentStore(str(tmp_path / "content"))
    images = ImageStore(str(tmp_path / "image"), content)
    yield content, images
    images.close()


def add(images, n=2, **kw):
    raw = make_config([diff(i) for i in range(n)], **kw)
    return images.add(raw, records(n)), raw


def test_add_get_idempotent(stores):
    content, images = stores
    image_id, raw = add(images)
    assert image_id == formats.image_id(raw)
    assert content.read(image_id) == raw  # the config blob is in the content store
    assert images.add(raw, records(2)) == image_id
    rec = images.get(image_id)
    assert rec.config_bytes == raw and rec.config["config"]["Cmd"] == ["sh"]
    assert [la.diff_id for la in rec.layers] == [diff(0), diff(1)]
    assert rec.layers[1] == LayerRecord(diff(1), blob(1), formats.DOCKER_LAYER_GZIP, 101, 1001)
    assert rec.size == 2001 and rec.created == "2024-01-01T00:00:00Z"
    assert rec.created_unix == formats.parse_time("2024-01-01T00:00:00Z")
    assert rec.chain_ids == formats.chain_ids([diff(0), diff(1)])
    assert len(images.list()) == 1


def test_add_fills_missing_blob_details(stores):
    _, images = stores
    raw = make_config([diff(0)])
    image_id = images.add(raw, records(1, with_blobs=False))
    assert images.get(image_id).layers[0].digest is None
    images.add(raw, records(1))
    assert images.get(image_id).layers[0].digest == blob(0)
    images.set_layer_blob(image_id, 0, blob(9), formats.OCI_LAYER_ZSTD, 5)
    assert images.get(image_id).layers[0].media_type == formats.OCI_LAYER_ZSTD


def test_add_refuses_mismatched_layers_and_bad_config(stores):
    _, images = stores
    with pytest.raises(InvalidArgument, match="layers do not match"):
        images.add(make_config([diff(0), diff(1)]), records(1))
    with pytest.raises(InvalidArgument, match="invalid image config"):
        images.add(b"{}", [])
    assert images.list() == []


def test_tag_resolve_untag(stores):
    _, images = stores
    image_id, _ = add(images)
    images.tag(image_id, parse("busybox"))
    images.tag(image_id, parse("localhost:5000/a/b:v1"))
    images.add_repo_digest(image_id, parse(f"busybox@{MANIFEST}"))
    rec = images.get(image_id)
    assert rec.repo_tags == ["busybox:latest", "localhost:5000/a/b:v1"]
    assert rec.repo_digests == [f"busybox@{MANIFEST}"]
    for text in ("busybox", "busybox:latest", "docker.io/library/busybox:latest",
                 "index.docker.io/library/busybox", f"busybox@{MANIFEST}",
                 f"busybox:ignored@{MANIFEST}",
                 "localhost:5000/a/b:v1", image_id, image_id[7:], image_id[7:19],
                 image_id[7:8], image_id[:10]):
        assert images.resolve(text) == image_id, text
    with pytest.raises(NotFound) as e:
        images.resolve("busybox:1.0")
    assert str(e.value) == "No such image: busybox:1.0"
    with pytest.raises(NotFound, match="No such image: nothere:latest"):
        images.resolve("nothere")
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        images.resolve("NotHere")
    assert images.untag(parse("busybox")) == image_id
    assert images.untag(f"busybox@{MANIFEST}") == image_id
    with pytest.raises(NotFound, match="No such image: busybox:latest"):
        images.untag("busybox")
    assert images.get(image_id).repo_tags == ["localhost:5000/a/b:v1"]


def test_tag_moves_and_reports_previous(stores):
    _, images = stores
    a, _ = add(images, n=1, cmd="a")
    b, _ = add(images, n=1, cmd="b")
    assert images.tag(a, parse("app")) is None
    assert images.tag(a, parse("app")) is None
    assert images.tag(b, parse("app")) == a
    assert images.resolve("app") == b and images.get(a).repo_tags == []


def test_tag_refusals(stores):
    _, images = stores
    image_id, _ = add(images)
    with pytest.raises(InvalidArgument, match="digest reference"):
        images.tag(image_id, parse(f"x@{MANIFEST}"))
    with pytest.raises(InvalidArgument, match="ambiguous"):
        images.tag(image_id, parse("sha256:abc"))
    with pytest.raises(NotFound, match="No such image"):
        images.tag("sha256:" + "0" * 64, parse("x"))
    with pytest.raises(InvalidArgument, match="without a digest"):
        images.add_repo_digest(image_id, parse("x:1"))


def test_ambiguous_and_full_ids(stores):
    _, images = stores
    ids = [add(images, n=1, cmd=str(i))[0] for i in range(40)]
    # with 40 IDs some share their first hex digit: an ambiguous prefix is not found
    first = [i[7] for i in ids]
    dup = next(c for c in first if first.count(c) > 1)
    with pytest.raises(NotFound, match="No such image"):
        images.resolve(dup)
    missing = "sha256:" + "f" * 64
    with pytest.raises(NotFound, match=f"No such image: {missing}"):
        images.resolve(missing)
    assert images.resolve(ids[3]) == ids[3]


def test_name_wins_over_id_prefix(stores):
    _, images = stores
    a, _ = add(images, n=1, cmd="a")
    b, _ = add(images, n=1, cmd="b")
    prefix = a[7:10]
    images.tag(b, parse(prefix))
    assert images.resolve(prefix) == b


def test_delete_and_parents(stores):
    _, images = stores
    parent, _ = add(images, n=1)
    child, _ = add(images, n=2)
    images.set_parent(child, parent)
    images.tag(parent, parse("p"))
    assert images.children(parent) == [child]
    assert images.get(child).parent == parent
    images.delete(parent)
    with pytest.raises(NotFound, match="No such image"):
        images.get(parent)
    with pytest.raises(NotFound):
        images.resolve("p")
    assert images.get(child).parent is None
    with pytest.raises(NotFound):
        images.delete(parent)
    assert [r.id for r in images.list()] == [child]


def test_list_order_by_created(stores):
    _, images = stores
    old, _ = add(images, n=1, created="2020-01-01T00:00:00Z")
    new, _ = add(images, n=1, created="2024-06-01T00:00:00.5+02:00")
    mid, _ = add(images, n=1, created="2022-01-01T00:00:00Z", labels={"x": "y"})
    assert [r.id for r in images.list()] == [new, mid, old]
    assert images.get(mid).labels == {"x": "y"}


def test_referenced_blobs_and_gc(stores):
    content, images = stores
    image_id, _ = add(images)
    images.add_repo_digest(image_id, f"busybox@{MANIFEST}")
    index = content.put(b'{"index":1}')
    images.pin_blob(image_id, index)
    assert images.referenced_blobs() == {image_id, blob(0), blob(1), MANIFEST, index}
    junk = content.put(b"junk")
    assert content.gc(images.referenced_blobs()) == [junk]
    assert content.exists(image_id) and content.exists(index)
    images.delete(image_id)
    assert images.referenced_blobs() == set()


def test_persistence_and_wal(tmp_path):
    content = ContentStore(str(tmp_path / "c"))
    images = ImageStore(str(tmp_path / "i"), content)
    raw = make_config([diff(0)])
    image_id = images.add(raw, records(1))
    images.tag(image_id, parse("keep:me"))
    images.close()
    db = sqlite3.connect(str(tmp_path / "i" / "images.db"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    again = ImageStore(str(tmp_path / "i"), content)
    assert again.resolve("keep:me") == image_id
    assert again.references() == [(parse("keep:me"), image_id)]
    again.close()
