"""The content store: atomic ingest, resume, verification, concurrency, crashes, gc."""

import multiprocessing
import os
import signal
import stat
import time

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.image import digest as dg
from dockyard.image.content import ContentStore

DATA = os.urandom(3 << 20) + b"tail"
DIGEST = dg.of_bytes(DATA)
FORK = multiprocessing.get_context("fork")


@pytest.fixture
def store(tmp_path):
    return ContentStore(str(tmp_path / "content"))


def blob_files(store):
    out = []
    for algo in os.listdir(store.blobs_dir):
        out += os.listdir(os.path.join(store.blobs_dir, algo))
    return out


def test_put_read_open_list_delete(store):
    d = store.put(b"hello")
    assert d == dg.of_bytes(b"hello")
    assert store.exists(d) and store.size(d) == 5 and store.read(d) == b"hello"
    with store.open(d) as f:
        assert f.read() == b"hello"
    assert stat.S_IMODE(os.stat(store.path(d)).st_mode) == 0o444
    assert list(store.list()) == [d]
    assert store.put(b"hello", d) == d  # idempotent
    store.delete(d)
    assert not store.exists(d) and list(store.list()) == []
    with pytest.raises(NotFound, match=f"no such blob: {d}"):
        store.open(d)
    with pytest.raises(NotFound, match="no such blob"):
        store.size(d)
    with pytest.raises(NotFound, match="no such blob"):
        store.delete(d)
    assert os.listdir(store.ingest_dir) == []


def test_put_refuses_mismatch(store):
    with pytest.raises(InvalidArgument, match="digest mismatch: expected"):
        store.put(b"hello", dg.of_bytes(b"other"))
    assert blob_files(store) == []


def test_bad_digest_paths_are_refused(store):
    for bad in ("sha256:../../etc/passwd", "../x", "sha256:" + "A" * 64):
        with pytest.raises(InvalidArgument):
            store.path(bad)


def test_read_limit(store):
    d = store.put(b"x" * 100)
    with pytest.raises(InvalidArgument, match="too large"):
        store.read(d, limit=10)
    assert store.read(d, limit=100) == b"x" * 100


def test_sha512(store):
    d512 = dg.of_bytes(b"data", "sha512")
    assert store.put(b"data", d512) == d512
    assert store.read(d512) == b"data"
    with store.writer("w512", expected=d512) as w:
        w.write(b"data")
        assert w.commit() == d512
    assert set(store.list()) == {d512}


def test_writer_commit_verifies(store):
    with store.writer("ref-1", expected=DIGEST, expected_size=len(DATA)) as w:
        assert w.offset == 0
        for i in range(0, len(DATA), 1 << 20):
            w.write(DATA[i:i + (1 << 20)])
        assert w.size == len(DATA) and w.digest == DIGEST
        assert w.commit() == DIGEST
    assert store.read(DIGEST) == DATA
    assert os.listdir(store.ingest_dir) == []


def test_digest_mismatch_removes_ingest(store):
    wrong = dg.of_bytes(b"something else")
    w = store.writer("ref-bad", expected=wrong)
    w.write(DATA)
    with pytest.raises(InvalidArgument) as e:
        w.commit()
    assert str(e.value) == f"digest mismatch: expected {wrong}, got {DIGEST}"
    assert blob_files(store) == [] and os.listdir(store.ingest_dir) == []


def test_size_mismatch(store):
    w = store.writer("short", expected=DIGEST, expected_size=len(DATA))
    w.write(DATA[:10])
    with pytest.raises(InvalidArgument, match="size mismatch"):
        w.commit()
    with pytest.raises(InvalidArgument, match="size mismatch"), \
            store.writer("long", expected_size=3) as w:
        w.write(b"abcd")
    assert blob_files(store) == [] and os.listdir(store.ingest_dir) == []


def test_exception_in_with_aborts(store):
    with pytest.raises(RuntimeError), store.writer("boom") as w:
        w.write(b"partial")
        raise RuntimeError("network down")
    assert os.listdir(store.ingest_dir) == []


def test_resume_after_close(store):
    with store.writer("pull-layer", expected=DIGEST, expected_size=len(DATA)) as w:
        w.write(DATA[:1000])
    # left without commit: the ingest stays, nothing is visible
    assert blob_files(store) == []
    with store.writer("pull-layer", expected=DIGEST, expected_size=len(DATA)) as w:
        assert w.offset == 1000
        w.write(DATA[w.offset:])
        assert w.commit() == DIGEST
    assert store.read(DIGEST) == DATA


def test_resume_longer_than_expected_restarts(store):
    with store.writer("r") as w:
        w.write(b"0123456789")
    with store.writer("r", expected_size=4) as w:
        assert w.offset == 0
        w.write(b"abcd")
        w.commit()
    assert store.read(dg.of_bytes(b"abcd")) == b"abcd"


def test_reset(store):
    with store.writer("r") as w:
        w.write(b"junk")
    with store.writer("r", expected=dg.of_bytes(b"good")) as w:
        assert w.offset == 4
        w.reset()
        w.write(b"good")
        assert w.commit() == dg.of_bytes(b"good")


def test_unsafe_ref_names_are_hashed(store):
    path = store.ingest_path("../../escape/sha256:abc")
    assert os.path.dirname(path) == store.ingest_dir
    with store.writer("../../escape/sha256:abc") as w:
        w.write(b"x")
        w.commit()


def test_same_ref_twice_in_one_thread_conflicts(store):
    with store.writer("dup"), pytest.raises(Conflict, match="already open"):
        store.writer("dup")


def test_commit_when_blob_exists_drops_ingest(store):
    store.put(DATA)
    with store.writer("again", expected=DIGEST) as w:
        w.write(DATA)
        assert w.commit() == DIGEST
    assert os.listdir(store.ingest_dir) == [] and store.read(DIGEST) == DATA


def _ingest_child(root, ref, delay, result):
    s = ContentStore(root)
    try:
        with s.writer(ref, expected=DIGEST, expected_size=len(DATA)) as w:
            for i in range(w.offset, len(DATA), 256 << 10):
                w.write(DATA[i:i + (256 << 10)])
                time.sleep(delay)
            result.put(w.commit())
    except Exception as e:  # noqa: BLE001 - report to the parent
        result.put(repr(e))


@pytest.mark.parametrize("same_ref", [False, True])
def test_two_processes_ingest_the_same_blob(store, same_ref):
    result = FORK.Queue()
    procs = [FORK.Process(target=_ingest_child,
                          args=(store.root, "same" if same_ref else f"ref-{i}", 0.005, result))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(result.get(timeout=5) for _ in procs) == [DIGEST, DIGEST]
    assert store.read(DIGEST) == DATA
    assert list(store.list()) == [DIGEST]
    assert os.listdir(store.ingest_dir) == []


def test_locked_ref_from_another_process_conflicts_without_wait(store):
    ready, release = FORK.Event(), FORK.Event()

    def hold():
        with ContentStore(store.root).writer("held") as w:
            w.write(b"x")
            ready.set()
            release.wait(30)

    p = FORK.Process(target=hold)
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(Conflict, match="locked by another writer"):
            store.writer("held", wait=False)
    finally:
        release.set()
        p.join(30)
    with store.writer("held", wait=False) as w:
        assert w.offset == 1


def test_kill_9_mid_write_leaves_nothing_visible(store):
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: write slowly, tell the parent once a lot is on disk
        try:
            os.close(r)
            w = ContentStore(store.root).writer("crashy", expected=DIGEST,
                                                expected_size=len(DATA))
            for i in range(0, len(DATA), 64 << 10):
                w.write(DATA[i:i + (64 << 10)])
                if i == 1 << 20:
                    w._file.flush()
                    os.write(wfd, b"x")
                time.sleep(0.002)
            w.commit()
        finally:
            os._exit(0)
    os.close(wfd)
    assert os.read(r, 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    assert blob_files(store) == [] and not store.exists(DIGEST)
    with store.writer("crashy", expected=DIGEST, expected_size=len(DATA)) as w:
        assert 0 < w.offset < len(DATA)
        w.write(DATA[w.offset:])
        assert w.commit() == DIGEST
    assert store.read(DIGEST) == DATA


def test_stray_files_are_ignored(store):
    open(os.path.join(store.blobs_dir, "sha256", ".tmp-123"), "w").close()
    open(os.path.join(store.blobs_dir, "sha256", "abc"), "w").close()
    d = store.put(b"ok")
    assert list(ContentStore(store.root).list()) == [d]


def test_gc(store):
    keep = store.put(b"keep")
    drop = store.put(b"drop")
    drop512 = store.put(b"drop", dg.of_bytes(b"drop", "sha512"))
    with store.writer("stale") as w:
        w.write(b"partial")
    live = store.writer("live")
    live.write(b"in progress")
    try:
        removed = store.gc({keep})
        assert sorted(removed) == sorted([drop, drop512])
        assert list(store.list()) == [keep]
        assert os.listdir(store.ingest_dir) == [os.path.basename(store.ingest_path("live"))]
    finally:
        live.abort()
    with store.writer("young") as w:
        w.write(b"x")
    assert store.gc({keep}, ingest_max_age=3600) == []
    assert os.listdir(store.ingest_dir) == ["young"]
